"""Time-major spiking layers. Every layer takes and returns ``[T, B, ...]`` tensors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from na_lightning.functional import GradientRescale, analog_current, lif_neuron, psc_filter
from na_lightning.functional.neuron import check_neuron_options


@dataclass(frozen=True)
class NeuronOptions:
    """LIF constants and gradient options shared by the spiking layers of a network.

    The fields are the keyword arguments of :func:`na_lightning.functional.lif_psc`
    (time constants in steps, threshold in units of membrane potential).
    """

    tau_m: float = 5.0
    tau_s: float = 2.0
    theta: float = 1.0
    grad: str = "na"
    error: str = "code"
    distance: str = "code"
    surrogate_slope: float = 4.0
    kernel: str = "auto"
    check_finite: bool = True

    def __post_init__(self) -> None:
        # Reject a typo such as grad="nah" when the network is built, not at its first batch.
        check_neuron_options(
            self.tau_m, self.tau_s, self.theta, self.grad, self.error, self.distance, self.kernel
        )


class SpikingLayer(nn.Module):
    """Base of layers with LIF neurons: a synaptic transform followed by the neuron.

    After each forward pass, ``firing_rate`` is the mean number of spikes per
    neuron and step (detached), and ``potential`` is the pre-reset membrane potential
    ``[T, B, ...]`` when ``record_potential`` is set.
    """

    def __init__(self, neuron: NeuronOptions, output_layer: bool = False) -> None:
        super().__init__()
        self.neuron = neuron
        self.output_layer = output_layer
        self.record_potential = False
        self.firing_rate: Tensor | None = None
        self.potential: Tensor | None = None

    def synapse(self, inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, inputs: Tensor, rescale: GradientRescale | None = None) -> Tensor:
        current = self.synapse(inputs)
        output = lif_neuron(
            current, rescale=rescale, output_layer=self.output_layer, **asdict(self.neuron)
        )
        self.firing_rate = (output.potential > self.neuron.theta).float().mean()
        self.potential = output.potential if self.record_potential else None
        return output.psc


class SpikingConv2d(SpikingLayer):
    """2-D convolution (no bias) of the input PSC, followed by LIF neurons.

    Args:
        in_channels: input channels.
        out_channels: output channels (one neuron per channel and position).
        kernel_size: square kernel size in pixels.
        padding: zero padding in pixels on each side.
        weight_scale: factor applied to PyTorch's default convolution initialization.
        neuron: LIF options.
        output_layer: whether this is the network's last spiking layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,
        weight_scale: float = 1.0,
        neuron: NeuronOptions = NeuronOptions(),
        output_layer: bool = False,
    ) -> None:
        super().__init__(neuron, output_layer)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        with torch.no_grad():
            self.conv.weight.mul_(weight_scale)

    def synapse(self, inputs: Tensor) -> Tensor:
        steps, batch = inputs.shape[:2]
        current = self.conv(inputs.flatten(0, 1))
        return current.unflatten(0, (steps, batch))


class SpikingLinear(SpikingLayer):
    """Fully connected synapses (no bias) followed by LIF neurons.

    Inputs ``[T, B, ...]`` are flattened to ``[T, B, in_features]``. Weights are
    Kaiming-normal initialized and multiplied by ``weight_scale``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        weight_scale: float = 1.0,
        neuron: NeuronOptions = NeuronOptions(),
        output_layer: bool = False,
    ) -> None:
        super().__init__(neuron, output_layer)
        self.linear = nn.Linear(in_features, out_features, bias=False)
        with torch.no_grad():
            nn.init.kaiming_normal_(self.linear.weight)
            self.linear.weight.mul_(weight_scale)

    def synapse(self, inputs: Tensor) -> Tensor:
        return self.linear(inputs.flatten(2))


class SumPool2d(nn.Module):
    """Sum pooling of PSCs over ``kernel_size x kernel_size`` windows, times ``scale``.

    No neurons: the layer is linear, so autograd carries the gradient through it.
    """

    def __init__(self, kernel_size: int = 2, scale: float = 1.1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.scale = scale

    def forward(self, inputs: Tensor) -> Tensor:
        steps, batch = inputs.shape[:2]
        pooled = F.avg_pool2d(inputs.flatten(0, 1), self.kernel_size)
        pooled = pooled * (self.scale * self.kernel_size**2)
        return pooled.unflatten(0, (steps, batch))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, scale={self.scale}"


class TemporalDropout(nn.Module):
    """Dropout of PSCs with one mask per sample and channel, shared by all time steps.

    Kept values are scaled by ``1 / (1 - p)`` during training; evaluation is the identity.
    """

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p={p!r} is invalid; expected 0 <= p < 1.")
        self.p = p

    def forward(self, inputs: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return inputs
        mask_shape = (1, *inputs.shape[1:3], *([1] * (inputs.dim() - 3)))
        keep = torch.rand(mask_shape, device=inputs.device) >= self.p
        return inputs * keep.to(inputs.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class AnalogEncoder(nn.Module):
    """Turn analog images ``[B, C, H, W]`` into input currents ``[T, B, C, H, W]``.

    The image is held for ``time_steps`` steps and passed through the synaptic filter.
    """

    def __init__(self, time_steps: int, tau_s: float) -> None:
        super().__init__()
        self.time_steps = time_steps
        self.tau_s = tau_s

    def forward(self, images: Tensor) -> Tensor:
        return analog_current(images, self.time_steps, self.tau_s)


class EventEncoder(nn.Module):
    """Turn event frames ``[B, T, C, H, W]`` (spike counts) into currents ``[T, B, C, H, W]``.

    Frames go through the same synaptic filter as analog input.
    """

    def __init__(self, tau_s: float) -> None:
        super().__init__()
        self.tau_s = tau_s

    def forward(self, frames: Tensor) -> Tensor:
        frames = frames.transpose(0, 1)
        return psc_filter(frames if frames.is_floating_point() else frames.float(), self.tau_s)


def output_size(size: int, kernel_size: int, padding: int, stride: int = 1) -> int:
    """Spatial size after a convolution or pooling window, in pixels."""
    return math.floor((size + 2 * padding - kernel_size) / stride) + 1
