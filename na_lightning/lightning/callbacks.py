"""Callbacks used by the command line."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import torch
from pytorch_lightning.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Write the class scores of ``Trainer.predict`` to a CSV file.

    Each row holds the sample index, the predicted class and one score column per
    class (the output PSC summed over time). The file is written to a temporary
    name first and then renamed, so an interrupted run never leaves half a file.

    Args:
        output_path: CSV file to write; ``None`` for ``predictions.csv`` in the
            trainer's log directory.
    """

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = output_path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not trainer.is_global_zero or not predictions:
            return
        batches = predictions[0] if isinstance(predictions[0], list) else predictions
        scores = torch.cat([batch.detach().cpu() for batch in batches])
        path = Path(self.output_path or Path(trainer.log_dir or trainer.default_root_dir) / "predictions.csv")
        path.parent.mkdir(parents=True, exist_ok=True)

        partial = path.with_name(path.name + ".partial")
        with partial.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "predicted_class", *[f"score_{k}" for k in range(scores.shape[1])]])
            for index, row in enumerate(scores.tolist()):
                predicted = max(range(len(row)), key=row.__getitem__)
                writer.writerow([index, predicted, *(f"{value:.6g}" for value in row)])
        os.replace(partial, path)
        log.info("Wrote %d predictions to %s", scores.shape[0], path)
