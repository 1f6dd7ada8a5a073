"""Time one training step of NA against this library's STBP on the MNIST and N-MNIST networks.

One step is: forward pass, loss, backward pass and an AdamW step, on a random batch of
the network's input shape. NA and STBP run in the same process, one step of each per
round, and the table shows the median step time over the timed rounds. The first NA
step compiles the LIF forward and NA backward kernels (with ``--kernel auto`` when a
compiler works, or ``--kernel compiled``). It is excluded from the median and shown
as the compile time.

Memory is the peak CUDA memory allocated during one step on CUDA. On CPU it is the
size of the tensors saved for backward by the forward pass and loss (unique storages,
parameters included), measured with ``torch.autograd.graph.saved_tensors_hooks``.

Example::

    python benchmarks/bench_training_step.py --device cpu --threads 2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

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
from na_lightning.lightning.classifier import NAClassifier

METHODS = ("na", "stbp")
KERNELS = ("auto", "compiled", "eager")


@dataclass(frozen=True)
class NetworkConfig:
    """A benchmarked network: its NAClassifier arguments and how to make a random batch.

    Attributes:
        title: name in the table.
        classifier: NAClassifier keyword arguments, without ``grad`` and ``kernel``.
        event_rate: probability of an event per pixel and step for event input; unused
            for analog input.
    """

    title: str
    classifier: dict[str, Any] = field(default_factory=dict)
    event_rate: float = 0.05

    @property
    def time_steps(self) -> int:
        return self.classifier.get("time_steps", 5)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.classifier.get("input_shape", (1, 28, 28)))

    @property
    def encoding(self) -> str:
        return self.classifier.get("encoding", "analog")

    @property
    def num_classes(self) -> int:
        return self.classifier.get("num_classes", 10)

    def make_batch(
        self, batch_size: int, device: torch.device, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Return random inputs and labels.

        Returns:
            Normalized images ``[B, C, H, W]`` (uniform pixels, normalized with the MNIST
            mean and standard deviation) or event frames ``[B, T, C, H, W]`` of
            Bernoulli(``event_rate``) spikes, and labels ``[B]``.
        """
        if self.encoding == "analog":
            pixels = torch.rand(batch_size, *self.input_shape, generator=generator)
            inputs = (pixels - 0.1307) / 0.3081
        else:
            probabilities = torch.full((batch_size, self.time_steps, *self.input_shape), self.event_rate)
            inputs = torch.bernoulli(probabilities, generator=generator)
        labels = torch.randint(0, self.num_classes, (batch_size,), generator=generator)
        return inputs.to(device), labels.to(device)


# The NA paper's networks: NAClassifier defaults for MNIST, the authors' N-MNIST setting.
NETWORKS = {
    "mnist": NetworkConfig("MNIST 15C5-P2-40C5-P2-300", {}),
    "nmnist": NetworkConfig(
        "N-MNIST 12C5-P2-64C5-P2-D0.2",
        {
            "architecture": "12C5-P2-64C5-P2-D0.2",
            "padding": 1,
            "input_shape": (2, 34, 34),
            "encoding": "events",
            "time_steps": 30,
            "tau_m": 8.0,
            "tau_s": 4.0,
            "loss": "count",
        },
    ),
}


def build_classifier(
    config: NetworkConfig, grad: str, kernel: str, device: torch.device, seed: int
) -> NAClassifier:
    """Build the network with the same initial weights for every ``grad``, in training mode."""
    torch.manual_seed(seed)
    model = NAClassifier(**config.classifier, grad=grad, kernel=kernel)
    return model.to(device).train()


def make_training_step(
    model: NAClassifier, inputs: Tensor, labels: Tensor
) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
    """Return ``(step, forward_loss)``: a full AdamW step and the forward pass with loss only."""
    optimizer = model.configure_optimizers()["optimizer"]

    def forward_loss() -> Tensor:
        return model.loss_fn(model.network(inputs), labels)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step, forward_loss


def measure_memory(
    step: Callable[[], Tensor], forward_loss: Callable[[], Tensor], device: torch.device
) -> int:
    """Return the step's memory in bytes: CUDA peak allocated, or on CPU the bytes saved for backward."""
    if device.type == "cuda":
        _, peak = cuda_peak_bytes(step, device)
        return peak
    loss, saved = saved_tensor_bytes(forward_loss)
    loss.backward()
    return saved


def benchmark_network(
    config: NetworkConfig, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    """Time NA and STBP steps of one network and measure their memory; return one row per method."""
    generator = torch.Generator().manual_seed(args.seed)
    inputs, labels = config.make_batch(args.batch_size, device, generator)

    steps = {}
    forward_losses = {}
    for method in METHODS:
        model = build_classifier(config, method, args.kernel, device, args.seed)
        steps[method], forward_losses[method] = make_training_step(model, inputs, labels)

    timings = time_interleaved(steps, device=device, repeats=args.repeats, warmup=args.warmup)
    memory = {method: measure_memory(steps[method], forward_losses[method], device) for method in METHODS}

    rows = []
    for method in METHODS:
        timing = timings[method]
        rows.append(
            {
                "network": config.title,
                "time_steps": config.time_steps,
                "method": method.upper(),
                "step_ms": timing.median_s * 1e3,
                "step_ratio": ratio(timing.median_s, timings["stbp"].median_s),
                "memory_mb": memory[method] / MB,
                "memory_ratio": ratio(memory[method], memory["stbp"]),
                "first_step_s": timing.first_s,
                "compile_s": timing.compile_s,
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]], device: torch.device) -> str:
    memory_header = "peak allocated MB" if device.type == "cuda" else "saved for backward MB"
    headers = (
        "network",
        "T",
        "method",
        "step ms (median)",
        "ratio to STBP",
        memory_header,
        "ratio",
        "first step s",
        "compile s",
    )
    cells = [
        (
            row["network"],
            row["time_steps"],
            row["method"],
            format_number(row["step_ms"], 1),
            format_number(row["step_ratio"]),
            format_number(row["memory_mb"], 1),
            format_number(row["memory_ratio"]),
            format_number(row["first_step_s"], 2),
            format_number(row["compile_s"], 2),
        )
        for row in rows
    ]
    return markdown_table(headers, cells)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, batch_size=64, repeats=20, warmup=3)
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=tuple(NETWORKS),
        default=list(NETWORKS),
        help="networks to benchmark (default: all)",
    )
    parser.add_argument(
        "--kernel",
        choices=KERNELS,
        default="auto",
        help="NA kernel option of NAClassifier (default: auto, compiled when a compiler works)",
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="compile into a new empty Inductor cache folder, so the compile time is not a cache hit",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch (default: 0)")
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the markdown report and return the table rows."""
    args = parse_arguments(argv)
    cache = use_fresh_compile_cache() if args.cold_cache else "default (may be warm)"
    device = setup_run(args)

    rows = []
    for name in args.networks:
        rows.extend(benchmark_network(NETWORKS[name], args, device))

    environment = environment_lines(
        device,
        {
            "batch": args.batch_size,
            "timed rounds": (
                f"{args.repeats} after {args.warmup} warmup rounds, one step of each method per round"
            ),
            "NA kernel": args.kernel,
            "Inductor cache": cache,
        },
    )
    notes = [
        "Step: zero_grad, forward, loss (MNIST: kernel loss; N-MNIST: count loss), backward, AdamW step.",
        "first step s: the first step of each method, which compiles the NA kernels. "
        "compile s = first step - median.",
    ]
    if device.type == "cuda":
        notes.append(
            "peak allocated MB: torch.cuda.max_memory_allocated over one step "
            "(weights, AdamW state and batch included)."
        )
    else:
        notes.append(
            "saved for backward MB: unique storages packed by saved_tensors_hooks during forward and loss "
            "(weights included); this is not the process's peak memory."
        )
    print_report("Training step: NA vs STBP", environment, format_table(rows, device), notes)
    return rows


if __name__ == "__main__":
    main()
