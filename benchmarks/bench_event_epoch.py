"""Time budget of an N-MNIST training epoch: reading, framing, cache and training.

Prints a markdown table. Example (real N-MNIST files in DIR, layout Train/<digit>/*.bin):

    python benchmarks/bench_event_epoch.py --data-dir DIR --samples 200 --batches 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from na_lightning.data.events import read_nmnist_bin
from na_lightning.data.nmnist import NMNISTDataModule
from na_lightning.lightning.classifier import NAClassifier


def time_per_item(function, items) -> float:
    """Return the mean wall time of ``function(item)`` over ``items``, in milliseconds."""
    started = time.perf_counter()
    for item in items:
        function(item)
    return (time.perf_counter() - started) / len(items) * 1e3


def nmnist_model() -> NAClassifier:
    return NAClassifier(
        architecture="12C5-P2-64C5-P2-D0.2",
        input_shape=(2, 34, 34),
        encoding="events",
        time_steps=30,
        tau_m=8.0,
        tau_s=4.0,
        padding=1,
        loss="count",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder with Train/<digit>/*.bin")
    parser.add_argument("--samples", type=int, default=200, help="recordings to read and frame")
    parser.add_argument("--batches", type=int, default=5, help="training steps to time")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    files = sorted(Path(args.data_dir, "Train").glob("*/*.bin"))[: args.samples]
    read_ms = time_per_item(read_nmnist_bin, files)

    with tempfile.TemporaryDirectory() as cache_dir:
        data = NMNISTDataModule(args.data_dir, val_size=0, cache_dir=cache_dir, batch_size=args.batch_size)
        data.setup("fit")
        dataset = data.train_dataset
        indices = list(range(min(args.samples, len(dataset))))
        uncached = NMNISTDataModule(args.data_dir, val_size=0, cache=False, batch_size=args.batch_size)
        uncached.setup("fit")
        frame_ms = time_per_item(uncached.train_dataset.__getitem__, indices)
        time_per_item(dataset.__getitem__, indices)  # fills the cache
        cached_ms = time_per_item(dataset.__getitem__, indices)
        frames = torch.stack([dataset[i][0] for i in range(args.batch_size)])
        labels = torch.tensor([dataset[i][1] for i in range(args.batch_size)])

    model = nmnist_model()
    optimizer = model.configure_optimizers()["optimizer"]
    forward_ms, backward_ms = [], []
    for step in range(args.batches + 1):
        started = time.perf_counter()
        loss = model.loss_fn(model.network(frames), labels)
        forwarded = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        finished = time.perf_counter()
        if step == 0:
            compile_s = finished - started
            continue
        forward_ms.append((forwarded - started) * 1e3)
        backward_ms.append((finished - forwarded) * 1e3)

    steps_per_epoch = 900 / args.batch_size
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print()
    print("| part | time | per epoch of 900 recordings |")
    print("|---|---|---|")
    print(f"| read a .bin file | {read_ms:.2f} ms per recording | {read_ms * 900 / 1e3:.1f} s |")
    print(f"| read and frame (no cache) | {frame_ms:.2f} ms per recording | {frame_ms * 900 / 1e3:.1f} s |")
    print(f"| framed sample from the cache | {cached_ms:.2f} ms per recording | {cached_ms * 900 / 1e3:.1f} s |")
    forward, backward = statistics.median(forward_ms), statistics.median(backward_ms)
    print(f"| forward, batch {args.batch_size}, T = 30 | {forward:.0f} ms | {forward * steps_per_epoch / 1e3:.1f} s |")
    print(
        f"| backward (NA) and AdamW step | {backward:.0f} ms | {backward * steps_per_epoch / 1e3:.1f} s |"
    )
    print(f"| first step, including kernel compilation | {compile_s:.1f} s | once per process |")


if __name__ == "__main__":
    main()
