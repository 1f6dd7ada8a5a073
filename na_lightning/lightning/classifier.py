"""``NAClassifier``: a spiking classifier as a LightningModule."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from na_lightning.losses import build_loss, class_scores
from na_lightning.models.backbone import SpikingNetwork
from na_lightning.nn.layers import NeuronOptions

STAGES = ("train", "val", "test")


class NAClassifier(pl.LightningModule):
    """Classify images or event frames with a spiking network trained by NA (or STBP).

    The defaults are the NA authors' MNIST recipe: network ``15C5-P2-40C5-P2-300-10``,
    ``T = 5``, ``tau_m = 5``, ``tau_s = 2``, kernel loss, AdamW (lr 5e-4, weight
    decay 0.01), learning rate times 0.985 per epoch, weights clamped to [-4, 4]
    after every step. The recipe's gradient-norm clipping (1.0) is a Trainer
    setting: ``Trainer(gradient_clip_val=1.0)``.

    Args:
        architecture: hidden layers, e.g. ``"15C5-P2-40C5-P2-300"``
            (see :mod:`na_lightning.models.backbone`).
        num_classes: classes, i.e. neurons of the output layer.
        input_shape: ``(C, H, W)`` of one image or event frame.
        time_steps: simulation steps ``T`` for analog input.
        encoding: ``"analog"`` for images ``[B, C, H, W]``, ``"events"`` for frames
            ``[B, T, C, H, W]``.
        tau_m: membrane time constant, in steps.
        tau_s: synaptic time constant, in steps.
        theta: firing threshold.
        grad: ``"na"`` or ``"stbp"``.
        error: NA error vector, ``"code"`` or ``"exact"``.
        distance: NA distance weights, ``"code"`` or ``"paper"``.
        rescale: per-layer NA gradient rescaling of the authors' released code. On by
            default, the best of the NA variants compared on MNIST (see
            ``docs/reproduction.md``); it has no effect with ``grad="stbp"``.
        surrogate_slope: sigmoid steepness for ``grad="stbp"``.
        kernel: NA backward implementation, ``"auto"``, ``"compiled"`` or ``"eager"``.
        padding: zero padding of every convolution, in pixels.
        conv_weight_scale: factor on the default convolution initialization.
        linear_weight_scale: factor on the Kaiming-normal linear initialization.
        loss: ``"kernel"`` (Van Rossum) or ``"count"`` (hinged spike count).
        target_pattern: kernel-loss target spike train of the true class, one value
            per step; ``None`` for all ones.
        target_filter_passes: how often the kernel-loss target is filtered.
        true_count: count-loss target of the true class.
        false_count: count-loss target of the other classes.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        lr_gamma: learning-rate factor per epoch (ExponentialLR).
        weight_clamp: clamp every weight to ``[-weight_clamp, weight_clamp]`` after
            each optimizer step; ``None`` disables it.
    """

    def __init__(
        self,
        architecture: str = "15C5-P2-40C5-P2-300",
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        time_steps: int = 5,
        encoding: str = "analog",
        tau_m: float = 5.0,
        tau_s: float = 2.0,
        theta: float = 1.0,
        grad: str = "na",
        error: str = "code",
        distance: str = "code",
        rescale: bool = True,
        surrogate_slope: float = 4.0,
        kernel: str = "auto",
        padding: int = 0,
        conv_weight_scale: float = 1.0,
        linear_weight_scale: float = 1.0,
        loss: str = "kernel",
        target_pattern: Sequence[float] | None = None,
        target_filter_passes: int = 2,
        true_count: float = 15.0,
        false_count: float = 3.0,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        betas: Sequence[float] = (0.9, 0.999),
        lr_gamma: float = 0.985,
        weight_clamp: float | None = 4.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        neuron = NeuronOptions(
            tau_m=tau_m,
            tau_s=tau_s,
            theta=theta,
            grad=grad,
            error=error,
            distance=distance,
            surrogate_slope=surrogate_slope,
            kernel=kernel,
        )
        self.network = SpikingNetwork(
            architecture,
            num_classes=num_classes,
            input_shape=tuple(input_shape),
            time_steps=time_steps,
            encoding=encoding,
            neuron=neuron,
            padding=padding,
            conv_weight_scale=conv_weight_scale,
            linear_weight_scale=linear_weight_scale,
            rescale=rescale,
        )
        if loss == "kernel":
            loss_options = {"pattern": target_pattern, "filter_passes": target_filter_passes}
        else:
            loss_options = {"true_count": true_count, "false_count": false_count}
        self.loss_fn = build_loss(loss, tau_s=tau_s, **loss_options)
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in STAGES}
        )

    def forward(self, inputs: Tensor) -> Tensor:
        """Class scores ``[B, num_classes]``: the output PSC summed over time.

        Args:
            inputs: normalized images ``[B, C, H, W]`` or event frames ``[B, T, C, H, W]``.
        """
        return class_scores(self.network(inputs))

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        inputs, labels = batch
        output_psc = self.network(inputs)
        loss = self.loss_fn(output_psc, labels)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(class_scores(output_psc).detach(), labels)

        # sync_dist averages over DDP ranks; the torchmetrics accuracy syncs its own state.
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log(f"{stage}_acc", accuracy, on_step=on_step, on_epoch=True, prog_bar=True)
        for name, layer in self.network.spiking_layers.items():
            self.log(
                f"{stage}_firing_rate/{name}", layer.firing_rate, on_step=False, on_epoch=True, sync_dist=True
            )
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0) -> Tensor:
        """Class scores ``[B, num_classes]`` for a batch of inputs (labels are ignored)."""
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(inputs)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        clamp = self.hparams.weight_clamp
        if clamp is None:
            return
        with torch.no_grad():
            for parameter in self.network.parameters():
                parameter.clamp_(-clamp, clamp)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.hparams.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
