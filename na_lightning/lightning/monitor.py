"""``SpikeMonitor``: a callback that shows what the spiking layers do while a network trains.

Spiking networks fail quietly. A layer whose neurons never cross the threshold passes no
signal, so the next layer's weights get no gradient (it is ``sum_t a_in[t] delta[t]`` with
``a_in = 0``), and the loss simply stops falling. The callback makes that visible in
TensorBoard and on the console.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from na_lightning.inspect import (
    ADVICE,
    DEFAULT_MAX_NEURONS,
    DEFAULT_TRACES,
    SATURATED,
    SILENT,
    SYMPTOM,
    find_network,
    potential_figure,
    raster_image,
    record_activity,
)
from na_lightning.nn.layers import SpikingConv2d, SpikingLayer, SpikingLinear

logger = logging.getLogger(__name__)

_SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy")


class SpikeMonitor(Callback):
    """Log spike rasters, firing rates, membrane potentials and NA gradient sizes per layer.

    At the end of every validation epoch (not the sanity check), on global rank 0, with a
    TensorBoard logger:

    - ``spikes/raster/<layer>`` (image): spikes of every spiking layer for one fixed
      validation sample, the first sample of the first validation batch. Rows are neurons
      (at most ``max_neurons``, evenly spaced over larger layers), columns are time steps,
      black is a spike.
    - ``spikes/potential/<layer>`` (figure): pre-reset membrane potential of ``traces``
      neurons of that sample against the threshold, from the most to the least driven neuron.
    - ``spikes/rate/<layer>`` (histogram): firing rate of every neuron, in spikes per step,
      over the first ``rate_batches`` validation batches of the epoch on rank 0.

    With any logger:

    - ``spikes/silent_fraction/<layer>``: fraction of neurons without a spike in those
      batches.
    - ``grad_abs_mean/<layer>``: mean absolute gradient of the layer's weights, on every
      training step, read before gradient clipping and after gradient accumulation and the
      DDP all-reduce. Under NA this is ``mean |sum_t a_in[t] delta[t]|``, with ``delta`` the
      aggregated gradient with respect to the input current. It is zero when the NA gradient
      or the layer's input activity is zero, and then only weight decay changes the weights.
      It costs one reduction per layer per step and no extra forward or backward pass.

    A layer that fires no spike in any batch of a training or validation epoch (silent), or
    fires at every step in every neuron (saturated), gets one ``logging.warning`` per epoch
    that names it and suggests a fix. The test uses each batch's mean firing rate
    (``SpikingLayer.firing_rate``), so a layer counts as silent only if no neuron fired in any
    of rank 0's batches.

    Cost per validation epoch: one extra forward pass on one sample, and a comparison and sum
    per spiking layer for each of the first ``rate_batches`` validation batches. The layers
    keep their membrane potential only until it is counted. Drawing one figure per layer adds
    the rest. Only rank 0 does any of this. Under sharded strategies (FSDP, DeepSpeed) the extra
    forward pass is skipped, because a forward pass on rank 0 alone would wait for the other
    ranks.

    Args:
        max_neurons: maximum neurons per raster image.
        traces: neurons per membrane-potential figure.
        rate_batches: validation batches per epoch whose spikes are counted per neuron for the
            histograms and silent fractions; None counts every batch, 0 none.
        every_n_epochs: log the rasters, figures, histograms and silent fractions at the end
            of every n-th epoch's validation (epochs 0, n, 2n, ...). The warnings and
            gradients are not affected.
        warn: log the silent and saturated warnings.
        log_gradients: log ``grad_abs_mean/<layer>`` on training steps.
    """

    def __init__(
        self,
        max_neurons: int = DEFAULT_MAX_NEURONS,
        traces: int = DEFAULT_TRACES,
        rate_batches: int | None = 10,
        every_n_epochs: int = 1,
        warn: bool = True,
        log_gradients: bool = True,
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("max_neurons", max_neurons, 1),
            ("traces", traces, 1),
            ("every_n_epochs", every_n_epochs, 1),
            ("rate_batches", 0 if rate_batches is None else rate_batches, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}.")
        self.max_neurons = max_neurons
        self.traces = traces
        self.rate_batches = rate_batches
        self.every_n_epochs = every_n_epochs
        self.warn = warn
        self.log_gradients = log_gradients

        self.sample: Tensor | None = None
        # Per stage ("training", "validation"): layer name -> (min, max) of the batch firing rates.
        self._rate_extremes: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
        self._spike_counts: dict[str, Tensor] = {}
        self._neuron_steps: dict[str, int] = {}
        self._counted_batches = 0
        self._hooks: list[Any] = []
        self._recording: dict[str, bool] = {}
        self._warned: set[tuple[int, str]] = set()
        self._reported_skips: set[str] = set()

    def setup(self, trainer, pl_module, stage: str) -> None:
        find_network(pl_module)

    # ----------------------------------------------------------------------------------------
    # Training

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._rate_extremes["training"] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero:
            self._update_rate_extremes(pl_module, "training")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._warn_layers(trainer, pl_module, "training")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not (self.log_gradients and trainer.is_global_zero):
            return
        for name, layer in find_network(pl_module).spiking_layers.items():
            weight = _weight(layer)
            if weight is None or weight.grad is None:
                continue
            pl_module.log(
                f"grad_abs_mean/{name}",
                weight.grad.detach().abs().mean(),
                on_step=True,
                on_epoch=False,
                rank_zero_only=True,
            )

    # ----------------------------------------------------------------------------------------
    # Validation

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rate_extremes["validation"] = {}
        self._spike_counts = {}
        self._neuron_steps = {}
        self._counted_batches = 0
        if not (self._pictures_due(trainer) and trainer.is_global_zero) or self.rate_batches == 0:
            return
        for name, layer in find_network(pl_module).spiking_layers.items():
            self._recording[name] = layer.record_potential
            layer.record_potential = True
            self._hooks.append(layer.register_forward_hook(self._count_spikes_hook(name)))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.sample is None and batch_idx == 0 and dataloader_idx == 0:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            self.sample = inputs[0].detach().cpu().clone()
        if trainer.is_global_zero and not trainer.sanity_checking:
            self._update_rate_extremes(pl_module, "validation")
        if self._hooks:
            self._counted_batches += 1
            if self.rate_batches is not None and self._counted_batches >= self.rate_batches:
                self._remove_hooks(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._remove_hooks(pl_module)
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if self.warn:
            self._warn_layers(trainer, pl_module, "validation")
        if not self._pictures_due(trainer):
            return
        for name, count in self._spike_counts.items():
            silent = (count == 0).float().mean()
            pl_module.log(f"spikes/silent_fraction/{name}", silent, on_epoch=True, rank_zero_only=True)

        writer = _tensorboard_writer(trainer)
        if writer is None:
            self._report_skip(
                "no_tensorboard",
                "SpikeMonitor: no TensorBoardLogger among the trainer's loggers, so spike rasters, "
                "rate histograms and membrane-potential figures are not logged.",
            )
            return
        step = trainer.global_step
        for name, count in self._spike_counts.items():
            rates = (count.float() / max(self._neuron_steps[name], 1)).cpu().numpy()
            writer.add_histogram(f"spikes/rate/{name}", rates, step)
        self._log_sample_pictures(trainer, pl_module, writer, step)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove_hooks(pl_module)

    # ----------------------------------------------------------------------------------------
    # Helpers

    def _pictures_due(self, trainer) -> bool:
        return not trainer.sanity_checking and trainer.current_epoch % self.every_n_epochs == 0

    def _log_sample_pictures(self, trainer, pl_module, writer, step: int) -> None:
        if self.sample is None:
            return
        if any(cls.__name__ in _SHARDED_STRATEGIES for cls in type(trainer.strategy).__mro__):
            self._report_skip(
                "sharded",
                f"SpikeMonitor: the strategy {type(trainer.strategy).__name__} shards the weights, "
                "so the spike rasters and membrane-potential figures of one sample are not drawn.",
            )
            return
        parameter = next(pl_module.parameters())
        sample = self.sample.to(parameter.device)
        if sample.is_floating_point():
            sample = sample.to(parameter.dtype)
        activities, _ = record_activity(pl_module, sample)
        for activity in activities:
            writer.add_image(
                f"spikes/raster/{activity.name}",
                raster_image(activity.spikes, self.max_neurons),
                step,
                dataformats="HW",
            )
            writer.add_figure(
                f"spikes/potential/{activity.name}", potential_figure(activity, self.traces), step, close=True
            )

    def _count_spikes_hook(self, name: str):
        def count_spikes(layer: SpikingLayer, inputs, output) -> None:
            potential = layer.potential
            if potential is None:
                return
            spikes = (potential > layer.neuron.theta).sum(dim=(0, 1)).flatten()
            if name in self._spike_counts:
                self._spike_counts[name] += spikes
            else:
                self._spike_counts[name] = spikes
            self._neuron_steps[name] = self._neuron_steps.get(name, 0) + potential.shape[0] * potential.shape[1]
            if not self._recording.get(name, False):
                layer.potential = None

        return count_spikes

    def _remove_hooks(self, pl_module) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if self._recording:
            for name, layer in find_network(pl_module).spiking_layers.items():
                if name in self._recording:
                    layer.record_potential = self._recording[name]
                    if not self._recording[name]:
                        layer.potential = None
            self._recording = {}

    def _update_rate_extremes(self, pl_module, stage: str) -> None:
        extremes = self._rate_extremes.setdefault(stage, {})
        for name, layer in find_network(pl_module).spiking_layers.items():
            rate = layer.firing_rate
            if rate is None:
                continue
            rate = rate.detach()
            if name in extremes:
                low, high = extremes[name]
                extremes[name] = (torch.minimum(low, rate), torch.maximum(high, rate))
            else:
                extremes[name] = (rate, rate)

    def _warn_layers(self, trainer, pl_module, stage: str) -> None:
        if not self.warn:
            return
        layers = find_network(pl_module).spiking_layers
        epoch = trainer.current_epoch
        for name, (low, high) in self._rate_extremes.get(stage, {}).items():
            if (epoch, name) in self._warned:
                continue
            if float(high) == 0.0:
                state = SILENT
            elif float(low) >= 1.0:
                state = SATURATED
            else:
                continue
            self._warned.add((epoch, name))
            layer = layers[name]
            logger.warning(
                "Layer %s (%s, theta=%g) was %s in every %s batch of epoch %d: %s. %s.",
                name, type(layer).__name__, layer.neuron.theta, state, stage, epoch, SYMPTOM[state], ADVICE[state],
            )

    def _report_skip(self, reason: str, message: str) -> None:
        if reason not in self._reported_skips:
            self._reported_skips.add(reason)
            logger.info(message)


def _weight(layer: SpikingLayer) -> Tensor | None:
    if isinstance(layer, SpikingConv2d):
        return layer.conv.weight
    if isinstance(layer, SpikingLinear):
        return layer.linear.weight
    return None


def _tensorboard_writer(trainer):
    for candidate in trainer.loggers:
        if isinstance(candidate, TensorBoardLogger):
            return candidate.experiment
    return None


__all__ = ["SpikeMonitor"]
