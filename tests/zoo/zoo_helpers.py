"""Helpers of the zoo tests: tiny networks and checkpoints laid out like Lightning's."""

from __future__ import annotations

import torch

from na_lightning.lightning.classifier import NAClassifier

TINY_BUILDER = {
    "architecture": "4C3-P2-16",
    "input_shape": (1, 8, 8),
    "num_classes": 3,
    "time_steps": 4,
    "kernel": "eager",
    # Larger initial weights make the untrained network spike, so outputs are not all zero.
    "conv_weight_scale": 3.0,
    "linear_weight_scale": 3.0,
}
TINY_INPUT = {"shape": [1, 8, 8], "encoding": "analog", "mean": [0.5], "std": [0.25]}
TINY_CLASSES = ["circle", "square", "triangle"]

MNIST_BUILDER = {
    "architecture": "4C5-P2-16",
    "input_shape": (1, 28, 28),
    "num_classes": 10,
    "time_steps": 3,
    "kernel": "eager",
    "conv_weight_scale": 3.0,
    "linear_weight_scale": 3.0,
}


def make_classifier(builder: dict, seed: int = 0) -> NAClassifier:
    torch.manual_seed(seed)
    return NAClassifier(**builder).eval()


def lightning_checkpoint(model: NAClassifier, epoch: int = 2, datamodule: str | None = None) -> dict:
    """Return a dict laid out like a Lightning .ckpt file."""
    contents = {
        "epoch": epoch,
        "global_step": 10 * (epoch + 1),
        "pytorch-lightning_version": "2.6.6",
        "state_dict": model.state_dict(),
        "hyper_parameters": {**dict(model.hparams), "_instantiator": "pytorch_lightning.cli.instantiate_module"},
    }
    if datamodule is not None:
        contents["datamodule_hyper_parameters"] = {"_class_path": datamodule, "batch_size": 64}
    return contents
