"""Surrogate-gradient (STBP) baseline: BPTT through the LIF dynamics and the reset."""

from __future__ import annotations

import torch
from torch import Tensor

from na_lightning.functional.lif import LIFParameters


class SigmoidSpike(torch.autograd.Function):
    """Heaviside step ``[x > 0]`` whose backward is the derivative of ``sigmoid(slope * x)``."""

    @staticmethod
    def forward(ctx, shifted_potential: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(shifted_potential)
        ctx.slope = slope
        return (shifted_potential > 0).to(shifted_potential.dtype)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor, None]:
        (shifted_potential,) = ctx.saved_tensors
        sigmoid = torch.sigmoid(ctx.slope * shifted_potential)
        return grad_spikes * ctx.slope * sigmoid * (1.0 - sigmoid), None


def stbp_lif(current: Tensor, params: LIFParameters, slope: float = 4.0) -> tuple[Tensor, Tensor]:
    """Run the LIF neuron with a differentiable surrogate for the spike function.

    The gradient flows through time and through the reset ``m = u (1 - s)``, as in
    spatio-temporal backpropagation (STBP, Wu et al., 2018).

    Args:
        current: input current, shape ``[T, ...]``.
        params: neuron constants.
        slope: steepness of the sigmoid whose derivative replaces the Heaviside
            derivative, per unit of membrane potential.

    Returns:
        ``(psc, potential)``, both shape ``[T, ...]``; ``potential`` is detached.
    """
    membrane_decay = params.membrane_decay
    synaptic_decay = params.synaptic_decay
    membrane = torch.zeros_like(current[0])
    psc = torch.zeros_like(current[0])
    pscs = []
    potentials = []
    for step_current in current:
        potential = membrane_decay * membrane + step_current
        spikes = SigmoidSpike.apply(potential - params.theta, slope)
        membrane = potential * (1.0 - spikes)
        psc = synaptic_decay * psc + spikes / params.tau_s
        pscs.append(psc)
        potentials.append(potential.detach())
    return torch.stack(pscs), torch.stack(potentials)
