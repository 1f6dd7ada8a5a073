"""NA option study on MNIST: which error vector, distance weighting and rescaling train best.

The study covers every combination of the three NA options of
:class:`~na_lightning.lightning.classifier.NAClassifier`: ``error`` (``"code"`` or ``"exact"``),
``distance`` (``"code"`` or ``"paper"``) and ``rescale`` (off or on), plus the STBP baseline.
Each variant trains the NA authors' MNIST network (``15C5-P2-40C5-P2-300``, ``T = 5``, kernel
loss, AdamW, weight clamp 4, gradient-norm clip 1.0, augmented images) once per seed, all with
the same short budget. Each trained network is then tested on the MNIST test set.

Command::

    python -m na_lightning.experiments.variants --data-dir data/mnist --out docs/reproduction

The study appends every finished run to ``<out>/variants_runs.jsonl`` and, when started again
with the same settings, skips the runs found there, so an interrupted study resumes. After each
run it rewrites ``variants.md`` (table sorted by mean test accuracy), ``variants.json``
(aggregated results) and ``variants_accuracy.png`` (accuracy per seed and mean per variant).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import inspect
import io
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from na_lightning.cli_errors import run_cli
from na_lightning.experiments._arguments import DEFAULT_OUTPUT, command_line_message, output_folder
from na_lightning.data.errors import DataNotFoundError
from na_lightning.data.mnist import MNISTDataModule
from na_lightning.functional.neuron import KERNELS
from na_lightning.lightning.classifier import NAClassifier

logger = logging.getLogger(__name__)

RUNS_FILE = "variants_runs.jsonl"
TABLE_FILE = "variants.md"
RESULT_FILE = "variants.json"
FIGURE_FILE = "variants_accuracy.png"

MNIST_TEST_IMAGES = 10_000
GRADIENT_CLIP = 1.0
"""Gradient-norm clip of the NA authors' MNIST recipe."""


@dataclass(frozen=True)
class Variant:
    """One gradient configuration of the study: NA with its three options, or STBP.

    The fields are keyword arguments of :class:`NAClassifier`. ``error``, ``distance`` and
    ``rescale`` are None for STBP, which uses none of them.
    """

    grad: str
    error: str | None = None
    distance: str | None = None
    rescale: bool | None = None

    @property
    def name(self) -> str:
        """Variant name, e.g. ``"na/error=code,distance=code,rescale=off"`` or ``"stbp"``."""
        if self.grad != "na":
            return self.grad
        rescale = "on" if self.rescale else "off"
        return f"na/error={self.error},distance={self.distance},rescale={rescale}"

    def model_options(self) -> dict[str, object]:
        """Return the :class:`NAClassifier` keyword arguments that select this variant."""
        options: dict[str, object] = {"grad": self.grad}
        if self.grad == "na":
            options.update(error=self.error, distance=self.distance, rescale=self.rescale)
        return options


def variant_grid() -> tuple[Variant, ...]:
    """Return the 9 variants of the study: the 8 NA option combinations, then STBP.

    The NA variants come in the order error, distance, rescale, each with the setting of the
    authors' code first (rescale off first).
    """
    na_variants = tuple(
        Variant("na", error=error, distance=distance, rescale=rescale)
        for error, distance, rescale in itertools.product(("code", "exact"), ("code", "paper"), (False, True))
    )
    return (*na_variants, Variant("stbp"))


VARIANT_NAMES = tuple(variant.name for variant in variant_grid())
"""Names of all variants, in the order of :func:`variant_grid`."""


def library_default_variant() -> Variant:
    """Return the NA variant that :class:`NAClassifier` trains when no option is passed."""
    parameters = inspect.signature(NAClassifier.__init__).parameters
    return Variant(
        "na",
        error=parameters["error"].default,
        distance=parameters["distance"].default,
        rescale=parameters["rescale"].default,
    )


OPTION_CONTRASTS = (
    ("error", "code", "exact"),
    ("distance", "code", "paper"),
    ("rescale", False, True),
)
"""Each NA option with a reference setting and the alternative that the study compares with it.

Differences are alternative minus reference.
"""


def find_variant(name: str) -> Variant:
    """Return the variant called ``name``.

    Raises:
        ValueError: ``name`` is not a variant of :func:`variant_grid`.
    """
    for variant in variant_grid():
        if variant.name == name:
            return variant
    raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANT_NAMES)}.")


@dataclass(frozen=True)
class VariantStudySettings:
    """Budget and training settings of the study.

    Every field except ``variants`` and ``seeds`` changes the result of a run, so all of them
    are part of the key that decides whether a stored run can be reused
    (:meth:`run_key`).

    Args:
        variants: names of the variants to train, from :data:`VARIANT_NAMES`. Default all 9.
        seeds: seeds; each variant trains once per seed. Default ``(0, 1, 2)``.
        epochs: training epochs per run. Default 3.
        train_batches: batches per training epoch; each epoch draws them from a new random
            order of the 60,000 training images. None trains on all images. Default 200.
        batch_size: images per batch. Default 64.
        test_subset: test on the first ``test_subset`` test images; None uses all 10,000.
        lr: initial AdamW learning rate. Default 2e-3.
        lr_gamma: learning-rate factor per epoch. Default 0.6.
        augment: random crop (padding 4 pixels) and rotation (up to 15 degrees) of training
            images. Default True.
        kernel: NA backward implementation, ``"auto"``, ``"compiled"`` or ``"eager"``.
        accelerator: Lightning accelerator, e.g. ``"auto"``, ``"cpu"``, ``"gpu"``. Runs use
            one device.
        num_workers: data-loader worker processes; 0 loads in the main process.
        threads: torch intra-op CPU threads during each run (``torch.set_num_threads``);
            None keeps torch's default. On a CPU shared with other jobs, 1 thread can be
            several times faster than more, because parallel regions wait for descheduled
            threads.

    Raises:
        ValueError: a setting is out of range; the message names the value and the fix.
    """

    variants: tuple[str, ...] = VARIANT_NAMES
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 3
    train_batches: int | None = 200
    batch_size: int = 64
    test_subset: int | None = None
    lr: float = 2e-3
    lr_gamma: float = 0.6
    augment: bool = True
    kernel: str = "auto"
    accelerator: str = "auto"
    num_workers: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", _as_tuple("variants", self.variants))
        object.__setattr__(self, "seeds", _as_tuple("seeds", self.seeds))
        self._check_variants()
        self._check_seeds()

        _check_integer("epochs", self.epochs, minimum=1, fix="Pass --epochs 1 or more.")
        if self.train_batches is not None:
            _check_integer(
                "train_batches", self.train_batches, minimum=1,
                fix="Pass --train-batches 1 or more, or 'all' for full epochs.",
            )
        _check_integer("batch_size", self.batch_size, minimum=1, fix="Pass --batch-size 1 or more.")
        if self.test_subset is not None:
            _check_integer(
                "test_subset", self.test_subset, minimum=1, maximum=MNIST_TEST_IMAGES,
                fix=f"Pass --test-subset between 1 and {MNIST_TEST_IMAGES}, or omit it to test on all.",
            )
        _check_integer("num_workers", self.num_workers, minimum=0, fix="Pass --num-workers 0 or more.")
        if self.threads is not None:
            _check_integer("threads", self.threads, minimum=1, fix="Pass --threads 1 or more, or omit it.")

        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be positive. Pass e.g. --lr 2e-3.")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(
                f"lr_gamma={self.lr_gamma!r} must be in (0, 1]. Pass e.g. --lr-gamma 0.6, or 1 "
                "for a constant learning rate."
            )
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel={self.kernel!r} is not supported. Expected one of {KERNELS}.")

    def _check_variants(self) -> None:
        if not self.variants:
            raise ValueError(f"variants is empty. Pass one or more of: {', '.join(VARIANT_NAMES)}.")
        for name in self.variants:
            find_variant(name)
        duplicates = sorted({name for name in self.variants if self.variants.count(name) > 1})
        if duplicates:
            listed = ", ".join(duplicates)
            raise ValueError(f"variants lists {listed} more than once. Name each variant once.")

    def _check_seeds(self) -> None:
        if not self.seeds:
            raise ValueError("seeds is empty. Pass one or more integer seeds, e.g. --seeds 0 1 2.")
        for seed in self.seeds:
            _check_integer("seed", seed, minimum=0, fix="Pass non-negative integers, e.g. --seeds 0 1 2.")
        duplicates = sorted({seed for seed in self.seeds if self.seeds.count(seed) > 1})
        if duplicates:
            raise ValueError(f"seeds lists {duplicates} more than once. Name each seed once.")

    def run_key(self) -> dict[str, object]:
        """Return the settings that determine the result of one run, as JSON-compatible values."""
        key = dataclasses.asdict(self)
        del key["variants"], key["seeds"]
        return key

    @property
    def train_images_per_epoch(self) -> int | None:
        """Maximum number of training images per epoch, or None for all images."""
        return None if self.train_batches is None else self.train_batches * self.batch_size


def _as_tuple(name: str, values: object) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name}={values!r} must be a sequence, e.g. a list or a tuple.")
    return tuple(values)


def _check_integer(name: str, value: object, minimum: int, fix: str, maximum: int | None = None) -> None:
    too_large = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or too_large:
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name}={value!r} must be an integer {bounds}. {fix}")


class _EpochRecorder(Callback):
    """Record the wall time and the number of training images of every training epoch.

    The time runs from the start of the epoch to its end, so it includes data loading,
    augmentation, forward, backward and the optimizer steps (the study runs no validation).
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.images: list[int] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        self.images.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images[-1] += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def run_variant(
    variant: Variant | str,
    seed: int,
    settings: VariantStudySettings,
    data_dir: str | os.PathLike,
    progress_bar: bool = False,
) -> dict[str, object]:
    """Train one variant with one seed, test it, and return the run record.

    ``pytorch_lightning.seed_everything(seed)`` fixes the initial weights and the augmentation;
    the data module's seed, also ``seed``, fixes the order of the training images. The variant
    lists in ``settings`` are not consulted, so any variant and seed can be run.

    Args:
        variant: a :class:`Variant` or its name.
        seed: seed of this run.
        settings: budget and training settings.
        data_dir: folder with the four MNIST files.
        progress_bar: show Lightning's progress bar.

    Returns:
        A JSON-compatible record with these keys:

        - ``variant``, ``seed`` and ``settings`` (:meth:`VariantStudySettings.run_key`).
        - ``test_acc``: fraction of test images classified correctly. ``test_loss``.
        - ``train_loss`` and ``train_acc``: means over the last training epoch.
        - ``epoch_seconds``: wall time of each training epoch, in seconds, and
          ``time_per_epoch_s``, their mean.
        - ``train_images_per_epoch`` (one count per epoch), ``test_images``, ``test_seconds``.
        - ``device``, ``torch_version`` and ``finished_at`` (UTC, ISO 8601).
    """
    if isinstance(variant, str):
        variant = find_variant(variant)

    datamodule = MNISTDataModule(
        data_dir=str(data_dir),
        batch_size=settings.batch_size,
        val_size=0,
        seed=seed,
        num_workers=settings.num_workers,
        augment=settings.augment,
        download=False,
        test_subset=settings.test_subset,
    )
    try:
        datamodule.prepare_data()
    except DataNotFoundError as error:
        raise error.with_fix(
            "Pass the folder with the four MNIST files as data_dir (--data-dir on the command line)."
        ) from error
    recorder = _EpochRecorder()
    trainer = pl.Trainer(
        max_epochs=settings.epochs,
        limit_train_batches=1.0 if settings.train_batches is None else settings.train_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=GRADIENT_CLIP,
        accelerator=settings.accelerator,
        devices=1,
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        callbacks=[recorder],
    )
    device = trainer.strategy.root_device

    default_threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        _compile_kernels(variant, settings, device)

        pl.seed_everything(seed, workers=True, verbose=False)
        model = _build_model(variant, settings)
        trainer.fit(model, datamodule=datamodule)
        train_metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

        test_started = time.perf_counter()
        test_metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
        test_seconds = time.perf_counter() - test_started
        device_name = _device_name(device)
    finally:
        torch.set_num_threads(default_threads)

    record = {
        "variant": variant.name,
        "seed": seed,
        "settings": settings.run_key(),
        # Rounded to drop float32 noise. The accuracy of 10,000 images has 4 decimal places.
        "test_acc": round(float(test_metrics["test_acc"]), 6),
        "test_loss": float(test_metrics["test_loss"]),
        "train_loss": train_metrics["train_loss_epoch"],
        "train_acc": train_metrics["train_acc_epoch"],
        "epoch_seconds": recorder.seconds,
        "time_per_epoch_s": statistics.fmean(recorder.seconds),
        "train_images_per_epoch": recorder.images,
        "test_images": len(datamodule.test_dataset),
        "test_seconds": test_seconds,
        "device": device_name,
        "torch_version": torch.__version__,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    logger.info(
        "%s seed %d: test accuracy %.2f%%, %.1f s per epoch",
        variant.name, seed, 100 * record["test_acc"], record["time_per_epoch_s"],
    )
    return record


def _build_model(variant: Variant, settings: VariantStudySettings) -> NAClassifier:
    """Build the MNIST recipe network with the variant's options, ``lr``, ``lr_gamma`` and ``kernel``."""
    return NAClassifier(
        lr=settings.lr, lr_gamma=settings.lr_gamma, kernel=settings.kernel, **variant.model_options()
    )


def _compile_kernels(variant: Variant, settings: VariantStudySettings, device: torch.device) -> None:
    """Run one training step outside the timed epochs so that compiling the kernels is not timed.

    ``torch.compile`` compiles the LIF and NA kernels on first use in the process, once per
    option combination. Without this step, the first run of each combination would count the
    compile time in its first epoch. The step runs before the run's seed is set and uses a
    model of its own.
    """
    if settings.kernel == "eager":
        return

    model = _build_model(variant, settings).to(device)
    images = torch.randn(settings.batch_size, *MNISTDataModule.dims, device=device)
    labels = torch.arange(settings.batch_size, device=device) % MNISTDataModule.num_classes
    loss = model.loss_fn(model.network(images), labels)
    loss.backward()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cores = f"{_count(os.cpu_count() or 1, 'core')}, {_count(torch.get_num_threads(), 'torch thread')}"
    return f"{device.type} ({platform.machine()}, {cores})"


def summarize(runs: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    """Aggregate run records into one table row per variant, sorted by mean test accuracy.

    Accuracies are fractions (0..1). The standard deviation is the sample standard deviation
    over seeds (``n - 1`` in the denominator), 0 for a single seed. Rows with equal means keep
    the order of :func:`variant_grid`.

    Args:
        runs: records as :func:`run_variant` returns them; only ``variant``, ``seed``,
            ``test_acc``, ``train_loss`` and ``time_per_epoch_s`` are read.

    Returns:
        Rows with ``variant``, ``seeds``, ``test_acc`` (per seed, in seed order),
        ``test_acc_mean``, ``test_acc_std`` (sample standard deviation, None for a single
        seed), ``train_loss_mean`` and ``time_per_epoch_s_mean``.

    Raises:
        ValueError: a variant name is unknown, or a variant and seed occur twice.
    """
    by_variant: dict[str, list[Mapping[str, object]]] = {}
    for run in runs:
        name = str(run["variant"])
        find_variant(name)
        by_variant.setdefault(name, []).append(run)

    rows = []
    for name, variant_runs in by_variant.items():
        variant_runs = sorted(variant_runs, key=lambda run: run["seed"])
        seeds = [run["seed"] for run in variant_runs]
        if len(set(seeds)) < len(seeds):
            raise ValueError(
                f"variant {name!r} has more than one run for a seed in {seeds}. Pass one run per seed."
            )

        accuracies = [float(run["test_acc"]) for run in variant_runs]
        losses = [float(run["train_loss"]) for run in variant_runs]
        epoch_times = [float(run["time_per_epoch_s"]) for run in variant_runs]
        rows.append(
            {
                "variant": name,
                "seeds": seeds,
                "test_acc": accuracies,
                "test_acc_mean": statistics.fmean(accuracies),
                "test_acc_std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
                "train_loss_mean": statistics.fmean(losses),
                "time_per_epoch_s_mean": statistics.fmean(epoch_times),
            }
        )

    grid_order = {name: position for position, name in enumerate(VARIANT_NAMES)}
    rows.sort(key=lambda row: (-row["test_acc_mean"], grid_order[row["variant"]]))
    return rows


def compare_options(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Compare each NA option's alternative with its reference setting, the other two options fixed.

    For ``error``, for example, each of the 4 distance/rescale settings whose ``"code"`` and
    ``"exact"`` variants both have a row gives one difference of mean test accuracies
    (alternative minus reference, in percentage points). A last entry compares the NA variant
    of the library defaults (:func:`library_default_variant`) with STBP when both have a row.

    Args:
        rows: rows of :func:`summarize`.

    Returns:
        One entry per comparison with at least one pair: ``option``, ``default``,
        ``alternative``, ``differences`` (points, one per pair), ``pairs`` (the other options'
        settings of each pair), ``mean_difference`` (points) and ``statement`` (one sentence).
    """
    means = {row["variant"]: 100 * float(row["test_acc_mean"]) for row in rows}
    comparisons = []

    for option, default, alternative in OPTION_CONTRASTS:
        differences, pairs = [], []
        for variant in variant_grid():
            if variant.grad != "na" or getattr(variant, option) != default:
                continue
            partner = dataclasses.replace(variant, **{option: alternative})
            if variant.name in means and partner.name in means:
                differences.append(means[partner.name] - means[variant.name])
                pairs.append(_other_options(variant, option))
        if differences:
            comparisons.append(_comparison(option, default, alternative, differences, pairs))

    default_na = library_default_variant().name
    if default_na in means and "stbp" in means:
        difference = means[default_na] - means["stbp"]
        comparisons.append(_comparison("grad", "stbp", "na", [difference], ["default NA options"]))
    return comparisons


def _other_options(variant: Variant, option: str) -> str:
    others = [name for name, _, _ in OPTION_CONTRASTS if name != option]
    return ",".join(f"{name}={_setting_label(getattr(variant, name))}" for name in others)


def _setting_label(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _comparison(
    option: str, default: object, alternative: object, differences: list[float], pairs: list[str]
) -> dict[str, object]:
    mean_difference = statistics.fmean(differences)
    default_label, alternative_label = _setting_label(default), _setting_label(alternative)
    if option == "grad":
        statement = (
            f"NA (library default options, {library_default_variant().name}) vs STBP: mean difference "
            f"{mean_difference:+.2f} points (NA minus STBP)."
        )
    else:
        others = " and ".join(name for name, _, _ in OPTION_CONTRASTS if name != option)
        statement = (
            f"{option} {alternative_label} vs {default_label}: mean difference {mean_difference:+.2f} points "
            f"({alternative_label} minus {default_label}) over {len(differences)} {others} settings, "
            f"from {min(differences):+.2f} to {max(differences):+.2f}."
        )
    return {
        "option": option,
        "default": default,
        "alternative": alternative,
        "differences": differences,
        "pairs": pairs,
        "mean_difference": mean_difference,
        "statement": statement,
    }


def run_study(
    settings: VariantStudySettings,
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    fresh: bool = False,
    progress_bar: bool = False,
) -> dict[str, object]:
    """Run every variant with every seed, skipping runs stored with identical settings.

    Runs go seed by seed (all variants with the first seed, then the second seed, ...), so an
    interrupted study has results for every variant early. Each finished run is appended to
    ``<out>/variants_runs.jsonl`` at once, and the reports (``variants.md``, ``variants.json``,
    ``variants_accuracy.png``) are rewritten after it.

    Args:
        settings: variants, seeds, budget and training settings.
        data_dir: folder with the four MNIST files.
        out: output folder; created when missing.
        fresh: run everything again, ignoring stored runs. The file keeps the old lines, and
            the newest run of each variant and seed counts.
        progress_bar: show Lightning's progress bar.

    Returns:
        The aggregated result, also written to ``variants.json``: ``settings``, ``finished``
        and ``planned`` (run counts), ``rows`` (:func:`summarize`), ``comparisons``
        (:func:`compare_options`) and ``runs`` (the records used).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / RUNS_FILE

    key = _json_round_trip(settings.run_key())
    stored = {} if fresh else _runs_by_variant_and_seed(read_runs(runs_path), key)
    if stored:
        logger.info("Found %d finished runs with the same settings in %s", len(stored), runs_path)

    results: dict[tuple[str, int], dict[str, object]] = {}
    for seed in settings.seeds:
        for name in settings.variants:
            if (name, seed) in stored:
                results[name, seed] = stored[name, seed]
                continue
            record = run_variant(name, seed, settings, data_dir, progress_bar=progress_bar)
            append_run(runs_path, record)
            results[name, seed] = record
            write_reports(_aggregate(settings, results), out)

    result = _aggregate(settings, results)
    write_reports(result, out)
    return result


def _json_round_trip(value: object) -> object:
    """Return ``value`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def _runs_by_variant_and_seed(
    runs: Iterable[Mapping[str, object]], key: object
) -> dict[tuple[str, int], dict[str, object]]:
    """Keep the runs whose settings equal ``key``; a later run of a variant and seed wins."""
    selected = {}
    for run in runs:
        if run.get("settings") == key:
            selected[run["variant"], run["seed"]] = dict(run)
    return selected


def _aggregate(settings: VariantStudySettings, results: Mapping[tuple[str, int], dict]) -> dict[str, object]:
    order = itertools.product(settings.seeds, settings.variants)
    runs = [results[name, seed] for seed, name in order if (name, seed) in results]
    rows = summarize(runs)
    return {
        "settings": dataclasses.asdict(settings),
        "finished": len(runs),
        "planned": len(settings.variants) * len(settings.seeds),
        "rows": rows,
        "comparisons": compare_options(rows),
        "runs": runs,
    }


def read_runs(path: str | os.PathLike) -> list[dict[str, object]]:
    """Read the run records of a JSON-lines file, or return an empty list if it is missing.

    Lines that are not complete JSON records, such as a line cut off by a killed run, are
    skipped with a warning.
    """
    path = Path(path)
    if not path.is_file():
        return []

    runs, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(record, dict) and {"variant", "seed", "settings"} <= record.keys():
            runs.append(record)
        else:
            skipped += 1
    if skipped:
        logger.warning("Skipped %d invalid lines in %s. Their runs will run again.", skipped, path)
    return runs


def append_run(path: str | os.PathLike, record: Mapping[str, object]) -> None:
    """Append ``record`` as one JSON line with a single write, then flush it to disk.

    A line left incomplete by an earlier crash is terminated first, so the new record starts
    on a line of its own.
    """
    path = Path(path)
    line = json.dumps(record, sort_keys=True) + "\n"
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line

    data = line.encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = 0
        while written < len(data):
            written += os.write(descriptor, data[written:])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_reports(result: Mapping[str, object], out: str | os.PathLike) -> None:
    """Write ``variants.md``, ``variants.json`` and ``variants_accuracy.png`` into ``out``.

    Each file is written under a temporary name and then renamed, so a reader never sees half
    a file.
    """
    out = Path(out)
    _write_atomic(out / TABLE_FILE, markdown_report(result).encode("utf-8"))
    _write_atomic(out / RESULT_FILE, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    _write_atomic(out / FIGURE_FILE, accuracy_figure(result["rows"]))


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """Format rows of :func:`summarize` as a markdown table, accuracies in percent."""
    lines = [
        "| variant | test accuracy (%) | per seed (%) | final train loss | time per epoch (s) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        per_seed = ", ".join(
            f"{100 * accuracy:.2f} (seed {seed})" for seed, accuracy in zip(row["seeds"], row["test_acc"])
        )
        accuracy = f"{100 * row['test_acc_mean']:.2f}"
        if row["test_acc_std"] is not None:
            accuracy += f" ± {100 * row['test_acc_std']:.2f}"
        lines.append(
            f"| {row['variant']} | {accuracy} | {per_seed} | {row['train_loss_mean']:.4f} "
            f"| {row['time_per_epoch_s_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def settings_line(settings: Mapping[str, object]) -> str:
    """Describe the budget of a study in one sentence, from ``dataclasses.asdict(settings)``."""
    epochs = _count(settings["epochs"], "epoch")
    if settings["train_batches"] is None:
        budget = f"{epochs} over all 60,000 training images in batches of {settings['batch_size']}"
    else:
        images = settings["train_batches"] * settings["batch_size"]
        budget = (
            f"{epochs}, each of {_count(settings['train_batches'], 'batch', 'batches')} of {settings['batch_size']} "
            f"({images:,} training images, a new random selection each epoch)"
        )
    augmented = "augmented" if settings["augment"] else "not augmented"
    test_images = MNIST_TEST_IMAGES if settings["test_subset"] is None else settings["test_subset"]
    seeds = ", ".join(str(seed) for seed in settings["seeds"])
    return (
        f"Settings: {budget}, {augmented}; AdamW lr {settings['lr']:g} "
        f"times {settings['lr_gamma']:g} per epoch; seeds {seeds}; tested on {test_images:,} MNIST test "
        "images. Accuracy: mean ± sample standard deviation over seeds."
    )


def _count(number: int, noun: str, plural: str | None = None) -> str:
    if number == 1:
        return f"{number} {noun}"
    return f"{number} {plural or noun + 's'}"


def command_line(settings: Mapping[str, object]) -> str:
    """Return the command that reproduces a study with these settings."""
    defaults = _json_round_trip(dataclasses.asdict(VariantStudySettings()))
    parts = ["python -m na_lightning.experiments.variants --data-dir MNIST_DIR"]
    for field in dataclasses.fields(VariantStudySettings):
        value = _json_round_trip(settings[field.name])
        if value == defaults[field.name]:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.name == "augment":
            parts.append("--no-augment")
        elif isinstance(value, (list, tuple)):
            # Variant names contain "=" and ",", so they are quoted for the shell.
            items = [f'"{item}"' if "=" in str(item) else str(item) for item in value]
            parts.append(" ".join([flag, *items]))
        elif value is None:
            parts.append(f"{flag} all")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def markdown_report(result: Mapping[str, object]) -> str:
    """Format the aggregated result as a markdown page: table, settings, comparisons, command."""
    settings = result["settings"]
    devices = sorted({run["device"] for run in result["runs"] if "device" in run})
    torch_versions = sorted({run["torch_version"] for run in result["runs"] if "torch_version" in run})
    lines = [
        "# NA variants on MNIST",
        "",
        markdown_table(result["rows"]),
        settings_line(settings),
        f"Runs finished: {result['finished']} of {result['planned']}. "
        f"Measured on {'; '.join(devices) or 'unknown hardware'} "
        f"with torch {', '.join(torch_versions) or 'unknown'}. "
        "Time per epoch is the wall time of the training loop (data loading included).",
        "",
    ]
    if result["comparisons"]:
        lines += ["Differences of mean test accuracy, in percentage points:", ""]
        lines += [f"- {comparison['statement']}" for comparison in result["comparisons"]]
        lines.append("")
    lines += ["Command:", "", "```bash", command_line(settings), "```", ""]
    return "\n".join(lines)


def accuracy_figure(rows: Sequence[Mapping[str, object]]) -> bytes:
    """Draw the test accuracy of each variant as a PNG: mean markers, std error bars, seed points.

    The variants are listed top to bottom in the order of ``rows`` (best first). The x axis
    spans only the measured accuracies, so the plot shows markers rather than bars, whose
    lengths would suggest ratios from zero.
    """
    # matplotlib.figure.Figure renders without pyplot, so no global backend state is touched.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 0.45 * len(rows) + 1.4), layout="constrained")
    axes = figure.add_subplot()
    positions = list(range(len(rows)))[::-1]
    means = [100 * row["test_acc_mean"] for row in rows]
    stds = [0.0 if row["test_acc_std"] is None else 100 * row["test_acc_std"] for row in rows]
    axes.errorbar(
        means, positions, xerr=stds, fmt="D", color="#e6550d", ecolor="#e6550d", capsize=4,
        markersize=6, label="mean ± std", zorder=3,
    )
    axes.grid(axis="x", color="#dddddd")
    axes.set_axisbelow(True)

    for position, row in zip(positions, rows):
        points = [100 * accuracy for accuracy in row["test_acc"]]
        # Spread the seeds of a variant vertically over 0.3 of a row so that equal values stay visible.
        spacing = 0.3 / max(len(points) - 1, 1)
        offsets = [spacing * (index - (len(points) - 1) / 2) for index in range(len(points))]
        axes.plot(points, [position + offset for offset in offsets], "o", color="#08519c", markersize=4)
    axes.plot([], [], "o", color="#08519c", markersize=4, label="one seed")

    all_points = [100 * accuracy for row in rows for accuracy in row["test_acc"]]
    lowest = min(all_points) if all_points else 0.0
    highest = max([*all_points, *(mean + std for mean, std in zip(means, stds))], default=100.0)
    margin = max(0.1 * (highest - lowest), 0.2)
    axes.set_xlim(max(lowest - margin, 0.0), min(highest + margin, 100.0))
    axes.set_yticks(positions, [row["variant"] for row in rows], fontsize=8)
    axes.set_xlabel("MNIST test accuracy (%)")
    axes.legend(loc="best", fontsize=8)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def _parse_batches(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the command."""
    defaults = VariantStudySettings()
    parser = argparse.ArgumentParser(
        prog="python -m na_lightning.experiments.variants",
        description="Train the NA option variants and STBP on MNIST and compare their test accuracy.",
    )
    parser.add_argument("--data-dir", required=True, help="folder with the four MNIST files")
    parser.add_argument(
        "--out", type=output_folder, default=DEFAULT_OUTPUT, help="output folder (default: %(default)s)"
    )

    study = parser.add_argument_group("study")
    study.add_argument(
        "--variants",
        nargs="+",
        default=list(defaults.variants),
        help=f"variants to train (default: all): {', '.join(VARIANT_NAMES)}",
    )
    study.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=list(defaults.seeds),
        help="seeds (default: 0 1 2)",
    )
    study.add_argument(
        "--fresh",
        action="store_true",
        help=f"run everything again, ignoring runs in {RUNS_FILE}",
    )

    budget = parser.add_argument_group("training and test budget")
    budget.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help="epochs per run (default: %(default)s)",
    )
    budget.add_argument(
        "--train-batches",
        type=_parse_batches,
        default=defaults.train_batches,
        help="training batches per epoch, or 'all' (default: %(default)s)",
    )
    budget.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="images per batch (default: %(default)s)"
    )
    budget.add_argument(
        "--test-subset", type=int, default=None, help="test on the first N test images (default: all 10,000)"
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--lr",
        type=float,
        default=defaults.lr,
        help="initial learning rate (default: %(default)s)",
    )
    training.add_argument(
        "--lr-gamma",
        type=float,
        default=defaults.lr_gamma,
        help="learning-rate factor per epoch (default: %(default)s)",
    )
    training.add_argument(
        "--no-augment",
        action="store_true",
        help="train on images without crop and rotation",
    )

    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "--kernel", default=defaults.kernel, help="NA kernel: auto, compiled or eager (default: %(default)s)"
    )
    execution.add_argument(
        "--accelerator",
        default=defaults.accelerator,
        help="Lightning accelerator, e.g. cpu or gpu (default: %(default)s)",
    )
    execution.add_argument(
        "--num-workers",
        type=int,
        default=defaults.num_workers,
        help="data-loader worker processes (default: %(default)s)",
    )
    execution.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per run (default: torch's default). 1 avoids slowdowns on a shared CPU",
    )
    execution.add_argument("--progress-bar", action="store_true", help="show Lightning's progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study from the command line; print the table and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = VariantStudySettings(
            variants=tuple(args.variants),
            seeds=tuple(args.seeds),
            epochs=args.epochs,
            train_batches=args.train_batches,
            batch_size=args.batch_size,
            test_subset=args.test_subset,
            lr=args.lr,
            lr_gamma=args.lr_gamma,
            augment=not args.no_augment,
            kernel=args.kernel,
            accelerator=args.accelerator,
            num_workers=args.num_workers,
            threads=args.threads,
        )
    except ValueError as error:
        parser.error(command_line_message(str(error), parser))

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # The study logs one line per run; Lightning would add its device summary to every run.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")

    started = time.perf_counter()
    result = run_study(settings, args.data_dir, args.out, fresh=args.fresh, progress_bar=args.progress_bar)
    elapsed = time.perf_counter() - started

    sys.stdout.write(markdown_table(result["rows"]))
    sys.stdout.write(settings_line(result["settings"]) + "\n")
    for comparison in result["comparisons"]:
        sys.stdout.write(comparison["statement"] + "\n")
    written = f"{TABLE_FILE}, {RESULT_FILE} and {FIGURE_FILE}"
    sys.stdout.write(f"Wrote {written} to {args.out} in {elapsed:.0f} s.\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
