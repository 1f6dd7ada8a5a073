"""Pictures of what a spiking network does on one input, and the ``na-lightning inspect`` command.

:func:`record_activity` runs a network on one sample and keeps each spiking layer's membrane
potential. The rendering functions turn that into a spike raster (neurons x time steps),
membrane-potential traces against the threshold and a histogram of per-neuron firing rates.
:class:`~na_lightning.lightning.monitor.SpikeMonitor` logs the same pictures to TensorBoard
during training, and :func:`main` writes them as PNG files::

    na-lightning inspect spiking_cnn_mnist.na_t5_e5 digit.png --out inspect/
    na-lightning inspect runs/.../best.ckpt recording.bin

Figures are drawn on matplotlib's Agg canvas without pyplot, so they need no display and
change no global matplotlib state.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from na_lightning.models.backbone import SpikingNetwork

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from na_lightning.lightning.classifier import NAClassifier

logger = logging.getLogger(__name__)

PROG = "na-lightning inspect"

SILENT = "silent"
SATURATED = "saturated"

SYMPTOM = {
    SILENT: "no neuron's membrane potential exceeded theta",
    SATURATED: "every neuron fired at every time step, so the spikes carry no information",
}
"""The symptom of a silent or saturated layer, by state."""

ADVICE = {
    SILENT: (
        "Lower theta, raise the weight scale (conv_weight_scale, linear_weight_scale) or check "
        "the input normalization, because inputs near 0 or of the wrong sign give no current"
    ),
    SATURATED: (
        "Raise theta, lower the weight scale or check the input normalization, because "
        "unnormalized inputs (0..255) drive every neuron over the threshold"
    ),
}
"""The fix suggested for a silent or saturated layer, by state."""

DEFAULT_MAX_NEURONS = 256
"""Neurons shown in a raster; larger layers are subsampled at evenly spaced indices."""

DEFAULT_TRACES = 4
"""Neurons whose membrane potential is plotted per layer."""


# --------------------------------------------------------------------------------------------
# Recording


@dataclass(frozen=True)
class LayerActivity:
    """Activity of one spiking layer on one sample.

    Attributes:
        name: the layer's name in the network, e.g. ``"layers.0"``.
        kind: the layer's class name, e.g. ``"SpikingConv2d"``.
        potential: pre-reset membrane potential ``u``, shape ``[T, N]`` (time steps x neurons,
            the layer's neurons flattened in channel, row, column order), float, on the CPU.
        theta: the firing threshold; a neuron fires at step t when ``u[t] > theta``.
    """

    name: str
    kind: str
    potential: Tensor
    theta: float

    @property
    def spikes(self) -> Tensor:
        """Spikes ``[T, N]``, bool."""
        return self.potential > self.theta

    @property
    def rates(self) -> Tensor:
        """Per-neuron firing rate ``[N]``, in spikes per time step (0 to 1)."""
        return self.spikes.float().mean(dim=0)

    @property
    def time_steps(self) -> int:
        return self.potential.shape[0]

    @property
    def num_neurons(self) -> int:
        return self.potential.shape[1]

    @property
    def state(self) -> str | None:
        """:data:`SILENT` with no spike, :data:`SATURATED` with a spike at every step and neuron, else None."""
        return layer_state(int(self.spikes.sum()), self.spikes.numel())


def find_network(model: nn.Module) -> SpikingNetwork:
    """Return ``model`` if it is a :class:`SpikingNetwork`, else the first one among its submodules.

    Raises:
        TypeError: ``model`` contains no SpikingNetwork.
    """
    if isinstance(model, SpikingNetwork):
        return model
    if isinstance(model, nn.Module):
        for module in model.modules():
            if isinstance(module, SpikingNetwork):
                return module
    raise TypeError(
        f"Expected an NAClassifier or a SpikingNetwork, got a {type(model).__name__} without a "
        "SpikingNetwork inside."
    )


def record_activity(model: nn.Module, sample: Tensor) -> tuple[list[LayerActivity], Tensor]:
    """Run the network on one sample and return every spiking layer's activity.

    The network runs once, without gradients and in eval mode (dropout off). Its training
    mode and the layers' ``record_potential`` flags are restored afterwards, but each layer's
    ``firing_rate`` is left at this sample's value.

    Args:
        model: an NAClassifier or a SpikingNetwork.
        sample: one input without the batch axis: a normalized image ``[C, H, W]`` (analog)
            or event frames ``[T, C, H, W]`` (events), on the network's device.

    Returns:
        ``(activities, output_psc)``: one :class:`LayerActivity` per spiking layer, input to
        output, and the output layer's PSC ``[T, num_classes]`` on the CPU.
    """
    network = find_network(model)
    layers = network.spiking_layers
    recording = {name: layer.record_potential for name, layer in layers.items()}
    training = network.training
    try:
        network.eval()
        for layer in layers.values():
            layer.record_potential = True
        batch = sample.unsqueeze(0)
        # A fine-tuned classifier fits its input to the network (pad, crop or resize) first.
        adapter = getattr(model, "input_adapter", None)
        if isinstance(adapter, torch.nn.Module):
            batch = adapter(batch)
        with torch.no_grad():
            output = network(batch)
        activities = [
            LayerActivity(
                name=name,
                kind=type(layer).__name__,
                potential=layer.potential[:, 0].reshape(layer.potential.shape[0], -1).detach().cpu(),
                theta=float(layer.neuron.theta),
            )
            for name, layer in layers.items()
        ]
    finally:
        network.train(training)
        for name, layer in layers.items():
            layer.record_potential = recording[name]
            if not recording[name]:
                layer.potential = None
    return activities, output[:, 0].detach().cpu()


def layer_state(spike_count: int, neuron_steps: int) -> str | None:
    """Return :data:`SILENT`, :data:`SATURATED` or None for a layer's spike count.

    Args:
        spike_count: spikes of the layer over the observed samples and steps.
        neuron_steps: neurons x time steps x samples observed; the most spikes possible.
    """
    if neuron_steps <= 0:
        return None
    if spike_count == 0:
        return SILENT
    if spike_count >= neuron_steps:
        return SATURATED
    return None


# --------------------------------------------------------------------------------------------
# Rendering


def select_neurons(num_neurons: int, limit: int) -> np.ndarray:
    """Return the indices of at most ``limit`` neurons, evenly spaced over ``0 .. num_neurons - 1``."""
    if num_neurons <= limit:
        return np.arange(num_neurons)
    return np.unique(np.linspace(0, num_neurons - 1, limit).round().astype(np.int64))


def raster_image(spikes: Tensor, max_neurons: int = DEFAULT_MAX_NEURONS) -> np.ndarray:
    """Render spikes as a grayscale raster image: one row per neuron, one column band per step.

    A spike is black (0) and no spike white (255). Layers with more than ``max_neurons`` neurons
    are subsampled with :func:`select_neurons`. Each step is drawn as a band of at least one
    pixel so that short simulations stay readable, and rows are repeated the same way for
    small layers.

    Args:
        spikes: ``[T, N]`` spikes of one sample (bool or 0/1).
        max_neurons: most rows shown.

    Returns:
        uint8 array ``[H, W]`` (``add_image(..., dataformats="HW")`` in TensorBoard).
    """
    rows = spikes.bool().cpu().numpy().T[select_neurons(spikes.shape[1], max_neurons)]
    step_width = max(1, 256 // max(rows.shape[1], 1))
    row_height = max(1, 128 // max(rows.shape[0], 1))
    image = np.where(rows, 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(image, row_height, axis=0), step_width, axis=1)


def raster_figure(activity: LayerActivity, max_neurons: int = DEFAULT_MAX_NEURONS) -> Figure:
    """Draw the spike raster of one layer with labeled axes (neurons x time steps)."""
    indices = select_neurons(activity.num_neurons, max_neurons)
    rows = activity.spikes.numpy().T[indices]
    figure, axes = _new_figure(6.0, 4.0)
    axes.imshow(
        rows,
        aspect="auto",
        interpolation="nearest",
        cmap="gray_r",
        vmin=0,
        vmax=1,
        extent=(-0.5, activity.time_steps - 0.5, len(indices) - 0.5, -0.5),
    )
    axes.set_xlabel("time step")
    if len(indices) < activity.num_neurons:
        axes.set_ylabel(f"neuron ({len(indices)} of {activity.num_neurons} neurons)")
    else:
        axes.set_ylabel(f"neuron ({activity.num_neurons} neurons)")
    axes.set_title(f"{activity.name} ({activity.kind}): spikes, rate {float(activity.rates.mean()):.3f} per step")
    return figure


def trace_neurons(activity: LayerActivity, count: int = DEFAULT_TRACES) -> np.ndarray:
    """Pick ``count`` neurons whose traces span the layer: evenly spaced ranks of peak potential.

    The first index is the neuron with the highest peak membrane potential and the last one
    the neuron with the lowest, so the plot shows both the most and the least driven neurons.
    """
    peaks = activity.potential.max(dim=0).values.numpy()
    by_peak = np.argsort(-peaks, kind="stable")
    return by_peak[select_neurons(len(by_peak), count)]


def potential_figure(activity: LayerActivity, count: int = DEFAULT_TRACES) -> Figure:
    """Plot the pre-reset membrane potential of a few neurons against the threshold.

    Each line is one neuron's ``u[t]``. A filled marker is a step at which it fired
    (``u > theta``), after which the membrane resets to 0. The neurons come from
    :func:`trace_neurons`.
    """
    from matplotlib.ticker import MaxNLocator

    figure, axes = _new_figure(6.0, 3.5)
    steps = np.arange(activity.time_steps)
    for index in trace_neurons(activity, count):
        trace = activity.potential[:, index].numpy()
        fired = trace > activity.theta
        (line,) = axes.plot(steps, trace, marker=".", linewidth=1.0, label=f"neuron {index}")
        axes.plot(steps[fired], trace[fired], "o", color=line.get_color(), markersize=6)
    axes.axhline(activity.theta, color="black", linestyle="--", linewidth=1.0, label=f"theta = {activity.theta:g}")
    axes.set_xlabel("time step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("membrane potential u (pre-reset)")
    axes.set_title(f"{activity.name} ({activity.kind}): membrane potential, filled = spike")
    axes.legend(fontsize="small", loc="best")
    return figure


def rate_histogram_figure(activity: LayerActivity) -> Figure:
    """Draw the histogram of per-neuron firing rates of one layer, one bin per possible rate."""
    figure, axes = _new_figure(6.0, 3.5)
    steps = activity.time_steps
    edges = (np.arange(steps + 2) - 0.5) / steps
    rates = activity.rates.numpy()
    axes.hist(rates, bins=edges, color="tab:blue")
    axes.set_xlabel("firing rate (spikes per time step)")
    axes.set_ylabel("neurons")
    silent = float((rates == 0).mean())
    axes.set_title(f"{activity.name} ({activity.kind}): {100 * silent:.1f} % of neurons silent")
    return figure


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    # Fixed margins in inches fit the labels and titles of these plots, and cost far less than
    # tight_layout, which the monitor would run for every layer and validation epoch.
    figure.subplots_adjust(
        left=0.8 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height
    )
    return figure, figure.add_subplot()


# --------------------------------------------------------------------------------------------
# Command line


class InspectError(Exception):
    """A user error of ``na-lightning inspect``: a missing or unreadable file, or a bad option."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to inspect, with what is needed to turn an input file into its input.

    Attributes:
        model: the classifier, in eval mode, with the eager LIF kernels.
        label: how the model was named on the command line.
        classes: class names by output index, or None when unknown.
        image_transform: raw image to normalized input ``[C, H, W]`` (analog models).
        framing: keyword arguments of :class:`~na_lightning.data.events.ToBinnedFrames`
            (event models).
    """

    model: NAClassifier
    label: str
    classes: tuple[str, ...] | None
    image_transform: Any = None
    framing: dict[str, Any] | None = None


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``na-lightning inspect`` with ``argv`` (default ``sys.argv[1:]``).

    Raises:
        SystemExit: status 1 after a user error, printed as one line on stderr; status 2 for
            invalid arguments (from argparse).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    from na_lightning.data.events import EventFileError
    from na_lightning.zoo import ZooError

    try:
        inspect_file(args)
    except (InspectError, ZooError, EventFileError, OSError, ValueError, NotImplementedError) as error:
        sys.stderr.write(f"{PROG}: error: {_one_line(error)}\n")
        raise SystemExit(1) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``na-lightning inspect``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run a model on one input file and write a spike raster, membrane-potential traces "
            "and a firing-rate histogram of every spiking layer as PNG files."
        ),
    )
    parser.add_argument("model", metavar="NAME_OR_CKPT", help="zoo model name (architecture.tag) or a Lightning .ckpt file")
    parser.add_argument(
        "input", metavar="INPUT_FILE",
        help="an image (PNG, JPEG, ...) for analog models; an N-MNIST .bin or a .npy event array for event models",
    )

    parser.add_argument("--out", default=None, help="output folder (default: inspect_<input file stem>)")
    parser.add_argument("--zoo-dir", default=None, help="zoo registry folder (default: $NA_LIGHTNING_ZOO or <repository>/zoo)")

    parser.add_argument(
        "--max-neurons", type=_positive_int, default=DEFAULT_MAX_NEURONS,
        help=f"maximum neurons per raster; larger layers are subsampled (default: {DEFAULT_MAX_NEURONS})",
    )
    parser.add_argument(
        "--traces", type=_positive_int, default=DEFAULT_TRACES,
        help=f"neurons per membrane-potential plot (default: {DEFAULT_TRACES})",
    )

    parser.add_argument("--time-steps", type=_positive_int, default=None, help="event frames T (default: the model's)")
    parser.add_argument(
        "--bin-width-us", type=float, default=None,
        help="event frame duration in microseconds (default: the model's, else 3000)",
    )

    parser.add_argument(
        "--mean", type=_float_list, default=None,
        help="per-channel normalization mean for a checkpoint of an unknown dataset, e.g. 0.1307",
    )
    parser.add_argument(
        "--std", type=_float_list, default=None,
        help="per-channel normalization std for a checkpoint of an unknown dataset, e.g. 0.3081",
    )
    return parser


def inspect_file(args: argparse.Namespace) -> list[Path]:
    """Load the model, prepare the input file, write the PNG files and print a summary.

    Returns:
        The written files.
    """
    loaded = load_model(args)
    sample = prepare_input(loaded, Path(args.input), args)
    activities, output_psc = record_activity(loaded.model, sample)

    out_dir = Path(args.out) if args.out else Path(f"inspect_{Path(args.input).stem}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InspectError(f"Output path {out_dir} exists and is not a folder; pass another --out.")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_pictures(activities, out_dir, args.max_neurons, args.traces)

    scores = output_psc.sum(dim=0)
    predicted = int(scores.argmax())
    class_name = loaded.classes[predicted] if loaded.classes and predicted < len(loaded.classes) else str(predicted)
    lines = [
        f"model      {loaded.label}",
        f"input      {args.input}",
        f"predicted  {class_name} (class {predicted}, score {float(scores[predicted]):.4f})",
        "",
        *summary_table(activities),
    ]
    for activity in activities:
        if activity.state is not None:
            state = activity.state
            lines.append(f"{activity.name} is {state}: {SYMPTOM[state]}. {ADVICE[state]}.")
    lines.append(f"Wrote {len(written)} files to {out_dir}")
    sys.stdout.write("\n".join(lines) + "\n")
    return written


def summary_table(activities: Sequence[LayerActivity]) -> list[str]:
    """Return the lines of a per-layer table: neurons, spikes, mean rate, silent neurons, state."""
    rows = [("layer", "type", "neurons", "spikes", "rate/step", "silent neurons", "state")]
    for activity in activities:
        rates = activity.rates
        rows.append((
            activity.name,
            activity.kind,
            str(activity.num_neurons),
            str(int(activity.spikes.sum())),
            f"{float(rates.mean()):.4f}",
            f"{100 * float((rates == 0).float().mean()):.1f} %",
            activity.state or "ok",
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def write_pictures(
    activities: Sequence[LayerActivity], out_dir: Path, max_neurons: int, traces: int
) -> list[Path]:
    """Write ``raster_<layer>.png``, ``potential_<layer>.png`` and ``rates_<layer>.png`` per layer."""
    written = []
    for activity in activities:
        figures = {
            "raster": raster_figure(activity, max_neurons),
            "potential": potential_figure(activity, traces),
            "rates": rate_histogram_figure(activity),
        }
        for prefix, figure in figures.items():
            path = out_dir / f"{prefix}_{activity.name}.png"
            figure.savefig(path)
            written.append(path)
    return written


def load_model(args: argparse.Namespace) -> LoadedModel:
    """Load a zoo model by name, or a Lightning checkpoint when ``args.model`` is a file path."""
    if _is_checkpoint_path(args.model):
        return _load_checkpoint(Path(args.model), args)

    from na_lightning.zoo import get_model

    model = get_model(args.model, zoo_dir=args.zoo_dir, kernel="eager")
    entry = model.zoo_entry
    framing = None
    if entry.input.encoding == "events":
        sensor_size = entry.input.sensor_size
        framing = {
            "sensor_size": tuple(sensor_size),
            "time_steps": args.time_steps or int(entry.builder["time_steps"]),
            "bin_width_us": args.bin_width_us or float(entry.input.time_bin_us),
        }
    transform = model.transforms if entry.input.encoding == "analog" else None
    return LoadedModel(model, entry.name, tuple(entry.classes), transform, framing)


def prepare_input(loaded: LoadedModel, path: Path, args: argparse.Namespace) -> Tensor:
    """Read ``path`` and return the model input of one sample: ``[C, H, W]`` or ``[T, C, H, W]``."""
    from na_lightning.data.events import EVENT_SUFFIXES, ToBinnedFrames, read_events
    from na_lightning.zoo._predict import load_image

    network = loaded.model.network
    if not path.exists():
        raise InspectError(f"Input file {path} not found.")
    if path.is_dir():
        raise InspectError(f"Input path {path} is a folder; pass one image or event file.")
    is_event_file = path.suffix.lower() in EVENT_SUFFIXES

    if network.encoding == "analog":
        if is_event_file:
            raise InspectError(
                f"{path} is an event recording ({path.suffix}), but model {loaded.label} takes "
                "images; pass an image file (PNG, JPEG, ...)."
            )
        image = load_image(path, network.input_shape[0])
        return loaded.image_transform(image).to(_model_device(loaded.model))

    if not is_event_file:
        raise InspectError(
            f"Model {loaded.label} takes events, but {path} is not an event file; pass an "
            f"N-MNIST .bin or a .npy structured array (suffixes {EVENT_SUFFIXES})."
        )
    frames = ToBinnedFrames(**loaded.framing)(read_events(path), source=str(path))
    if frames.shape[1:] != network.input_shape:
        raise InspectError(
            f"Frames of {path} have shape {frames.shape[1:]} (C, H, W), but model {loaded.label} "
            f"takes {network.input_shape}; the framing uses sensor_size {loaded.framing['sensor_size']}."
        )
    return torch.from_numpy(frames).to(_model_device(loaded.model))


def _load_checkpoint(path: Path, args: argparse.Namespace) -> LoadedModel:
    from na_lightning.zoo._builder import BUILDER_DEFAULTS, build_classifier
    from na_lightning.zoo._datasets import dataset_for_datamodule
    from na_lightning.zoo._import import _read_checkpoint, _split_checkpoint, network_state
    from na_lightning.zoo._weights import load_network_state

    contents = _read_checkpoint(path)
    state, hyperparameters = _split_checkpoint(contents, path)
    ignored = sorted(key for key in hyperparameters if key not in BUILDER_DEFAULTS and not str(key).startswith("_"))
    if ignored:
        logger.info("Checkpoint %s: ignoring hyperparameters that NAClassifier does not take: %s", path, ignored)
    builder = {key: value for key, value in hyperparameters.items() if key in BUILDER_DEFAULTS}
    builder["kernel"] = "eager"
    model = build_classifier(builder)
    load_network_state(model.network, network_state(state), f"checkpoint {path}")
    model.eval()

    datamodule = contents.get("datamodule_hyper_parameters") if isinstance(contents, dict) else None
    datamodule = datamodule if isinstance(datamodule, dict) else {}
    spec = dataset_for_datamodule(str(datamodule.get("_class_path", "")))
    network = model.network
    classes = tuple(spec.classes) if spec is not None else None
    if network.encoding == "analog":
        transform = _checkpoint_image_transform(path, network, spec, args)
        return LoadedModel(model, str(path), classes, image_transform=transform)

    channels, height, width = network.input_shape
    framing = {
        "sensor_size": tuple(datamodule.get("sensor_size") or (width, height, channels)),
        "time_steps": args.time_steps or int(datamodule.get("time_steps") or network.time_steps),
        "bin_width_us": args.bin_width_us or float(datamodule.get("bin_width_us") or 3000.0),
        "rounding": datamodule.get("bin_rounding", "ceil"),
        "polarity": datamodule.get("polarity", "split"),
        "binary": bool(datamodule.get("binary", True)),
    }
    return LoadedModel(model, str(path), classes, framing=framing)


def _checkpoint_image_transform(path: Path, network: SpikingNetwork, spec, args: argparse.Namespace):
    from na_lightning.zoo._entry import InputSpec
    from na_lightning.zoo._transforms import image_transforms

    channels = network.input_shape[0]
    mean = args.mean or (spec.mean if spec is not None else None)
    std = args.std or (spec.std if spec is not None else None)
    if mean is None or std is None:
        raise InspectError(
            f"Checkpoint {path} names no known dataset, so its input normalization is unknown. "
            "Pass --mean and --std (one value per channel, e.g. --mean 0.1307 --std 0.3081)."
        )
    for name, values in (("--mean", mean), ("--std", std)):
        if len(values) != channels:
            raise InspectError(f"{name} has {len(values)} values, but the model takes {channels} channels; pass one per channel.")
    spec_input = InputSpec(shape=network.input_shape, encoding="analog", mean=tuple(mean), std=tuple(std))
    return image_transforms(spec_input)


def _is_checkpoint_path(text: str) -> bool:
    path = Path(text)
    return path.suffix in (".ckpt", ".pt", ".pth") or path.exists() or "/" in text or "\\" in text


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


if __name__ == "__main__":
    main()
