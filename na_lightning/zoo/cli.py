"""``na-lightning zoo``: list, describe, evaluate, run and register zoo models.

Errors that a user can fix (unknown model, missing or unreadable file, failed integrity check)
end the command with exit status 1 and one line on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from na_lightning.zoo._api import get_model, list_models, model_info
from na_lightning.zoo._entry import Metric, ZooEntry
from na_lightning.zoo._errors import ZooError
from na_lightning.zoo._eval import EvalResult, evaluate
from na_lightning.zoo._import import import_checkpoint, record_metric
from na_lightning.zoo._predict import predict_files

PROG = "na-lightning zoo"


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``na-lightning zoo`` with ``argv`` (default ``sys.argv[1:]``).

    Raises:
        SystemExit: status 1 after a user error, printed as one line on stderr; status 2 for
            invalid arguments (from argparse).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args.command(args, argv)
    except (ZooError, OSError, ValueError, NotImplementedError) as error:
        _write(sys.stderr, f"{PROG}: error: {error}")
        raise SystemExit(1) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``na-lightning zoo``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Registered NA-trained spiking networks.")
    parser.add_argument(
        "--zoo-dir", default=None, help="registry folder (default: $NA_LIGHTNING_ZOO or <repository>/zoo)"
    )
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the registered models")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: *)")
    listing.set_defaults(command=_list)

    info = commands.add_parser("info", help="show a model's registry entry")
    info.add_argument("name", help="model name, architecture.tag")
    info.add_argument("--json", action="store_true", help="print the entry as JSON")
    info.set_defaults(command=_info)

    evaluation = commands.add_parser("eval", help="measure a model's test accuracy again")
    evaluation.add_argument("name", help="model name, architecture.tag")
    evaluation.add_argument(
        "--data-dir",
        default=None,
        help="dataset folder (default: $NA_LIGHTNING_DATA/<dataset> when the variable is set, "
        "else data/<dataset> in the working directory)",
    )
    evaluation.add_argument(
        "--limit", type=_positive_int, default=None, help="evaluate a fixed random sample of N test samples"
    )
    evaluation.add_argument(
        "--batch-size", type=_positive_int, default=256, help="samples per forward pass (default: 256)"
    )
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default: 0)")
    evaluation.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    evaluation.add_argument(
        "--record",
        action="store_true",
        help="store the measured accuracy as the entry's test metric (needs the whole split)",
    )
    evaluation.set_defaults(command=_eval)

    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("name", help="model name, architecture.tag")
    predict.add_argument("files", nargs="+", help="image files (PNG, JPEG, ...)")
    predict.add_argument(
        "--batch-size", type=_positive_int, default=64, help="images per forward pass (default: 64)"
    )
    predict.set_defaults(command=_predict)

    register = commands.add_parser("import", help="register a Lightning checkpoint as a zoo model")
    _add_import_arguments(register)
    register.set_defaults(command=_import)
    return parser


def _add_import_arguments(register: argparse.ArgumentParser) -> None:
    register.add_argument("checkpoint", help="the .ckpt file")
    register.add_argument("--name", required=True, help="new model name, architecture.tag")
    register.add_argument(
        "--overwrite", action="store_true", help="replace an existing entry of the same name"
    )

    register.add_argument(
        "--dataset", default=None, help="dataset name, e.g. mnist (default: from the checkpoint)"
    )
    register.add_argument(
        "--url", default=None, help="download URL of the weights, for files too large to commit"
    )

    register.add_argument("--config", default=None, help="training config, relative to the repository root")
    register.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: checkpoint epoch + 1)"
    )
    register.add_argument("--seed", type=int, default=None, help="training seed")
    register.add_argument("--hardware", default=None, help="training hardware, e.g. '1x NVIDIA A100'")
    register.add_argument("--wall-time-s", type=float, default=None, help="training wall time, in seconds")

    register.add_argument(
        "--classes",
        default=None,
        type=_class_names,
        help="comma-separated class names in label order (default: the dataset's)",
    )
    register.add_argument(
        "--input-spec",
        default=None,
        type=_json_object,
        metavar="JSON",
        help=(
            "the entry's input object, e.g. '{\"shape\": [1, 28, 28], \"encoding\": \"analog\", "
            "\"mean\": [0.5], \"std\": [0.25]}' (default: from the builder and dataset)"
        ),
    )
    register.add_argument("--license", default=None, help="data license (default: the dataset's)")
    register.add_argument("--notes", default="", help="free text for the entry")
    register.add_argument(
        "--metric",
        action="append",
        default=[],
        type=_json_object,
        metavar="JSON",
        help=(
            "a measured metric as a JSON object with dataset, split, num_samples, accuracy, date "
            "and command; repeatable"
        ),
    )
    register.add_argument(
        "--builder",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="NAClassifier argument that replaces the checkpoint's; VALUE is JSON or a string; repeatable",
    )


def _list(args: argparse.Namespace, argv: list[str]) -> None:
    names = list_models(args.pattern, zoo_dir=args.zoo_dir)
    if not names:
        _write(sys.stdout, f"No registered model matches {args.pattern!r}.")
        return
    rows = [("NAME", "DATASET", "TEST ACC", "PARAMS", "WEIGHTS")]
    for name in names:
        entry = model_info(name, zoo_dir=args.zoo_dir)
        metric = entry.metric()
        accuracy = "-" if metric is None else f"{100 * metric.accuracy:.2f} %"
        if entry.weights is None:
            weights = "none"
        elif entry.weights.url:
            weights = "url"
        else:
            weights = "file"
        rows.append((name, entry.dataset, accuracy, str(entry.num_params), weights))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        _write(sys.stdout, "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _info(args: argparse.Namespace, argv: list[str]) -> None:
    entry = model_info(args.name, zoo_dir=args.zoo_dir)
    if args.json:
        _write(sys.stdout, json.dumps(entry.to_dict(), indent=2))
        return
    for label, value in describe(entry):
        _write(sys.stdout, f"{label:<13}{value}")


def describe(entry: ZooEntry) -> list[tuple[str, str]]:
    """Return the human-readable lines of ``zoo info`` as (label, text) pairs."""
    builder = entry.builder
    shape = ", ".join(map(str, entry.input.shape))
    lines = [
        ("name", entry.name),
        ("dataset", f"{entry.dataset} ({len(entry.classes)} classes: {', '.join(entry.classes)})"),
        ("architecture", f"{builder['architecture']} (padding {builder['padding']})"),
        ("input", f"[{shape}], {entry.input.encoding}" + _input_details(entry)),
        (
            "neurons",
            f"T={builder['time_steps']}, tau_m={builder['tau_m']}, tau_s={builder['tau_s']}, "
            f"theta={builder['theta']}",
        ),
        ("loss", str(builder["loss"])),
        ("parameters", f"{entry.num_params:,}"),
    ]

    if entry.weights is None:
        lines.append(("weights", "none (registered without trained weights; pretrained=False builds it untrained)"))
        config = f"--config {entry.recipe.config}" if entry.recipe.config else "--config CONFIG"
        lines.append((
            "to train",
            f"na-lightning fit {config}, then na-lightning zoo import CHECKPOINT --name {entry.name} "
            "--overwrite",
        ))
    else:
        lines.append(("weights", f"{entry.weights.file} ({entry.weights.num_bytes:,} bytes)"))
        lines.append(("sha256", entry.weights.sha256))
        if entry.weights.url:
            lines.append(("url", entry.weights.url))

    for metric in entry.metrics or ():
        lines.append((
            "metric",
            f"{metric.dataset} {metric.split}: {100 * metric.accuracy:.2f} % on {metric.num_samples} "
            f"samples ({metric.date}): {metric.command}",
        ))
    if not entry.metrics:
        lines.append(("metric", "none recorded"))

    recipe = entry.recipe
    lines.append((
        "recipe",
        f"config {_or_unknown(recipe.config)}, {recipe.epochs} epochs, seed {_or_unknown(recipe.seed)}, "
        f"hardware {_or_unknown(recipe.hardware)}, wall time {_or_unknown(recipe.wall_time_s, ' s')}",
    ))
    lines.append(("license", entry.license))
    lines.append(("hub", f"torch.hub.load(REPO_DIR, {entry.hub_name!r}, source='local')"))
    if entry.notes:
        lines.append(("notes", entry.notes))
    return lines


def _input_details(entry: ZooEntry) -> str:
    spec = entry.input
    if spec.encoding == "analog":
        return f", normalized with mean {list(spec.mean)} and std {list(spec.std)}"
    return f", sensor {list(spec.sensor_size)}, frames of {spec.time_bin_us} us"


def _or_unknown(value: Any, unit: str = "") -> str:
    return "unknown" if value is None else f"{value}{unit}"


def _eval(args: argparse.Namespace, argv: list[str]) -> None:
    if args.record and args.limit is not None:
        raise ZooError("--record needs the whole test split, so remove --limit.")
    result = evaluate(
        args.name,
        data_dir=args.data_dir,
        limit=args.limit,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        zoo_dir=args.zoo_dir,
    )
    for label, value in eval_report(result):
        _write(sys.stdout, f"{label:<12}{value}")

    if args.record:
        command = shlex.join(["na-lightning", "zoo", *[arg for arg in argv if arg != "--record"]])
        metric = Metric(
            dataset=result.dataset,
            split=result.split,
            num_samples=result.num_samples,
            accuracy=round(result.accuracy, 6),
            date=datetime.date.today().isoformat(),
            command=command,
        )
        entry = record_metric(result.name, metric, zoo_dir=args.zoo_dir)
        _write(sys.stdout, f"{'recorded in':<12}{entry.source}")


def eval_report(result: EvalResult) -> list[tuple[str, str]]:
    """Return the lines of ``zoo eval`` as (label, text) pairs."""
    sample = "" if result.seed is None else f" (random sample, seed {result.seed})"
    lines = [
        ("model", result.name),
        (
            "dataset",
            f"{result.dataset} {result.split}, {result.num_samples} of {result.split_size} samples{sample}",
        ),
        ("measured", f"{100 * result.accuracy:.2f} % ({result.num_correct} / {result.num_samples})"),
    ]
    if result.recorded is None:
        lines.append(("recorded", "none"))
        return lines
    recorded = result.recorded
    lines.append(
        ("recorded", f"{100 * recorded.accuracy:.2f} % ({recorded.num_samples} samples, {recorded.date})")
    )
    lines.append((
        "difference",
        f"{100 * result.difference:+.2f} percentage points (tolerance {100 * result.tolerance:.2f})",
    ))
    return lines


def _predict(args: argparse.Namespace, argv: list[str]) -> None:
    model = get_model(args.name, zoo_dir=args.zoo_dir)
    for prediction in predict_files(model, args.files, batch_size=args.batch_size):
        _write(sys.stdout, f"{prediction.file}\t{prediction.class_name}\t{prediction.score:.4f}")


def _import(args: argparse.Namespace, argv: list[str]) -> None:
    recipe = {
        "config": args.config,
        "epochs": args.epochs,
        "seed": args.seed,
        "hardware": args.hardware,
        "wall_time_s": args.wall_time_s,
    }
    entry = import_checkpoint(
        args.checkpoint,
        args.name,
        dataset=args.dataset,
        metrics=args.metric,
        recipe={key: value for key, value in recipe.items() if value is not None},
        builder=dict(args.builder),
        classes=args.classes,
        input_spec=args.input_spec,
        license=args.license,
        notes=args.notes,
        url=args.url,
        zoo_dir=args.zoo_dir,
        overwrite=args.overwrite,
    )
    _write(sys.stdout, f"Registered {entry.name}: {entry.source}")
    _write(sys.stdout, f"weights {entry.weights.file} sha256 {entry.weights.sha256}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _class_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-empty class names, got {text!r}")
    return names


def _key_value(text: str) -> tuple[str, Any]:
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _write(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
