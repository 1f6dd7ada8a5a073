"""Time one training step of this library's NA against snnTorch and SpikingJelly.

The MNIST and N-MNIST networks of ``bench_training_step.py`` are built with each
library: the same convolutions, pooling windows, dropout and layer sizes, without
biases, and the same batch. Every library's network runs layer by layer: each
synaptic layer processes all ``T x B`` frames in one call, then the neurons step
through time. All libraries use the same loss: the mean squared error between the
network output ``[T, B, 10]`` and a random target of that shape. One step is forward,
loss, backward and an AdamW step (lr 5e-4). The libraries run in the same process, one
step of each per round, and the table shows the median step time.

Neuron models and gradients:

- na_lightning: LIF with a first-order synaptic current (PSC output), NA gradient
  (and, for reference, its sigmoid-surrogate STBP gradient); hard reset to 0.
- snnTorch ``snn.Synaptic``: current-based LIF (synaptic current and membrane, both
  decaying), reset to 0, ``surrogate.fast_sigmoid`` (slope 25), spike output.
- SpikingJelly ``neuron.CUBALIFNode``: current-based LIF, hard reset to 0, sigmoid
  surrogate (alpha 4). It has no fused multi-step kernel, so ``step_mode="m"`` loops
  over the steps in Python with autograd.
- SpikingJelly ``neuron.LIFNode``: LIF without a synaptic current
  (``decay_input=False``), hard reset to 0, sigmoid surrogate (alpha 4),
  ``step_mode="m"``, which runs SpikingJelly's own multi-step forward and backward.

The decay factors are ``1 - 1/tau_m`` (membrane) and ``1 - 1/tau_s`` (synaptic
current) of the network's ``tau_m`` and ``tau_s``; the threshold is 1. Analog input
(MNIST) is the image repeated at every step for the peers, and this library's analog
encoder for na_lightning.

Example::

    python benchmarks/bench_peers.py --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bench_training_step import KERNELS, NETWORKS, NetworkConfig
from common import (
    MB,
    add_common_arguments,
    check_common_arguments,
    cuda_peak_bytes,
    environment_lines,
    format_number,
    markdown_table,
    print_report,
    ratio,
    saved_tensor_bytes,
    setup_run,
    time_interleaved,
    use_fresh_compile_cache,
)
from na_lightning.models.backbone import SpikingNetwork, parse_architecture
from na_lightning.nn.layers import NeuronOptions, output_size

PEERS = ("snntorch", "spikingjelly")
LEARNING_RATE = 5e-4


def layer_plan(config: NetworkConfig) -> list[tuple]:
    """Translate the network's architecture string into layers with explicit sizes.

    Returns:
        Items ``("conv", in_channels, out_channels, kernel, padding)``, ``("pool", size)``,
        ``("dropout", p)`` and ``("linear", in_features, out_features)``, the classifier
        layer last. Convolution and linear layers are followed by neurons.
    """
    architecture = config.classifier.get("architecture", "15C5-P2-40C5-P2-300")
    padding = config.classifier.get("padding", 0)
    channels, height, width = config.input_shape
    features = None
    plan: list[tuple] = []
    for token in parse_architecture(architecture):
        if token.kind == "conv":
            out_channels, kernel = int(token.values[0]), int(token.values[1])
            plan.append(("conv", channels, out_channels, kernel, padding))
            channels = out_channels
            height, width = output_size(height, kernel, padding), output_size(width, kernel, padding)
        elif token.kind == "pool":
            size = int(token.values[0])
            plan.append(("pool", size))
            height, width = output_size(height, size, 0, size), output_size(width, size, 0, size)
        elif token.kind == "dropout":
            plan.append(("dropout", token.values[0]))
        else:
            in_features = features if features is not None else channels * height * width
            features = int(token.values[0])
            plan.append(("linear", in_features, features))
    in_features = features if features is not None else channels * height * width
    plan.append(("linear", in_features, config.num_classes))
    return plan


def decay_factors(config: NetworkConfig) -> tuple[float, float]:
    """Return ``(membrane decay, synaptic decay)``: ``1 - 1/tau_m`` and ``1 - 1/tau_s``."""
    tau_m = config.classifier.get("tau_m", 5.0)
    tau_s = config.classifier.get("tau_s", 2.0)
    return 1.0 - 1.0 / tau_m, 1.0 - 1.0 / tau_s


def synapse_stages(plan: Sequence[tuple]) -> list[nn.Sequential]:
    """Group the plan into torch.nn stages, each ending with the layer that feeds neurons."""
    stages = []
    current: list[nn.Module] = []
    flattened = False
    for item in plan:
        kind = item[0]
        if kind == "conv":
            _, in_channels, out_channels, kernel, padding = item
            current.append(nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False))
        elif kind == "pool":
            current.append(nn.AvgPool2d(item[1]))
        elif kind == "dropout":
            current.append(nn.Dropout(item[1]))
        else:
            if not flattened:
                current.append(nn.Flatten())
                flattened = True
            current.append(nn.Linear(item[1], item[2], bias=False))
        if kind in ("conv", "linear"):
            stages.append(nn.Sequential(*current))
            current = []
    return stages


class SnnTorchNetwork(nn.Module):
    """The plan's network with ``snn.Synaptic`` neurons; takes and returns ``[T, B, ...]``."""

    def __init__(self, plan: Sequence[tuple], membrane_decay: float, synaptic_decay: float) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        stages = synapse_stages(plan)
        self.synapses = nn.ModuleList(stages)
        self.neurons = nn.ModuleList(
            snntorch.Synaptic(
                alpha=synaptic_decay,
                beta=membrane_decay,
                threshold=1.0,
                spike_grad=surrogate.fast_sigmoid(),
                reset_mechanism="zero",
            )
            for _ in stages
        )

    def forward(self, currents: Tensor) -> Tensor:
        steps, batch = currents.shape[:2]
        activity = currents
        for synapse, neuron in zip(self.synapses, self.neurons):
            drive = synapse(activity.flatten(0, 1)).unflatten(0, (steps, batch))
            synaptic_current, membrane = neuron.reset_mem()
            spikes = []
            for step in range(steps):
                spike, synaptic_current, membrane = neuron(drive[step], synaptic_current, membrane)
                spikes.append(spike)
            activity = torch.stack(spikes)
        return activity


def build_spikingjelly_network(
    plan: Sequence[tuple], membrane_decay: float, synaptic_decay: float, neuron_model: str
) -> nn.Module:
    """Build the plan's network from SpikingJelly multi-step layers; takes and returns ``[T, B, ...]``.

    Args:
        neuron_model: ``"CUBALIFNode"`` or ``"LIFNode"``.
    """
    from spikingjelly.activation_based import layer, neuron, surrogate

    def make_neuron() -> nn.Module:
        if neuron_model == "CUBALIFNode":
            node = neuron.CUBALIFNode(
                c_decay=synaptic_decay,
                v_decay=membrane_decay,
                v_threshold=1.0,
                v_reset=0.0,
                surrogate_function=surrogate.Sigmoid(alpha=4.0),
            )
            # CUBALIFNode's constructor takes no step_mode.
            node.step_mode = "m"
            return node
        return neuron.LIFNode(
            tau=1.0 / (1.0 - membrane_decay),
            decay_input=False,
            v_threshold=1.0,
            v_reset=0.0,
            surrogate_function=surrogate.Sigmoid(alpha=4.0),
            step_mode="m",
        )

    modules: list[nn.Module] = []
    flattened = False
    for item in plan:
        kind = item[0]
        if kind == "conv":
            _, in_channels, out_channels, kernel, padding = item
            modules.append(
                layer.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False, step_mode="m")
            )
            modules.append(make_neuron())
        elif kind == "pool":
            modules.append(layer.AvgPool2d(item[1], step_mode="m"))
        elif kind == "dropout":
            modules.append(layer.Dropout(item[1], step_mode="m"))
        else:
            if not flattened:
                modules.append(layer.Flatten(step_mode="m"))
                flattened = True
            modules.append(layer.Linear(item[1], item[2], bias=False, step_mode="m"))
            modules.append(make_neuron())
    return nn.Sequential(*modules)


def time_major_input(config: NetworkConfig, inputs: Tensor) -> Tensor:
    """Return the peers' input ``[T, B, C, H, W]``: repeated images or transposed event frames."""
    if config.encoding == "analog":
        return inputs.unsqueeze(0).expand(config.time_steps, *inputs.shape)
    return inputs.transpose(0, 1)


def make_step(
    run: Callable[[], Tensor], target: Tensor, parameters
) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
    """Return ``(step, forward_loss)`` for a network call ``run()`` that returns ``[T, B, K]``."""
    optimizer = torch.optim.AdamW(parameters, lr=LEARNING_RATE)

    def forward_loss() -> Tensor:
        return nn.functional.mse_loss(run(), target)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step, forward_loss


def available_peers(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the requested peer libraries into ``(installed, missing)``."""
    installed = [name for name in requested if importlib.util.find_spec(name) is not None]
    return installed, [name for name in requested if name not in installed]


def peer_versions(peers: Sequence[str]) -> str:
    versions = [f"{name} {importlib.metadata.version(name)}" for name in peers]
    return ", ".join(versions) if versions else "none"


def build_contenders(
    config: NetworkConfig, peers: Sequence[str], args: argparse.Namespace, device: torch.device
) -> dict[str, nn.Module]:
    """Build every library's network for ``config``, in training mode, keyed by table label."""
    membrane_decay, synaptic_decay = decay_factors(config)
    plan = layer_plan(config)
    networks: dict[str, nn.Module] = {}
    for grad in ("na", "stbp"):
        neuron = NeuronOptions(
            tau_m=config.classifier.get("tau_m", 5.0),
            tau_s=config.classifier.get("tau_s", 2.0),
            grad=grad,
            kernel=args.kernel,
        )
        torch.manual_seed(args.seed)
        networks[f"na_lightning {grad.upper()}"] = SpikingNetwork(
            config.classifier.get("architecture", "15C5-P2-40C5-P2-300"),
            num_classes=config.num_classes,
            input_shape=config.input_shape,
            time_steps=config.time_steps,
            encoding=config.encoding,
            neuron=neuron,
            padding=config.classifier.get("padding", 0),
        )
    if "snntorch" in peers:
        torch.manual_seed(args.seed)
        networks["snnTorch Synaptic"] = SnnTorchNetwork(plan, membrane_decay, synaptic_decay)
    if "spikingjelly" in peers:
        for neuron_model in ("CUBALIFNode", "LIFNode"):
            torch.manual_seed(args.seed)
            networks[f"SpikingJelly {neuron_model}"] = build_spikingjelly_network(
                plan, membrane_decay, synaptic_decay, neuron_model
            )
    return {label: network.to(device).train() for label, network in networks.items()}


def benchmark_network(
    config: NetworkConfig, peers: Sequence[str], args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Time every library's training step on one network; return one row per library."""
    generator = torch.Generator().manual_seed(args.seed)
    inputs, _ = config.make_batch(args.batch_size, device, generator)
    target_shape = (config.time_steps, args.batch_size, config.num_classes)
    target = torch.rand(target_shape, generator=generator).to(device)
    peer_inputs = time_major_input(config, inputs)

    networks = build_contenders(config, peers, args, device)
    steps = {}
    forward_losses = {}
    for label, network in networks.items():
        if label.startswith("na_lightning"):
            run = lambda network=network: network(inputs)  # noqa: E731
        elif label.startswith("SpikingJelly"):
            from spikingjelly.activation_based import functional

            def run(network=network, functional=functional):
                functional.reset_net(network)
                return network(peer_inputs)
        else:
            run = lambda network=network: network(peer_inputs)  # noqa: E731
        steps[label], forward_losses[label] = make_step(run, target, network.parameters())

    timings = time_interleaved(steps, device=device, repeats=args.repeats, warmup=args.warmup)
    memory = {}
    for label in networks:
        if device.type == "cuda":
            _, memory[label] = cuda_peak_bytes(steps[label], device)
        else:
            loss, memory[label] = saved_tensor_bytes(forward_losses[label])
            loss.backward()

    reference = "na_lightning NA"
    rows = []
    for label, network in networks.items():
        rows.append(
            {
                "network": config.title,
                "time_steps": config.time_steps,
                "library": label,
                "parameters": sum(parameter.numel() for parameter in network.parameters()),
                "step_ms": timings[label].median_s * 1e3,
                "na_ratio": ratio(timings[reference].median_s, timings[label].median_s),
                "memory_mb": memory[label] / MB,
                "na_memory_ratio": ratio(memory[reference], memory[label]),
                "first_step_s": timings[label].first_s,
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]], device: torch.device) -> str:
    memory_header = "peak allocated MB" if device.type == "cuda" else "saved for backward MB"
    headers = (
        "network",
        "T",
        "library and neuron",
        "parameters",
        "step ms (median)",
        "NA / this (time)",
        memory_header,
        "NA / this (memory)",
        "first step s",
    )
    cells = [
        (
            row["network"],
            row["time_steps"],
            row["library"],
            row["parameters"],
            format_number(row["step_ms"], 1),
            format_number(row["na_ratio"]),
            format_number(row["memory_mb"], 1),
            format_number(row["na_memory_ratio"]),
            format_number(row["first_step_s"], 2),
        )
        for row in rows
    ]
    return markdown_table(headers, cells)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, batch_size=64, repeats=10, warmup=2)
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=tuple(NETWORKS),
        default=list(NETWORKS),
        help="networks to benchmark (default: all)",
    )
    parser.add_argument(
        "--peers",
        nargs="*",
        choices=PEERS,
        default=list(PEERS),
        help="peer libraries to compare with; missing ones are skipped (default: all)",
    )
    parser.add_argument(
        "--kernel", choices=KERNELS, default="auto", help="na_lightning NA kernel option (default: auto)"
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="compile into a new empty Inductor cache folder, so the first NA step includes a full compile",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, batch and target (default: 0)"
    )
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the markdown report and return the table rows."""
    args = parse_arguments(argv)
    cache = use_fresh_compile_cache() if args.cold_cache else "default (may be warm)"
    device = setup_run(args)
    peers, missing = available_peers(args.peers)

    rows = []
    for name in args.networks:
        rows.extend(benchmark_network(NETWORKS[name], peers, args, device))

    environment = environment_lines(
        device,
        {
            "batch": args.batch_size,
            "timed rounds": (
                f"{args.repeats} after {args.warmup} warmup rounds, one step of each library per round"
            ),
            "peer libraries": peer_versions(peers),
            "na_lightning NA kernel": args.kernel,
            "Inductor cache": cache,
        },
    )
    notes = [
        "Loss: MSE between the output [T, B, 10] and a random target of that shape; AdamW, lr 5e-4.",
        "NA / this: na_lightning NA's value divided by the row's; below 1 means NA is faster or smaller.",
    ]
    if missing:
        notes.append(
            f"Not installed, skipped: {', '.join(missing)}. "
            'Install them with `pip install "snntorch>=1.0" "spikingjelly>=2.0"`.'
        )
    if device.type == "cpu":
        notes.append(
            "saved for backward MB: unique storages packed by saved_tensors_hooks during forward and loss "
            "(weights included)."
        )
    title = "Training step: na_lightning NA vs snnTorch and SpikingJelly"
    print_report(title, environment, format_table(rows, device), notes)
    return rows


if __name__ == "__main__":
    main()
