r"""Spike-train changes of real training steps, compared with the SNS neighbors of each neuron.

The experiment of section 4.1 and Figure 5 of the NA paper (Yang, Zhang and Li,
"Backpropagated Neighborhood Aggregation for Accurate Training of Spiking Neural
Networks", ICML 2021). A spiking network is trained with NA for a number of
iterations. Before and after every update the same batch runs through the network
(dropout off), and every spiking neuron's output spike train is recorded. For each
train that changed, the experiment checks whether the new train is one of the ``T``
neighbors of Simple Neighborhood Selection (SNS), computed from the potential before
the update, and how near that neighbor is.

SNS neighbor ``p`` of a neuron with pre-reset membrane potential ``u`` flips the
firing at step ``p`` with the least perturbation ``theta - u[p]``, so the perturbed
potential sits exactly at ``theta``. A lost spike leaves the membrane at ``theta``
(no reset), a gained spike resets it to 0. For ``t > p`` the neuron follows the LIF
dynamics with the original input currents (the chain effect):

.. math::
    u'[t] = u[t] + (1 - 1/\tau_m)\,(m'[t-1] - m[t-1])

which needs only ``u``, because ``u[t] - (1 - 1/tau_m) m[t-1]`` is the input current.
The distance of neighbor ``p`` is ``|theta - u[p]|``, and rank 1 is the nearest
neighbor (ties go to the earlier step).

To rank a new train among all ``2**T`` trains, the experiment extends that distance
to any target train by building the perturbation step by step. At each step it adds
the least perturbation that gives the target's firing at that step, given the
perturbed history, and the distance is the L2 norm of these perturbations. This
greedy distance equals ``|theta - u[p]|`` for SNS neighbor ``p`` and is never
smaller than the distance of the SNS neighbor at the target's first differing step,
so the nearest of all trains is always an SNS neighbor.

NOTE: the greedy distance is an upper bound of the minimum-norm perturbation that
reaches a target train (the paper's MP-dist to the train's region), because
spreading a perturbation over earlier steps can cost less.

Run ``python -m na_lightning.experiments.neighborhood --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from na_lightning.cli_errors import run_cli
from na_lightning.experiments._arguments import DEFAULT_OUTPUT, command_line_message, output_folder
from na_lightning.data.errors import DataNotFoundError
from na_lightning.data.mnist import MNISTDataModule
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.models.backbone import parse_architecture

logger = logging.getLogger(__name__)

MAX_TIME_STEPS = 12
"""Largest ``T``: the transfer matrix has ``4**T`` int64 entries (128 MiB at T = 12)."""

KERNELS = ("auto", "compiled", "eager")
DEVICES = ("auto", "cpu", "cuda")
PAPER_NEAREST_SHARE = 0.63
"""Share of spike-train changes to the nearest train that the NA paper reports (Figure 5b)."""

TRANSFERS_FIGURE = "neighborhood_transfers.png"
RANK_FIGURE = "neighborhood_rank_cdf.png"
TABLE_FILE = "neighborhood.md"
JSON_FILE = "neighborhood.json"

# Candidate trains times neurons per chunk of the all-trains ranking, 8 MiB of float32.
_RANK_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class NeighborhoodSettings:
    """Settings of the neighborhood experiment.

    The defaults are the paper's setup (MNIST network, ``T = 10``, 100 iterations of
    batch 64) with the NA recipe of the authors' code otherwise (AdamW, lr 5e-4,
    gradient-norm clip 1.0, weights clamped to [-4, 4]).

    Attributes:
        iterations: training iterations (weight updates) to observe.
        time_steps: simulation steps ``T``, at most :data:`MAX_TIME_STEPS`.
        batch_size: images per iteration.
        seed: seed of the weight initialization and of the batch order.
        architecture: hidden layers in the notation of :mod:`na_lightning.models.backbone`.
        num_classes: neurons of the output layer.
        tau_m: membrane time constant, in steps.
        tau_s: synaptic time constant, in steps.
        theta: firing threshold, in units of membrane potential.
        lr: AdamW learning rate.
        grad_clip: maximum gradient norm, or ``None`` for no clipping.
        rescale: per-layer NA gradient rescaling. Default off, the setting of the
            published results (the library's default is on).
        rank_all_trains: also rank each new train among all ``2**T`` trains by the
            greedy distance of the module docstring.
        kernel: NA kernels, ``"auto"``, ``"compiled"`` or ``"eager"``
            (see :func:`na_lightning.functional.lif_neuron`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        progress: show a progress bar.
    """

    iterations: int = 100
    time_steps: int = 10
    batch_size: int = 64
    seed: int = 0
    architecture: str = "15C5-P2-40C5-P2-300"
    num_classes: int = 10
    tau_m: float = 5.0
    tau_s: float = 2.0
    theta: float = 1.0
    lr: float = 5e-4
    grad_clip: float | None = 1.0
    rescale: bool = False
    rank_all_trains: bool = True
    kernel: str = "auto"
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        _check_integer("iterations", self.iterations, 1, "Pass at least one iteration, e.g. --iterations 100.")
        _check_integer("batch_size", self.batch_size, 1, "Pass at least one image per batch, e.g. --batch-size 64.")
        _check_integer("num_classes", self.num_classes, 1, "Pass the number of classes, e.g. 10 for MNIST.")
        _check_integer("seed", self.seed, 0, "Pass a non-negative seed, e.g. --seed 0.")
        _check_integer("time_steps", self.time_steps, 1, "Pass e.g. --time-steps 10.")
        if self.time_steps > MAX_TIME_STEPS:
            raise ValueError(
                f"time_steps={self.time_steps} is invalid; expected at most {MAX_TIME_STEPS}, because the "
                f"transfer matrix has 4**T entries. Pass --time-steps {MAX_TIME_STEPS} or less."
            )
        for name in ("tau_m", "tau_s"):
            value = getattr(self, name)
            if not _is_real(value) or value < 1.0:
                raise ValueError(
                    f"{name}={value!r} is invalid; expected a time constant >= 1 step. Pass e.g. {name}=5.0."
                )
        for name in ("theta", "lr"):
            value = getattr(self, name)
            if not _is_real(value) or value <= 0:
                raise ValueError(f"{name}={value!r} is invalid; expected a finite value > 0.")
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or self.grad_clip <= 0):
            raise ValueError(
                f"grad_clip={self.grad_clip!r} is invalid; expected a norm > 0, or None for no clipping."
            )
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel={self.kernel!r} is not supported; expected one of {KERNELS}.")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is not supported; expected one of {DEVICES}.")
        parse_architecture(self.architecture)

    @property
    def train_count(self) -> int:
        """Number of distinct spike trains of ``T`` steps, ``2**T``."""
        return 1 << self.time_steps


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_integer(name: str, value, minimum: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}. {fix}")


# --- Spike trains and their SNS neighbors -------------------------------------------------


def spike_train_index(spikes: Tensor) -> Tensor:
    """Convert spike trains to their decimal index, first step as the most significant bit.

    ``[0, 0, 0, 0, 0, 0, 0, 1, 0, 1]`` maps to 5 and ten spikes map to 1023.

    Args:
        spikes: spike trains, shape ``[T, ...]``, bool or 0/1 values, ``T <= 62``.

    Returns:
        int64 indices in ``[0, 2**T)``, shape ``[...]``.
    """
    steps = spikes.shape[0]
    weights = 2 ** torch.arange(steps - 1, -1, -1, device=spikes.device, dtype=torch.int64)
    weights = weights.view(steps, *([1] * (spikes.dim() - 1)))
    return (spikes.to(torch.int64) * weights).sum(0)


def sns_neighbor_spikes(potential: Tensor, *, tau_m: float, theta: float) -> Tensor:
    """Simulate the SNS neighbors of LIF neurons and return their spike trains.

    Neighbor ``p`` flips the firing at step ``p`` and then follows the chain effect
    (module docstring). It equals the original train before ``p`` and differs at ``p``.

    Args:
        potential: pre-reset membrane potential ``u``, shape ``[T, N]``.
        tau_m: membrane time constant, in steps.
        theta: firing threshold; a neuron fires when ``u > theta``.

    Returns:
        bool spike trains, shape ``[T (neighbor p), T (step t), N]``.
    """
    steps = potential.shape[0]
    decay = 1.0 - 1.0 / tau_m
    fired = potential > theta
    membrane = potential.masked_fill(fired, 0.0)

    # Row p carries neighbor p's membrane minus the original one; rows p > t stay 0,
    # so those neighbors reproduce the original exactly.
    gap = torch.zeros_like(potential)
    neighbors = []
    for t in range(steps):
        neighbor_potential = potential[t] + decay * gap
        neighbor_fired = neighbor_potential > theta
        neighbor_membrane = neighbor_potential.masked_fill(neighbor_fired, 0.0)

        # The flip at t: a lost spike leaves the membrane at theta, a gained spike resets it.
        neighbor_fired[t] = ~fired[t]
        neighbor_membrane[t] = torch.where(fired[t], theta, 0.0).to(potential.dtype)

        neighbors.append(neighbor_fired)
        gap = neighbor_membrane - membrane[t]
    return torch.stack(neighbors, dim=1)


def neighbor_ranks(potential: Tensor, after_index: Tensor, *, tau_m: float, theta: float) -> Tensor:
    """Rank the observed new trains among the SNS neighbors of the old potentials.

    Neighbors are sorted by distance ``|theta - u[p]|``, ties by ``p``.

    Args:
        potential: pre-reset membrane potential before the update, shape ``[T, N]``.
        after_index: decimal index of each neuron's train after the update, shape ``[N]``.
        tau_m: membrane time constant, in steps.
        theta: firing threshold.

    Returns:
        int64 ranks, shape ``[N]``: 1 for the nearest neighbor up to ``T``, and 0 where
        the new train equals no neighbor (also where it equals the old train).
    """
    steps = potential.shape[0]
    neighbor_index = spike_train_index(sns_neighbor_spikes(potential, tau_m=tau_m, theta=theta).transpose(0, 1))
    matches = neighbor_index == after_index.unsqueeze(0)
    is_neighbor = matches.any(0)
    matched_step = matches.to(torch.int8).argmax(0)

    # Squares order like |theta - u| and are the numbers that all_train_ranks compares.
    distance = (theta - potential).square()
    matched_distance = distance.gather(0, matched_step.unsqueeze(0))
    steps_column = torch.arange(steps, device=potential.device).unsqueeze(1)
    nearer = (distance < matched_distance) | ((distance == matched_distance) & (steps_column < matched_step))
    ranks = 1 + nearer.sum(0)
    return torch.where(is_neighbor, ranks, torch.zeros_like(ranks))


def greedy_squared_distances(potential: Tensor, *, tau_m: float, theta: float) -> Tensor:
    """Compute the squared greedy distance from each neuron to every spike train.

    The distance to a target train is the L2 norm of the perturbation that, step by
    step, adds the least change giving the target's firing (module docstring). Trains
    that share a prefix share its cost, so the search runs over the binary tree of
    prefixes: ``2**(T+1)`` states per neuron instead of ``T * 2**T``.

    Args:
        potential: pre-reset membrane potential ``u``, shape ``[T, N]``.
        tau_m: membrane time constant, in steps.
        theta: firing threshold.

    Returns:
        squared distances, shape ``[2**T, N]``, row ``i`` for the train of decimal index
        ``i`` (:func:`spike_train_index`). The neuron's own train has distance 0.
    """
    steps, count = potential.shape
    decay = 1.0 - 1.0 / tau_m
    membrane = potential.masked_fill(potential > theta, 0.0)

    # Row i of each state is the prefix with binary code i.
    gap = potential.new_zeros(1, count)
    cost = potential.new_zeros(1, count)
    for t in range(steps):
        free = potential[t] + decay * gap

        # Target without a spike: pull a firing potential down to theta, which keeps it.
        silent_change = (theta - free).clamp(max=0.0)
        silent_membrane = free.clamp(max=theta)

        # Target with a spike: lift a silent potential up to theta; the spike resets it.
        firing_change = (theta - free).clamp(min=0.0)
        firing_membrane = torch.zeros_like(free)

        cost = torch.stack((cost + silent_change.square(), cost + firing_change.square()), dim=1)
        cost = cost.reshape(-1, count)
        gap = torch.stack((silent_membrane, firing_membrane), dim=1).reshape(-1, count) - membrane[t]
    return cost


def all_train_ranks(
    potential: Tensor, before_index: Tensor, after_index: Tensor, *, tau_m: float, theta: float
) -> Tensor:
    """Rank each new train among all other ``2**T - 1`` trains by greedy distance.

    Args:
        potential: pre-reset membrane potential before the update, shape ``[T, N]``.
        before_index: decimal index of the old trains, shape ``[N]``.
        after_index: decimal index of the new trains, shape ``[N]``.
        tau_m: membrane time constant, in steps.
        theta: firing threshold.

    Returns:
        int64 ranks in ``[1, 2**T - 1]``, shape ``[N]``; 1 is the nearest train other
        than the old one. Among equally distant trains, the one that differs from the
        old train at an earlier step comes first.
    """
    steps, count = potential.shape
    train_count = 1 << steps
    chunk = max(1, _RANK_CHUNK_ELEMENTS // train_count)
    indices = torch.arange(train_count, device=potential.device).unsqueeze(1)
    ranks = []
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        cost = greedy_squared_distances(potential[:, start:stop], tau_m=tau_m, theta=theta)
        before, after = before_index[start:stop], after_index[start:stop]
        observed = cost.gather(0, after.unsqueeze(0))

        # Ties go to the train that first differs from the old one earlier, as among the
        # SNS neighbors; the earlier that step, the larger ``index ^ before``.
        earlier = (indices ^ before) > (after ^ before)
        nearer = (cost < observed) | ((cost == observed) & earlier)
        nearer &= indices != before
        ranks.append(1 + nearer.sum(0))
    return torch.cat(ranks)


# --- Tallies --------------------------------------------------------------------------------


@dataclass
class LayerTally:
    """Counts of one spiking layer (or of all layers) over the whole run.

    Attributes:
        name: module name, e.g. ``layers.0``, or ``all`` for the total.
        label: the layer's architecture token, e.g. ``15C5``.
        neurons: neurons per sample.
        observed: spike trains observed (neurons x samples x iterations).
        changed: trains that differ after the update.
        neighbor_ranks: counts by SNS neighbor rank, ``[T + 1]``; index 0 counts the
            changed trains that equal no neighbor.
        all_train_ranks: counts by rank among all trains, ``[2**T]`` (index 0 unused),
            or ``None`` when not computed.
    """

    name: str
    label: str
    neurons: int
    time_steps: int
    rank_all_trains: bool
    observed: int = 0
    changed: int = 0
    neighbor_ranks: np.ndarray = field(init=False)
    all_train_ranks: np.ndarray | None = field(init=False)

    def __post_init__(self) -> None:
        self.neighbor_ranks = np.zeros(self.time_steps + 1, dtype=np.int64)
        self.all_train_ranks = np.zeros(1 << self.time_steps, dtype=np.int64) if self.rank_all_trains else None

    def add(self, tally: LayerTally) -> None:
        self.observed += tally.observed
        self.changed += tally.changed
        self.neighbor_ranks += tally.neighbor_ranks
        if self.all_train_ranks is not None and tally.all_train_ranks is not None:
            self.all_train_ranks += tally.all_train_ranks

    def share(self, count: int) -> float:
        """Return ``count`` as a share of the changed trains (NaN when none changed)."""
        return count / self.changed if self.changed else math.nan

    @property
    def neighbor_share(self) -> float:
        """Share of changed trains that equal one of their SNS neighbors."""
        return self.share(self.changed - int(self.neighbor_ranks[0]))

    def within_rank(self, rank: int) -> float:
        """Share of changed trains that equal an SNS neighbor of rank ``<= rank``."""
        return self.share(int(self.neighbor_ranks[1 : rank + 1].sum()))

    @property
    def nearest_of_all_share(self) -> float:
        """Share of changed trains that are the nearest of all trains (NaN when not ranked)."""
        if self.all_train_ranks is None:
            return math.nan
        return self.share(int(self.all_train_ranks[1]))

    def summary(self) -> dict:
        """Counts and shares as JSON-ready values (NaN becomes ``None``)."""
        return {
            "name": self.name,
            "label": self.label,
            "neurons_per_sample": self.neurons,
            "observed_trains": self.observed,
            "changed_trains": self.changed,
            "changed_share": _json_float(self.changed / self.observed if self.observed else math.nan),
            "neighbor_share": _json_float(self.neighbor_share),
            "rank1_share": _json_float(self.within_rank(1)),
            "rank2_share": _json_float(self.within_rank(2)),
            "rank3_share": _json_float(self.within_rank(3)),
            "nearest_of_all_share": _json_float(self.nearest_of_all_share),
            "neighbor_rank_counts": self.neighbor_ranks.tolist(),
            "all_train_rank_counts": None if self.all_train_ranks is None else self.all_train_ranks.tolist(),
        }


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass
class NeighborhoodResult:
    """Everything the experiment measured.

    Attributes:
        settings: the settings of the run.
        layers: one tally per spiking layer, input to output.
        overall: the sum over layers.
        transfers: int64 counts ``[2**T, 2**T]`` of transfers from the train before
            (row) to the train after (column), diagonal included.
        losses: training loss of each iteration, before its update.
        input_shape: ``(C, H, W)`` of the images.
        data_source: where the images came from.
        wall_time_s: seconds from the first to the last iteration.
    """

    settings: NeighborhoodSettings
    layers: list[LayerTally]
    overall: LayerTally
    transfers: Tensor
    losses: list[float]
    input_shape: tuple[int, ...]
    data_source: str
    wall_time_s: float = 0.0

    def off_diagonal_transfers(self) -> Tensor:
        """Return the transfer matrix with its diagonal (unchanged trains) set to 0."""
        matrix = self.transfers.clone()
        matrix.fill_diagonal_(0)
        return matrix

    def to_json(self) -> dict:
        """Return the result as a JSON-ready dictionary, with the transfer matrix stored sparse."""
        matrix = self.off_diagonal_transfers()
        rows, columns = matrix.nonzero(as_tuple=True)
        return {
            "experiment": "spike-train transfers vs SNS neighbors (NA paper, section 4.1, Figure 5)",
            "settings": asdict(self.settings),
            "input_shape": list(self.input_shape),
            "data_source": self.data_source,
            "wall_time_s": self.wall_time_s,
            "paper_nearest_share": PAPER_NEAREST_SHARE,
            "layers": [tally.summary() for tally in self.layers],
            "overall": self.overall.summary(),
            "losses": self.losses,
            "transfers": {
                "size": int(self.transfers.shape[0]),
                "unchanged_total": int(self.transfers.diagonal().sum()),
                "off_diagonal_before_after_count": [
                    list(entry)
                    for entry in zip(rows.tolist(), columns.tolist(), matrix[rows, columns].tolist())
                ],
            },
        }


# --- The training run -----------------------------------------------------------------------


def run_neighborhood(
    settings: NeighborhoodSettings,
    data: MNISTDataModule | tuple[Tensor, Tensor],
) -> NeighborhoodResult:
    """Train with NA and compare every spike-train change with the SNS neighbors.

    Args:
        settings: experiment settings.
        data: an :class:`~na_lightning.data.MNISTDataModule` with ``augment=False``
            and ``batch_size == settings.batch_size`` (its training split is used), or
            a pair ``(images [M, C, H, W] float, labels [M] int64)`` of normalized
            images, cut into consecutive batches and repeated as needed.

    Returns:
        The tallies, the transfer matrix and the losses.

    Raises:
        ValueError: the data does not fit the settings; the message names the fix.
    """
    device = _resolve_device(settings.device)
    batches, input_shape, source = _batch_source(settings, data)

    torch.manual_seed(settings.seed)
    model = NAClassifier(
        architecture=settings.architecture,
        num_classes=settings.num_classes,
        input_shape=input_shape,
        time_steps=settings.time_steps,
        tau_m=settings.tau_m,
        tau_s=settings.tau_s,
        theta=settings.theta,
        kernel=settings.kernel,
        lr=settings.lr,
        rescale=settings.rescale,
    ).to(device)
    optimizer = model.configure_optimizers()["optimizer"]
    layers = model.network.spiking_layers
    labels = _layer_labels(settings, list(layers))

    tallies = [LayerTally(name, labels[name], 0, settings.time_steps, settings.rank_all_trains) for name in layers]
    overall = LayerTally("all", "all layers", 0, settings.time_steps, settings.rank_all_trains)
    transfers = torch.zeros(settings.train_count**2, dtype=torch.int64, device=device)
    losses = []

    logger.info("Neighborhood experiment on %s: %s", device, settings)
    start = time.perf_counter()
    progress = tqdm(total=settings.iterations, desc="neighborhood", unit="it", disable=not settings.progress)
    for iteration in range(settings.iterations):
        images, targets = next(batches)
        images, targets = images.to(device), targets.to(device)

        before = _record_potentials(model, images)
        loss = _train_step(model, optimizer, images, targets, settings.grad_clip, iteration)
        after = _record_potentials(model, images)

        changed = 0
        for tally, name in zip(tallies, layers):
            changed += _compare_layer(settings, before[name], after[name], len(images), transfers, tally)
        losses.append(loss)
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.4f}", changed=changed)
        logger.debug("iteration %d: loss %.5f, %d changed trains", iteration, loss, changed)
    progress.close()
    wall_time = time.perf_counter() - start

    for tally in tallies:
        overall.add(tally)
        overall.neurons += tally.neurons
    return NeighborhoodResult(
        settings=settings,
        layers=tallies,
        overall=overall,
        transfers=transfers.view(settings.train_count, settings.train_count).cpu(),
        losses=losses,
        input_shape=input_shape,
        data_source=source,
        wall_time_s=wall_time,
    )


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available; pass device='cpu' "
            "(--device cpu on the command line)."
        )
    return torch.device(device)


def _batch_source(settings: NeighborhoodSettings, data) -> tuple[Iterator, tuple[int, ...], str]:
    """Return an endless batch iterator, the image shape ``(C, H, W)`` and a description."""
    if isinstance(data, MNISTDataModule):
        if data.augment:
            raise ValueError(
                "The MNISTDataModule has augment=True; the experiment trains and measures on the "
                "same unaugmented batch. Pass MNISTDataModule(..., augment=False)."
            )
        if data.batch_size != settings.batch_size:
            raise ValueError(
                f"The MNISTDataModule has batch_size={data.batch_size} but the settings have "
                f"batch_size={settings.batch_size}; pass the same value to both."
            )
        data.prepare_data()
        data.setup("fit")
        source = f"MNIST training split in {data.data_dir} (seed {data.seed}, unaugmented)"
        return _datamodule_batches(data), tuple(data.dims), source

    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            f"data must be an MNISTDataModule or a pair (images [M, C, H, W], labels [M]), "
            f"got {type(data).__name__}."
        )
    images, labels = data
    if images.dim() != 4 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"images must have shape [M, C, H, W] and labels [M], got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}. Add the channel axis with images.unsqueeze(1)."
        )
    if not images.is_floating_point():
        raise ValueError(f"images have dtype {images.dtype}; pass normalized float images.")
    if len(labels) and (labels.min() < 0 or labels.max() >= settings.num_classes):
        raise ValueError(
            f"labels must lie in [0, {settings.num_classes}), got values from {int(labels.min())} "
            f"to {int(labels.max())}. Pass num_classes to match the labels."
        )
    if len(labels) < settings.batch_size:
        raise ValueError(
            f"{len(labels)} images are fewer than batch_size={settings.batch_size}; pass more "
            "images or a smaller batch_size."
        )
    source = f"{len(labels)} images given as tensors"
    return _tensor_batches(images, labels.long(), settings.batch_size), tuple(images.shape[1:]), source


def _datamodule_batches(datamodule: MNISTDataModule) -> Iterator:
    loader = datamodule.train_dataloader()
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _tensor_batches(images: Tensor, labels: Tensor, batch_size: int) -> Iterator:
    count = len(labels) - len(labels) % batch_size
    while True:
        for start in range(0, count, batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]


def _layer_labels(settings: NeighborhoodSettings, names: Sequence[str]) -> dict[str, str]:
    """Map ``layers.<i>`` to its architecture token, ``<num_classes>, output`` for the last."""
    tokens = [token.text for token in parse_architecture(settings.architecture)]
    labels = {}
    for name in names:
        position = int(name.split(".")[1])
        labels[name] = tokens[position] if position < len(tokens) else f"{settings.num_classes}, output"
    return labels


def _record_potentials(model: NAClassifier, images: Tensor) -> dict[str, Tensor]:
    """Run the network in evaluation mode and return each spiking layer's ``u`` as ``[T, N]``."""
    layers = model.network.spiking_layers
    model.eval()
    for layer in layers.values():
        layer.record_potential = True
    try:
        with torch.no_grad():
            model.network(images)
        return {name: layer.potential.flatten(1) for name, layer in layers.items()}
    finally:
        for layer in layers.values():
            layer.record_potential = False
            layer.potential = None


def _train_step(model, optimizer, images, targets, grad_clip, iteration) -> float:
    """Run one NA update as the Lightning training loop does: loss, backward, clip, step, clamp."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = model.loss_fn(model.network(images), targets)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    model.on_train_batch_end(None, (images, targets), iteration)
    return float(loss.detach())


def _compare_layer(
    settings, before: Tensor, after: Tensor, batch_size: int, transfers: Tensor, tally: LayerTally
) -> int:
    """Tally one layer's spike-train changes (``u`` before and after, ``[T, N]``).

    Returns the number of changed trains.
    """
    theta, tau_m = settings.theta, settings.tau_m
    before_index = spike_train_index(before > theta)
    after_index = spike_train_index(after > theta)
    transfers += torch.bincount(before_index * settings.train_count + after_index, minlength=transfers.numel())

    changed = before_index != after_index
    changed_count = int(changed.sum())
    tally.neurons = before.shape[1] // batch_size
    tally.observed += before.shape[1]
    tally.changed += changed_count
    if changed_count == 0:
        return 0

    potential = before[:, changed]
    ranks = neighbor_ranks(potential, after_index[changed], tau_m=tau_m, theta=theta)
    tally.neighbor_ranks += torch.bincount(ranks, minlength=settings.time_steps + 1).cpu().numpy()
    if tally.all_train_ranks is not None:
        overall_ranks = all_train_ranks(
            potential, before_index[changed], after_index[changed], tau_m=tau_m, theta=theta
        )
        tally.all_train_ranks += torch.bincount(overall_ranks, minlength=settings.train_count).cpu().numpy()
    return changed_count


# --- Outputs --------------------------------------------------------------------------------


def format_table(result: NeighborhoodResult) -> str:
    """Return the Markdown report: the table per layer and overall, then the settings."""
    settings = result.settings
    steps = settings.time_steps
    header = (
        "| layer | neurons per sample | trains observed | changed | changed share "
        "| equal to an SNS neighbor | nearest neighbor (rank 1) | rank <= 2 | rank <= 3 "
        f"| nearest of all 2^{steps} trains |"
    )
    lines = [header, "|" + "---|" * 10]
    for tally in [*result.layers, result.overall]:
        name = "**all**" if tally is result.overall else f"{tally.name} ({tally.label})"
        lines.append(
            f"| {name} | {tally.neurons} | {tally.observed} | {tally.changed} "
            f"| {_percent(tally.changed / tally.observed if tally.observed else math.nan)} "
            f"| {_percent(tally.neighbor_share)} | {_percent(tally.within_rank(1))} "
            f"| {_percent(tally.within_rank(2))} | {_percent(tally.within_rank(3))} "
            f"| {_percent(tally.nearest_of_all_share)} |"
        )

    losses = result.losses
    notes = [
        "",
        f"Shares are of the changed trains. The network ({settings.architecture}-{settings.num_classes}, "
        f"T = {steps}, tau_m = {settings.tau_m}, tau_s = {settings.tau_s}, theta = {settings.theta}) "
        f"was trained from a random initialization with NA for {settings.iterations} iterations of "
        f"{settings.batch_size} images: AdamW lr {settings.lr}, weight decay 0.01, gradient-norm clip "
        f"{settings.grad_clip}, weights clamped to [-4, 4], per-layer rescaling "
        f"{'on' if settings.rescale else 'off'}. Seed {settings.seed}. Data: {result.data_source}.",
        f"Training loss {losses[0]:.4f} at the first iteration, {losses[-1]:.4f} at the last. "
        f"Wall time {result.wall_time_s:.0f} s.",
        "",
        "A new train equals at most one SNS neighbor, because neighbor p is the only one that first "
        "differs from the old train at step p. Neighbors are ranked by |theta - u[p]|, ties by p. "
        "The last column ranks the new train among all other trains by the greedy distance (the "
        "least perturbation at each step, in order). The nearest of all trains is always an SNS "
        "neighbor, so this column repeats the rank-1 share up to float rounding."
        if settings.rank_all_trains
        else "A new train equals at most one SNS neighbor, because neighbor p is the only one that "
        "first differs from the old train at step p. Neighbors are ranked by |theta - u[p]|, ties "
        "by p. Ranking among all trains was off for this run.",
        "",
        f"The NA paper reports that {PAPER_NEAREST_SHARE:.0%} of the transfers went to the nearest "
        "train, for the same architecture trained by TSSL-BP at T = 10; this network is trained by NA.",
    ]
    return "\n".join(lines + notes) + "\n"


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def plot_transfers(result: NeighborhoodResult, path: Path) -> None:
    """Save the transfer counts as a log-scale image, diagonal zeroed (Figure 5a)."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    matrix = result.off_diagonal_transfers().numpy().astype(float)
    size = matrix.shape[0]
    # More than 1024 pixels across the axes, so that no row or column of a 1024 x 1024 matrix is dropped.
    figure = Figure(figsize=(9.5, 8), layout="constrained")
    axes = figure.add_subplot()
    masked = np.ma.masked_equal(matrix, 0)
    vmax = max(matrix.max(), 1.0)
    image = axes.imshow(
        masked,
        origin="lower",
        norm=LogNorm(vmin=1, vmax=vmax),
        cmap="viridis",
        interpolation="nearest",
        extent=(-0.5, size - 0.5, -0.5, size - 0.5),
    )
    axes.set_facecolor("white")
    axes.set_xlabel("after: spike train index")
    axes.set_ylabel("before: spike train index")
    axes.set_title(
        f"Spike-train transfers in {result.settings.iterations} iterations: "
        f"{int(matrix.sum())} changed trains, diagonal zeroed",
        fontsize=10,
    )
    figure.colorbar(image, ax=axes, label="count (log scale)")
    figure.savefig(path, dpi=200)


def plot_rank_cdf(result: NeighborhoodResult, path: Path) -> None:
    """Save the cumulative share of changed trains by neighbor rank (Figure 5b)."""
    from matplotlib.figure import Figure

    overall = result.overall
    steps = result.settings.time_steps
    panels = 2 if overall.all_train_ranks is not None else 1
    figure = Figure(figsize=(5.5 * panels, 4.2), layout="constrained")

    axes = figure.add_subplot(1, panels, 1)
    ranks = np.arange(1, steps + 1)
    for tally in [*result.layers, overall]:
        if tally.changed == 0:
            continue
        cumulative = np.cumsum(tally.neighbor_ranks[1:]) / tally.changed
        style = {"color": "black", "linewidth": 2.2} if tally is overall else {"linewidth": 1.0}
        label = "all layers" if tally is overall else f"{tally.name} ({tally.label})"
        axes.step(ranks, cumulative, where="post", label=label, **style)
    not_neighbor = overall.share(int(overall.neighbor_ranks[0]))
    axes.set_xlabel("SNS neighbor rank (1 = nearest by |theta - u[p]|)")
    axes.set_ylabel("cumulative share of changed trains")
    axes.set_ylim(0, 1)
    axes.set_xticks(ranks)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    axes.set_title(f"Changed trains equal to no SNS neighbor: {_percent(not_neighbor)}", fontsize=9)

    if overall.all_train_ranks is not None and overall.changed:
        axes = figure.add_subplot(1, panels, 2)
        counts = overall.all_train_ranks[1:]
        cumulative = np.cumsum(counts) / overall.changed
        axes.step(np.arange(1, len(counts) + 1), cumulative, where="post", color="black")
        axes.set_xscale("log")
        axes.set_xlabel(f"rank among all 2^{steps} - 1 other trains (greedy distance)")
        axes.set_ylabel("cumulative share of changed trains")
        axes.set_ylim(0, 1.01)
        axes.grid(alpha=0.3)
        axes.axhline(PAPER_NEAREST_SHARE, color="gray", linestyle="--", linewidth=1)
        axes.text(30, PAPER_NEAREST_SHARE - 0.05, "paper: 63% at rank 1, TSSL-BP", fontsize=7, color="gray")
        axes.set_title(f"Nearest of all trains: {_percent(overall.nearest_of_all_share)}", fontsize=9)
    figure.savefig(path, dpi=150)


def write_outputs(result: NeighborhoodResult, out_dir: str | Path) -> dict[str, Path]:
    """Write both figures, the Markdown table and the JSON record into ``out_dir``.

    Returns:
        The written paths by kind: ``transfers``, ``rank_cdf``, ``table``, ``json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "transfers": out_dir / TRANSFERS_FIGURE,
        "rank_cdf": out_dir / RANK_FIGURE,
        "table": out_dir / TABLE_FILE,
        "json": out_dir / JSON_FILE,
    }
    plot_transfers(result, paths["transfers"])
    plot_rank_cdf(result, paths["rank_cdf"])
    title = (
        "# Spike-train changes vs SNS neighbors\n\nSection 4.1 and Figure 5 of Yang, Zhang and Li, "
        '"Backpropagated Neighborhood Aggregation for Accurate Training of Spiking Neural Networks" '
        "(ICML 2021), re-measured with this library.\n\n"
    )
    figures = f"\n![transfers]({TRANSFERS_FIGURE})\n\n![rank CDF]({RANK_FIGURE})\n"
    paths["table"].write_text(title + format_table(result) + figures)
    paths["json"].write_text(json.dumps(result.to_json(), indent=1) + "\n")
    return paths


# --- Command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    defaults = NeighborhoodSettings()
    parser = argparse.ArgumentParser(
        prog="python -m na_lightning.experiments.neighborhood",
        description=(
            "Train the MNIST network with NA and count how often each spiking neuron's spike train "
            "changes to one of its SNS neighbors (NA paper, section 4.1, Figure 5)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", default="data/mnist", help="folder with the four MNIST IDX files")
    parser.add_argument(
        "--out", type=output_folder, default=DEFAULT_OUTPUT, help="output folder for figures and tables"
    )
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="weight updates to observe")
    parser.add_argument("--time-steps", type=int, default=defaults.time_steps, help="simulation steps T")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per iteration")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the weights and the batch order")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="AdamW learning rate")
    parser.add_argument("--rescale", action="store_true", help="turn on per-layer NA gradient rescaling")
    parser.add_argument("--kernel", choices=KERNELS, default=defaults.kernel, help="NA kernel implementation")
    parser.add_argument("--device", choices=DEVICES, default=defaults.device, help="device to train on")
    parser.add_argument(
        "--no-all-train-rank",
        action="store_true",
        help="skip ranking each new train among all 2^T trains (the slowest part)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment from the command line, write the outputs and print the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = NeighborhoodSettings(
            iterations=args.iterations,
            time_steps=args.time_steps,
            batch_size=args.batch_size,
            seed=args.seed,
            lr=args.lr,
            rescale=args.rescale,
            rank_all_trains=not args.no_all_train_rank,
            kernel=args.kernel,
            device=args.device,
            progress=not args.no_progress,
        )
    except ValueError as error:
        parser.error(command_line_message(str(error), parser))

    datamodule = MNISTDataModule(
        data_dir=args.data_dir, batch_size=settings.batch_size, seed=settings.seed, augment=False
    )
    try:
        datamodule.prepare_data()
    except DataNotFoundError as error:
        raise error.with_fix("Pass the folder with the four MNIST files as --data-dir.") from error
    result = run_neighborhood(settings, datamodule)
    paths = write_outputs(result, args.out)
    print(format_table(result))
    print("Wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
