"""Time the NA backward alone, ``na_current_grad``, for several numbers of time steps T.

The inputs are realistic. The membrane potentials come from simulating LIF neurons on
random currents, so that about 10-20 % of the neuron-steps fire (the table reports the
rate), and the PSC gradients are Gaussian. Each T runs the eager function and the compiled
kernel that ``lif_neuron`` uses (``kernel="compiled"``), one call of each per round,
and the table shows the median time per call. The first call of the compiled kernel
compiles it for that T, and the first call minus the median is reported as the
compile time.

The compiled kernel unrolls both loops over T, so its compile time grows about with
T squared: T = 30 takes minutes on a small CPU, and T = 100 much longer. Hence the
default ``--max-t 30``.

Example::

    python benchmarks/bench_na_backward.py --device cpu --threads 2
    python benchmarks/bench_na_backward.py --max-t 100 --kernel compiled
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from common import (
    MB,
    add_common_arguments,
    check_common_arguments,
    environment_lines,
    format_number,
    markdown_table,
    print_report,
    ratio,
    setup_run,
    synchronize,
    time_interleaved,
    use_fresh_compile_cache,
)
from na_lightning.functional.lif import LIFParameters, lif_membrane
from na_lightning.functional.na import na_current_grad

TIME_STEPS = (5, 10, 20, 30, 50, 100)
#: Up to this T every run uses ``--neurons`` neurons; above it ``--neurons * 30 / T``,
#: so that every input has about the same number of elements.
FULL_SIZE_MAX_T = 30
#: Mean and standard deviation of the random input current per step. With tau_m = 5
#: and theta = 1, about 15 % of the neuron-steps fire.
CURRENT_MEAN = 0.25
CURRENT_STD = 0.5


def compiled_backward() -> Callable[..., Tensor] | None:
    """Return the compiled NA backward that ``lif_neuron`` uses, or None if the library has none."""
    try:
        from na_lightning.functional.neuron import _compiled_kernel
    except ImportError:
        return None
    return _compiled_kernel("backward")


def neuron_count(time_steps: int, neurons: int) -> int:
    """Return N for a given T: ``neurons`` up to T = 30, then scaled down by ``30 / T``."""
    if time_steps <= FULL_SIZE_MAX_T:
        return neurons
    return max(1, neurons * FULL_SIZE_MAX_T // time_steps)


def make_inputs(
    time_steps: int, neurons: int, params: LIFParameters, device: torch.device, seed: int
) -> tuple[Tensor, Tensor, float]:
    """Simulate LIF neurons on random currents.

    Returns:
        The pre-reset membrane potential ``[T, N]``, a Gaussian PSC gradient ``[T, N]``
        (standard deviation 0.01) and the fraction of neuron-steps that fire.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    current = torch.randn(time_steps, neurons, generator=generator, device=device)
    current = CURRENT_MEAN + CURRENT_STD * current
    potential = lif_membrane(current, params)
    grad_psc = 0.01 * torch.randn(time_steps, neurons, generator=generator, device=device)
    firing_rate = (potential > params.theta).float().mean().item()
    return potential, grad_psc, firing_rate


def chain_steps(potential: Tensor, membrane_decay: float, theta: float) -> Tensor:
    """Count the chain steps that an exact early-exit NA backward simulates, per neuron.

    A neighbor's chain runs from step ``p + 1`` until its membrane rejoins the original
    one (the gap between the two membranes is exactly 0, after both reset at the same
    step) or until the last step. The dense kernel simulates ``T (T - 1) / 2`` chain
    steps per neuron; a kernel that stops every chain at the rejoin simulates this count.

    Args:
        potential: pre-reset membrane potential ``[T, N]``.
        membrane_decay: ``1 - 1/tau_m``.
        theta: firing threshold.

    Returns:
        Chain steps per neuron, ``[N]`` float.
    """
    steps = potential.shape[0]
    fired = potential > theta
    spikes = fired.to(potential.dtype)
    membrane = potential.masked_fill(fired, 0.0)
    total = torch.zeros_like(potential[0])
    for p in range(steps):
        gap = spikes[p] * theta - membrane[p]
        for t in range(p + 1, steps):
            active = gap != 0
            total += active
            neighbor_potential = potential[t] + membrane_decay * gap
            neighbor_membrane = neighbor_potential.masked_fill(neighbor_potential > theta, 0.0)
            gap = torch.where(active, neighbor_membrane - membrane[t], gap)
    return total


def chain_step_rows(time_steps: Sequence[int], args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Count dense and early-exit work per neuron for every T, on the benchmark's inputs.

    Work is counted in neuron updates: ``T`` flips (one per neighbor) plus the chain steps.
    """
    params = LIFParameters(args.tau_m, args.tau_s, args.theta)
    rows = []
    for steps in time_steps:
        neurons = min(args.chain_neurons, neuron_count(steps, args.neurons))
        potential, _, firing_rate = make_inputs(steps, neurons, params, device, args.seed)
        chains = chain_steps(potential, params.membrane_decay, params.theta).mean().item()
        rows.append(
            {
                "time_steps": steps,
                "neurons": neurons,
                "firing_rate": firing_rate,
                "dense_work": steps + steps * (steps - 1) / 2,
                "early_exit_work": steps + chains,
                "mean_chain": chains / steps,
            }
        )
    for row in rows:
        row["dense_ratio"] = ratio(row["dense_work"], rows[0]["dense_work"])
        row["early_exit_ratio"] = ratio(row["early_exit_work"], rows[0]["early_exit_work"])
    return rows


def format_chain_table(rows: Sequence[dict[str, Any]]) -> str:
    reference = rows[0]["time_steps"]
    headers = (
        "T",
        "N",
        "firing rate",
        "mean chain steps per neighbor",
        "dense updates per neuron",
        f"dense ratio to T = {reference}",
        "early-exit updates per neuron",
        f"early-exit ratio to T = {reference}",
    )
    cells = [
        (
            row["time_steps"],
            row["neurons"],
            format_number(row["firing_rate"], 3),
            format_number(row["mean_chain"], 2),
            format_number(row["dense_work"], 1),
            format_number(row["dense_ratio"]),
            format_number(row["early_exit_work"], 1),
            format_number(row["early_exit_ratio"]),
        )
        for row in rows
    ]
    return markdown_table(headers, cells)


def cuda_extra_bytes(function: Callable[[], Any], device: torch.device) -> int:
    """Return the peak CUDA memory that ``function`` allocates on top of what was allocated before."""
    synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    function()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline


def benchmark_time_steps(
    time_steps: int,
    kernels: dict[str, Callable[..., Tensor]],
    args: argparse.Namespace,
    device: torch.device,
) -> list[dict[str, Any]]:
    """Time every kernel for one T; return one row per kernel."""
    params = LIFParameters(args.tau_m, args.tau_s, args.theta)
    neurons = neuron_count(time_steps, args.neurons)
    potential, grad_psc, firing_rate = make_inputs(time_steps, neurons, params, device, args.seed)
    options = {
        "tau_m": params.tau_m,
        "tau_s": params.tau_s,
        "theta": params.theta,
        "error": args.error,
        "distance": args.distance,
    }
    calls = {
        name: (lambda kernel=kernel: kernel(potential, grad_psc, **options)) for name, kernel in kernels.items()
    }

    with torch.no_grad():
        timings = time_interleaved(calls, device=device, repeats=args.repeats, warmup=args.warmup)
        extra = {}
        if device.type == "cuda":
            extra = {name: cuda_extra_bytes(call, device) for name, call in calls.items()}

    # Inputs (potential, grad_psc) and the output are T x N each; intermediates come on top.
    io_bytes = 3 * time_steps * neurons * potential.element_size()
    rows = []
    for name in kernels:
        timing = timings[name]
        rows.append(
            {
                "time_steps": time_steps,
                "kernel": name,
                "neurons": neurons,
                "firing_rate": firing_rate,
                "call_ms": timing.median_s * 1e3,
                "ns_per_neuron": timing.median_s * 1e9 / neurons,
                "compile_s": timing.compile_s if name == "compiled" else None,
                "io_mb": io_bytes / MB,
                "cuda_extra_mb": extra[name] / MB if name in extra else None,
            }
        )
    return rows


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set each row's ``ratio_to_t5``: its time per neuron over that of the smallest T, same kernel."""
    for row in rows:
        same_kernel = [other for other in rows if other["kernel"] == row["kernel"]]
        smallest = min(same_kernel, key=lambda other: other["time_steps"])
        row["ratio_to_t5"] = ratio(row["ns_per_neuron"], smallest["ns_per_neuron"])


def format_table(rows: Sequence[dict[str, Any]], device: torch.device, reference_t: int) -> str:
    memory_header = "peak extra MB (measured)" if device.type == "cuda" else "inputs + output MB (analytic)"
    headers = (
        "T",
        "kernel",
        "N",
        "firing rate",
        "ms per call (median)",
        "ns per neuron",
        f"ratio to T = {reference_t}",
        "compile s",
        memory_header,
    )
    cells = [
        (
            row["time_steps"],
            row["kernel"],
            row["neurons"],
            format_number(row["firing_rate"], 3),
            format_number(row["call_ms"], 2),
            format_number(row["ns_per_neuron"], 2),
            format_number(row["ratio_to_t5"]),
            format_number(row["compile_s"], 1),
            format_number(row["cuda_extra_mb"] if device.type == "cuda" else row["io_mb"], 1),
        )
        for row in rows
    ]
    return markdown_table(headers, cells)


def raise_recompile_limit(time_steps: Sequence[int]) -> None:
    """Let Dynamo compile the kernel once per T, beyond its default recompile limit of 8."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), len(time_steps) + 8))


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, batch_size=None, repeats=5, warmup=1)

    # Problem size and implementations.
    parser.add_argument(
        "--time-steps",
        type=int,
        nargs="+",
        default=list(TIME_STEPS),
        help=f"values of T to run (default: {' '.join(map(str, TIME_STEPS))}, up to --max-t)",
    )
    parser.add_argument(
        "--max-t",
        type=int,
        default=30,
        help="skip T above this; compiling T = 100 can take many minutes (default: 30)",
    )
    parser.add_argument(
        "--neurons",
        type=int,
        default=1_000_000,
        help=f"N for T <= {FULL_SIZE_MAX_T}; larger T use N * {FULL_SIZE_MAX_T} / T (default: 1000000)",
    )
    parser.add_argument(
        "--chain-neurons",
        type=int,
        default=200_000,
        help="neurons for the chain-step count, at most N (default: 200000; 0 skips the count)",
    )
    parser.add_argument(
        "--kernel",
        choices=("eager", "compiled", "both"),
        default="both",
        help="NA backward implementations to time (default: both)",
    )

    # Neuron constants and NA options.
    parser.add_argument(
        "--tau-m", type=float, default=5.0, help="membrane time constant in steps (default: 5)"
    )
    parser.add_argument(
        "--tau-s", type=float, default=2.0, help="synaptic time constant in steps (default: 2)"
    )
    parser.add_argument("--theta", type=float, default=1.0, help="firing threshold (default: 1)")
    parser.add_argument(
        "--error", choices=("code", "exact"), default="code", help="NA error vector (default: code)"
    )
    parser.add_argument(
        "--distance", choices=("code", "paper"), default="code", help="NA distance weights (default: code)"
    )

    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="compile into a new empty Inductor cache folder, so compile times are not cache hits",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random currents (default: 0)")

    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    if args.chain_neurons < 0:
        parser.error(f"--chain-neurons {args.chain_neurons} is invalid; expected 0 (skip) or more.")
    if args.neurons < 1:
        parser.error(f"--neurons {args.neurons} is invalid; expected at least 1 neuron.")
    if min(args.time_steps) < 1:
        parser.error(f"--time-steps {args.time_steps} is invalid; every T must be at least 1.")
    if not [steps for steps in args.time_steps if steps <= args.max_t]:
        parser.error(f"--max-t {args.max_t} skips every T in {args.time_steps}; raise --max-t.")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the markdown report and return the table rows.

    ``--batch-size`` is accepted for a uniform command line and ignored, because the
    problem size is ``--neurons``.
    """
    args = parse_arguments(argv)
    cache = use_fresh_compile_cache() if args.cold_cache else "default (may be warm)"
    device = setup_run(args)
    time_steps = sorted({steps for steps in args.time_steps if steps <= args.max_t})
    skipped = sorted({steps for steps in args.time_steps if steps > args.max_t})

    kernels: dict[str, Callable[..., Tensor]] = {}
    notes = []
    if args.kernel in ("eager", "both"):
        kernels["eager"] = na_current_grad
    if args.kernel in ("compiled", "both"):
        compiled = compiled_backward()
        if compiled is None:
            notes.append("This version of na_lightning has no compiled NA backward; only eager was timed.")
        else:
            raise_recompile_limit(time_steps)
            kernels["compiled"] = compiled
    if not kernels:
        raise RuntimeError("No NA backward kernel to time; pass --kernel eager.")

    rows = []
    for steps in time_steps:
        rows.extend(benchmark_time_steps(steps, kernels, args, device))
    add_ratios(rows)

    environment = environment_lines(
        device,
        {
            "timed calls": (
                f"{args.repeats} after {args.warmup} warmup calls, one call of each kernel per round"
            ),
            "neuron": f"tau_m {args.tau_m}, tau_s {args.tau_s}, theta {args.theta}",
            "NA options": f"error {args.error!r}, distance {args.distance!r}",
            "dtype": "float32",
            "Inductor cache": cache,
        },
    )
    notes += [
        "ns per neuron: median call time / N. ratio: ns per neuron over that of the smallest T, same kernel.",
        "compile s: first call minus median, for the compiled kernel "
        "(it compiles once per T, dtype, device and option set).",
    ]
    if device.type == "cuda":
        notes.append(
            "peak extra MB: torch.cuda.max_memory_allocated during one call "
            "minus the memory allocated before it."
        )
    else:
        notes.append(
            "inputs + output MB: potential, PSC gradient and result, T x N float32 each, a lower bound of the "
            "working set. The compiled kernel also writes intermediate T x N buffers (three at T = 5 with "
            "torch 2.14 on CPU), the eager one more."
        )
    if skipped:
        notes.append(f"Skipped T = {', '.join(map(str, skipped))} (above --max-t {args.max_t}).")
    table = format_table(rows, device, time_steps[0])
    print_report("NA backward (na_current_grad)", environment, table, notes)

    if args.chain_neurons:
        chain_rows = chain_step_rows(time_steps, args, device)
        print_report(
            "NA backward work per neuron: dense vs exact early exit",
            [f"- neurons counted: up to {args.chain_neurons}, same inputs as above"],
            format_chain_table(chain_rows),
            [
                "Updates per neuron: T flips plus the chain steps simulated after them. The dense kernel "
                "simulates every chain to the last step, T (T - 1) / 2 steps; an exact early-exit kernel stops "
                "each chain when the neighbor's membrane rejoins the original (gap exactly 0). "
                "The early-exit ratio bounds the time ratio of any such kernel whose cost is proportional "
                "to the updates it performs.",
            ],
        )
    return rows


if __name__ == "__main__":
    main()
