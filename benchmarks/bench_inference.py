"""Measure the inference throughput of every model of the zoo.

Each registered model is built with ``na_lightning.zoo.get_model`` (its registered
weights when they are available, else its random initialization) and called on random
input of its registered shape under ``torch.inference_mode``: normalized images
``[B, C, H, W]`` or event frames ``[B, T, C, H, W]`` of Bernoulli(0.05) spikes. The
table shows the median of the timed calls. The first call compiles the LIF forward kernel
when the model's ``kernel`` option allows it, so it is reported separately.

Example::

    python benchmarks/bench_inference.py --device cpu --threads 2
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from common import (
    add_common_arguments,
    check_common_arguments,
    environment_lines,
    format_number,
    markdown_table,
    print_report,
    setup_run,
    time_interleaved,
    use_fresh_compile_cache,
)
from na_lightning import zoo

EVENT_RATE = 0.05


def random_input(
    entry: zoo.ZooEntry, batch_size: int, device: torch.device, generator: torch.Generator
) -> Tensor:
    """Return a random batch of the entry's input: images ``[B, C, H, W]`` or frames ``[B, T, C, H, W]``."""
    shape = tuple(entry.input.shape)
    if entry.input.encoding == "analog":
        inputs = torch.randn(batch_size, *shape, generator=generator)
    else:
        time_steps = int(entry.builder["time_steps"])
        probabilities = torch.full((batch_size, time_steps, *shape), EVENT_RATE)
        inputs = torch.bernoulli(probabilities, generator=generator)
    return inputs.to(device)


def load_model(name: str, args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    """Build a zoo model with its registered weights, or untrained when it has none.

    Returns:
        The model in eval mode and ``"registered"`` or ``"random init"``.
    """
    overrides = {} if args.kernel is None else {"kernel": args.kernel}
    try:
        return zoo.get_model(name, zoo_dir=args.zoo_dir, **overrides), "registered"
    except (zoo.NoWeightsError, zoo.WeightsNotFoundError):
        # The throughput of a dense simulation does not depend on the weight values.
        return zoo.get_model(name, pretrained=False, zoo_dir=args.zoo_dir, **overrides), "random init"


def benchmark_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Time the model's forward pass on one random batch; return its table row."""
    entry = zoo.model_info(name, zoo_dir=args.zoo_dir)
    model, weights = load_model(name, args)
    model = model.to(device)
    inputs = random_input(entry, args.batch_size, device, torch.Generator().manual_seed(args.seed))

    with torch.inference_mode():
        timing = time_interleaved(
            {name: lambda: model(inputs)}, device=device, repeats=args.repeats, warmup=args.warmup
        )[name]

    return {
        "model": name,
        "input": "x".join(str(size) for size in entry.input.shape),
        "encoding": entry.input.encoding,
        "time_steps": int(entry.builder["time_steps"]),
        "weights": weights,
        "batch_ms": timing.median_s * 1e3,
        "samples_per_s": args.batch_size / timing.median_s,
        "first_call_s": timing.first_s,
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = (
        "model",
        "input",
        "encoding",
        "T",
        "weights",
        "ms per batch (median)",
        "samples/s",
        "first call s",
    )
    cells = [
        (
            row["model"],
            row["input"],
            row["encoding"],
            row["time_steps"],
            row["weights"],
            format_number(row["batch_ms"], 1),
            format_number(row["samples_per_s"], 0),
            format_number(row["first_call_s"], 2),
        )
        for row in rows
    ]
    return markdown_table(headers, cells)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, batch_size=256, repeats=20, warmup=3)
    parser.add_argument(
        "--models", default="*", help="shell-style pattern of the model names to run (default: all)"
    )
    parser.add_argument(
        "--zoo-dir",
        default=None,
        help="registry folder (default: $NA_LIGHTNING_ZOO or zoo/ in the repository)",
    )
    parser.add_argument(
        "--kernel",
        choices=("auto", "compiled", "eager"),
        default=None,
        help="override the models' kernel option (default: each entry's own)",
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="compile into a new empty Inductor cache folder, so the first call includes a full compile",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default: 0)")
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the markdown report and return the table rows."""
    args = parse_arguments(argv)
    cache = use_fresh_compile_cache() if args.cold_cache else "default (may be warm)"
    device = setup_run(args)
    names = zoo.list_models(args.models, zoo_dir=args.zoo_dir)
    environment = environment_lines(
        device,
        {
            "batch": args.batch_size,
            "timed calls": f"{args.repeats} after {args.warmup} warmup calls, under torch.inference_mode",
            "registry": str(zoo.registry_dir(args.zoo_dir)),
            "Inductor cache": cache,
        },
    )
    if not names:
        print_report(
            "Inference throughput of the zoo models",
            environment,
            f"No zoo model matches {args.models!r} in {zoo.registry_dir(args.zoo_dir)}; nothing to measure.",
        )
        return []

    rows = [benchmark_model(name, args, device) for name in names]
    notes = [
        "samples/s: batch size / median time per batch. "
        "first call s: includes compiling the LIF forward kernel unless the kernel option is eager.",
        "weights: random init marks a model whose registered weights are absent. "
        "Its time is still representative, because the simulation is dense.",
    ]
    print_report("Inference throughput of the zoo models", environment, format_table(rows), notes)
    return rows


if __name__ == "__main__":
    main()
