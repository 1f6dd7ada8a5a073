"""Callbacks used by the command line."""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import BasePredictionWriter, Callback

log = logging.getLogger(__name__)


class EpochTimer(Callback):
    """Log the wall time of each training and validation epoch, in seconds.

    The values appear as ``time/train_epoch_s`` and ``time/val_epoch_s`` in the logger
    (TensorBoard by default). The training time includes data loading but not the
    validation run inside the epoch.
    """

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}
        self._validation_s = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._started["train"] = time.perf_counter()
        self._validation_s = 0.0

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._started["val"] = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        elapsed = time.perf_counter() - self._started["val"]
        self._validation_s += elapsed
        pl_module.log("time/val_epoch_s", elapsed, on_epoch=True, rank_zero_only=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        elapsed = time.perf_counter() - self._started["train"] - self._validation_s
        pl_module.log("time/train_epoch_s", elapsed, on_epoch=True, rank_zero_only=True)


class PredictionWriter(BasePredictionWriter):
    """Write the class scores of ``Trainer.predict`` to a CSV file.

    Each row contains the sample's dataset index, the predicted class and one score
    column per class (the output PSC summed over time). Under DDP the rows of all
    ranks are gathered and rank 0 writes the file. The file is written to a temporary
    name first and then renamed, so an interrupted run never leaves half a file.

    Args:
        output_path: CSV file to write; ``None`` for ``predictions.csv`` in the
            trainer's log directory.
    """

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        # trainer.log_dir broadcasts from rank 0 under DDP, so every rank must call it.
        path = Path(self.output_path or Path(trainer.log_dir or trainer.default_root_dir) / "predictions.csv")
        rows = _indexed_rows(predictions, batch_indices)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero or not rows:
            return

        # The DistributedSampler pads the last shares with repeated samples.
        unique_rows = dict(sorted(rows, key=lambda row: row[0]))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        classes = len(next(iter(unique_rows.values())))
        with partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "predicted_class", *[f"score_{k}" for k in range(classes)]])
            for index, scores in unique_rows.items():
                predicted = max(range(classes), key=scores.__getitem__)
                writer.writerow([index, predicted, *(f"{value:.6g}" for value in scores)])
        os.replace(partial, path)
        log.info("Wrote %d predictions to %s", len(unique_rows), path)


def _indexed_rows(predictions, batch_indices) -> list[tuple[int, list[float]]]:
    """Pair each sample's scores with its dataset index (its position when indices are unknown)."""
    if not predictions:
        return []
    batches = predictions[0] if isinstance(predictions[0], list) else predictions
    indices = batch_indices[0] if batch_indices and isinstance(batch_indices[0], list) else batch_indices
    rows = []
    position = 0
    for batch_number, batch in enumerate(batches):
        scores = batch.detach().cpu().tolist()
        known = indices[batch_number] if indices and batch_number < len(indices) else None
        for offset, sample_scores in enumerate(scores):
            index = int(known[offset]) if known is not None else position + offset
            rows.append((index, sample_scores))
        position += len(scores)
    return rows
