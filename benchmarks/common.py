"""Shared helpers of the benchmark scripts: options, environment, timing, memory, tables.

The scripts import this file as the sibling module ``common``, so run them as
``python benchmarks/<script>.py`` from any folder.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

MB = 1024**2


def add_common_arguments(
    parser: argparse.ArgumentParser, *, batch_size: int | None, repeats: int, warmup: int
) -> None:
    """Add the options that every benchmark script takes, with the script's defaults.

    ``batch_size=None`` marks a script without batches: it accepts ``--batch-size`` and ignores it.
    """
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="device to run on (default: cpu)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"timed calls per configuration; the table shows their median (default: {repeats})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=warmup,
        help=f"untimed calls after the first call, before timing (default: {warmup})",
    )
    if batch_size is None:
        batch_help = "ignored: this script has no batches"
    else:
        batch_help = f"samples per batch (default: {batch_size})"
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch.set_num_threads (default: PyTorch's choice)",
    )


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject option values that no benchmark can run with, through ``parser.error``."""
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats} is invalid; expected at least 1 timed call.")
    if args.warmup < 0:
        parser.error(f"--warmup {args.warmup} is invalid; expected 0 or more calls.")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size {args.batch_size} is invalid; expected at least 1 sample.")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads} is invalid; expected at least 1 thread.")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was requested but torch.cuda.is_available() is False; use --device cpu.")


def setup_run(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the device of ``--device``."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)


def use_fresh_compile_cache() -> str:
    """Point the Inductor and Triton caches at a new empty folder, so compile times are cold.

    Call it before the first ``torch.compile`` call of the process. The folder is deleted
    when the process exits.

    Returns:
        The new cache folder.
    """
    folder = tempfile.mkdtemp(prefix="na_lightning_bench_inductor_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
    return folder


def cpu_name() -> str:
    """Return the CPU model from ``/proc/cpuinfo``, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    """Return the GPU name for a CUDA device, else the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def environment_lines(device: torch.device, extra: Mapping[str, Any] | None = None) -> list[str]:
    """Return markdown list items that describe the run: versions, device, threads, options."""
    lines = [
        f"- torch {torch.__version__}, Python {platform.python_version()}",
        f"- device: {device.type} ({device_name(device)})",
        f"- CPU threads: {torch.get_num_threads()} of {os.cpu_count()} logical CPUs",
    ]
    for name, value in (extra or {}).items():
        lines.append(f"- {name}: {value}")
    return lines


def print_report(title: str, environment: Sequence[str], table: str, notes: Sequence[str] = ()) -> None:
    """Print a markdown report: a heading, the environment list, the table and notes."""
    print(f"## {title}\n")
    print("\n".join(environment))
    print()
    print(table)
    if notes:
        print()
        print("\n".join(notes))
    print(flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock reading includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(function: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Call ``function`` once and return its result and wall-clock duration in seconds."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.perf_counter() - start


@dataclass
class Timing:
    """Wall-clock times of one benchmarked function, in seconds.

    Attributes:
        first_s: the first call, which includes any compilation.
        times_s: the timed calls after the warmup.
    """

    first_s: float
    times_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def compile_s(self) -> float:
        """Estimated one-time cost of the first call: first call minus the median, at least 0."""
        return max(self.first_s - self.median_s, 0.0)


def time_interleaved(
    functions: Mapping[str, Callable[[], Any]],
    *,
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, Timing]:
    """Time several functions in turn, one call of each per round.

    Each function is called once on its own first (its first-call time includes any
    compilation), then ``warmup`` untimed rounds and ``repeats`` timed rounds run. A
    round calls every function once, so that load changes on a shared machine affect
    all functions alike.

    Returns:
        A :class:`Timing` per function name.
    """
    timings = {}
    for name, function in functions.items():
        _, first = timed_call(function, device)
        timings[name] = Timing(first)

    for _ in range(warmup):
        for function in functions.values():
            timed_call(function, device)

    for _ in range(repeats):
        for name, function in functions.items():
            _, seconds = timed_call(function, device)
            timings[name].times_s.append(seconds)
    return timings


def saved_tensor_bytes(function: Callable[[], Any]) -> tuple[Any, int]:
    """Call ``function`` and count the bytes of the tensors that autograd keeps for backward.

    Every tensor packed by ``saved_tensors_hooks`` during the call is tracked, and those
    still alive when the call returns are counted: a tensor saved by a graph node that
    was freed during the call (e.g. by an operation whose output was discarded) is not.
    Tensors that share a storage (views) count once, with the storage's full size.
    Parameters that a layer saves (e.g. convolution weights) are included. Call the
    forward pass (and loss) here, and the backward pass after it returns.

    Returns:
        ``(result of function, bytes)``.
    """
    packed: list[weakref.ref] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        packed.append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = function()

    storages = {}
    for reference in packed:
        tensor = reference()
        if tensor is not None:
            storage = tensor.untyped_storage()
            storages[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
    return result, sum(storages.values())


def cuda_peak_bytes(function: Callable[[], Any], device: torch.device) -> tuple[Any, int]:
    """Call ``function`` and return its result and the peak CUDA memory allocated meanwhile.

    The peak counts everything allocated on ``device`` (parameters, optimizer state,
    inputs), not only what ``function`` allocates.
    """
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = function()
    synchronize(device)
    return result, torch.cuda.max_memory_allocated(device)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Format ``rows`` as a markdown table; columns of numbers (or ``n/a``) are right-aligned."""
    texts = [[str(cell) for cell in row] for row in rows]
    columns = range(len(headers))
    # At least 3 wide, so that the separator row has a dash besides the alignment colon.
    widths = [max([3, len(headers[index]), *(len(row[index]) for row in texts)]) for index in columns]
    numeric = [bool(texts) and all(_is_number(row[index]) for row in texts) for index in columns]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[index]) if numeric[index] else cell.ljust(widths[index])
            for index, cell in enumerate(cells)
        ]
        return "| " + " | ".join(padded) + " |"

    separator = [
        "-" * (widths[index] - 1) + ":" if numeric[index] else "-" * widths[index] for index in columns
    ]
    return "\n".join([line(headers), line(separator), *(line(row) for row in texts)])


def _is_number(text: str) -> bool:
    if text == "n/a":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_number(value: float | None, digits: int = 2) -> str:
    """Format a number with ``digits`` decimals, or ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return ``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
