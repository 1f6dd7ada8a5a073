"""Discrete-time leaky integrate-and-fire neuron with a first-order synaptic current.

All tensors are time-major: ``[T, ...]`` with any trailing shape. Time is measured
in simulation steps, so the time constants ``tau_m`` and ``tau_s`` are in steps and
the threshold ``theta`` and the membrane potential share one arbitrary unit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class LIFParameters(NamedTuple):
    """Constants of the LIF neuron.

    Attributes:
        tau_m: membrane time constant in steps (at least 1); the membrane keeps
            ``1 - 1 / tau_m`` of its value from one step to the next.
        tau_s: synaptic time constant in steps (at least 1); the postsynaptic current
            (PSC) keeps ``1 - 1 / tau_s`` of its value per step.
        theta: firing threshold; a neuron fires when its membrane potential is
            strictly greater than ``theta``.
    """

    tau_m: float = 5.0
    tau_s: float = 2.0
    theta: float = 1.0

    @property
    def membrane_decay(self) -> float:
        return 1.0 - 1.0 / self.tau_m

    @property
    def synaptic_decay(self) -> float:
        return 1.0 - 1.0 / self.tau_s


def lif_membrane(current: Tensor, params: LIFParameters) -> Tensor:
    r"""Simulate the membrane and return the pre-reset potential ``u``.

    .. math::
        u[t] = (1 - 1/\tau_m)\, m[t-1] + c[t], \quad
        s[t] = [u[t] > \theta], \quad
        m[t] = u[t]\,(1 - s[t]), \quad m[-1] = 0

    Args:
        current: total synaptic input ``c``, shape ``[T, ...]``.
        params: neuron constants.

    Returns:
        The pre-reset membrane potential ``u``, shape ``[T, ...]``. Spikes are
        ``u > params.theta``.
    """
    decay = params.membrane_decay
    membrane = torch.zeros_like(current[0])
    potentials = []
    for step_current in current:
        potential = decay * membrane + step_current
        membrane = potential.masked_fill(potential > params.theta, 0.0)
        potentials.append(potential)
    return torch.stack(potentials)


def lif_forward(current: Tensor, tau_m: float, tau_s: float, theta: float) -> tuple[Tensor, Tensor]:
    """Simulate LIF neurons and return their PSC and pre-reset membrane potential.

    Args:
        current: input current, shape ``[T, ...]``.
        tau_m: membrane time constant in steps.
        tau_s: synaptic time constant in steps.
        theta: firing threshold.

    Returns:
        ``(psc, potential)``, both shape ``[T, ...]``.
    """
    params = LIFParameters(tau_m, tau_s, theta)
    potential = lif_membrane(current, params)
    spikes = (potential > theta).to(current.dtype)
    return psc_filter(spikes, tau_s), potential


def psc_filter(spikes: Tensor, tau_s: float) -> Tensor:
    r"""Filter a spike (or any) train with the first-order synaptic kernel.

    .. math:: a[t] = (1 - 1/\tau_s)\, a[t-1] + x[t] / \tau_s, \quad a[-1] = 0

    Args:
        spikes: input train ``x``, shape ``[T, ...]``.
        tau_s: synaptic time constant in steps.

    Returns:
        The filtered train ``a``, shape ``[T, ...]``, same dtype as ``spikes``.
    """
    decay = 1.0 - 1.0 / tau_s
    state = torch.zeros_like(spikes[0])
    outputs = []
    for step_input in spikes:
        state = decay * state + step_input / tau_s
        outputs.append(state)
    return torch.stack(outputs)


def reverse_filter(values: Tensor, decay: float) -> Tensor:
    r"""Accumulate ``values`` backwards in time with a geometric decay.

    .. math:: y[T-1] = x[T-1], \quad y[t] = x[t] + \text{decay}\cdot y[t+1]

    Args:
        values: ``x``, shape ``[T, ...]``.
        decay: factor applied per step, in ``[0, 1)``.

    Returns:
        ``y``, shape ``[T, ...]``.
    """
    state = torch.zeros_like(values[0])
    outputs = []
    for step_value in reversed(values.unbind(0)):
        state = step_value + decay * state
        outputs.append(state)
    outputs.reverse()
    return torch.stack(outputs)


def analog_current(image: Tensor, time_steps: int, tau_s: float) -> Tensor:
    r"""Encode an analog input as the synaptic current of a constant input.

    The input is held constant for ``time_steps`` steps and passed through the
    synaptic filter, which has the closed form

    .. math:: \tilde x[t] = x\,\bigl(1 - (1 - 1/\tau_s)^{t+1}\bigr)

    Args:
        image: normalized input ``x``, shape ``[B, ...]``.
        time_steps: number of steps ``T`` (at least 1).
        tau_s: synaptic time constant in steps.

    Returns:
        The current, shape ``[T, B, ...]``.
    """
    steps = torch.arange(1, time_steps + 1, device=image.device, dtype=image.dtype)
    gain = 1.0 - (1.0 - 1.0 / tau_s) ** steps
    return gain.view(time_steps, *([1] * image.dim())) * image.unsqueeze(0)
