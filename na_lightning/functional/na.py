r"""The aggregated gradient of Neighborhood Aggregation (NA) under Simple Neighborhood Selection.

For every step ``p`` a neuron has one neighbor. The neighbor's membrane potential is
perturbed at ``p`` by the least amount that flips the firing at ``p``, so the
perturbed potential sits exactly at the threshold. From that state on, the neighbor
follows the real LIF dynamics (the chain effect). NA estimates the loss change of each neighbor to first
order from the PSC error and divides it by the neighbor's distance, ``theta - u[p]``:

.. math::
    \delta[p] = w(\theta - u[p]) \sum_{t \ge p} \bigl(s'_p[t] - s[t]\bigr)\, h[t] / \tau_s

where ``s'_p`` is the neighbor's spike train and ``h`` the error that a spike at
``t`` meets downstream:

- ``error="exact"``: ``h = e``, the PSC error ``e[t] = g[t] + (1 - 1/tau_s) e[t+1]``;
  this is the first-order change ``sum_t g[t] (a'[t] - a[t])``.
- ``error="code"``: ``h[t] = e[t] + (1 - 1/tau_s) h[t+1]``, which equals
  ``sum_t e[t] (a'[t] - a[t])``, the reading of the authors' released code.

Distance weights ``w(d)`` for the signed distance ``d = theta - u[p]``:

- ``distance="paper"``: ``clamp(1 / d, -10, 10)``.
- ``distance="code"``: ``clamp(d ** -3, -5, 5)``, from the authors' released code.

``d == 0`` (a membrane exactly at the threshold, which does not fire) takes the
positive bound, so the weights are finite for every finite membrane potential.

The neighbor's chain effect stops mattering once its membrane rejoins the original
one (both reset at the same step): every later spike is identical, so the sum
above only runs over the steps before that.
"""

from __future__ import annotations

import torch
from torch import Tensor

from na_lightning.functional.lif import reverse_filter

ERROR_VECTORS = ("code", "exact")
DISTANCE_WEIGHTS = ("code", "paper")

#: Bounds and exponents of the distance weights, ``(bound, power)``.
_DISTANCE_FORMS = {"paper": (10.0, 1), "code": (5.0, 3)}


def distance_weight(distance: Tensor, kind: str = "code") -> Tensor:
    """Weight each neighbor's loss change by its signed distance to the threshold.

    Args:
        distance: signed distance ``theta - u``, any shape. Negative where the
            neuron fired.
        kind: ``"code"`` for ``clamp(d**-3, -5, 5)`` or ``"paper"`` for
            ``clamp(1/d, -10, 10)``.

    Returns:
        The weights, same shape and dtype as ``distance``, always finite for
        finite input; ``distance == 0`` maps to the positive bound.
    """
    bound, power = _DISTANCE_FORMS[kind]
    at_threshold = distance == 0
    inverse = 1.0 / distance.masked_fill(at_threshold, 1.0)
    weight = inverse**power if power != 1 else inverse
    weight = weight.clamp(-bound, bound)
    return weight.masked_fill(at_threshold, bound)


def neighbor_loss_change(
    potential: Tensor,
    downstream_error: Tensor,
    *,
    membrane_decay: float,
    theta: float,
) -> Tensor:
    """Compute the first-order loss change of every SNS neighbor.

    This is the fused form: the neighbors are simulated one step at a time per
    neuron, and no ``[T, T, ...]`` tensor is built.

    Args:
        potential: pre-reset membrane potential ``u``, shape ``[T, N]``.
        downstream_error: ``h / tau_s`` of the module docstring, shape ``[T, N]``.
        membrane_decay: ``1 - 1/tau_m``.
        theta: firing threshold.

    Returns:
        ``dL[p]`` for each neighbor ``p``, shape ``[T, N]``.
    """
    steps = potential.shape[0]
    fired = potential > theta
    spikes = fired.to(potential.dtype)
    membrane = potential.masked_fill(fired, 0.0)
    changes = []
    for p in range(steps):
        # The flip at p: a lost spike leaves the membrane at theta (no reset),
        # a gained spike resets it to 0.
        change = (1.0 - 2.0 * spikes[p]) * downstream_error[p]
        flipped_membrane = spikes[p] * theta
        membrane_gap = flipped_membrane - membrane[p]

        # Chain effect: the neighbor differs from the original only through the
        # membrane it carries; once the gap is 0 both runs coincide.
        for t in range(p + 1, steps):
            neighbor_potential = potential[t] + membrane_decay * membrane_gap
            neighbor_fired = neighbor_potential > theta
            change = change + (neighbor_fired.to(potential.dtype) - spikes[t]) * downstream_error[t]
            neighbor_membrane = neighbor_potential.masked_fill(neighbor_fired, 0.0)
            membrane_gap = neighbor_membrane - membrane[t]
        changes.append(change)
    return torch.stack(changes)


def na_current_grad(
    potential: Tensor,
    grad_psc: Tensor,
    *,
    tau_m: float,
    tau_s: float,
    theta: float,
    error: str = "code",
    distance: str = "code",
) -> Tensor:
    """Compute the NA aggregated gradient with respect to the input current.

    Args:
        potential: pre-reset membrane potential ``u``, shape ``[T, N]``.
        grad_psc: ``g = dL/da``, the loss gradient with respect to the layer's
            PSC output, shape ``[T, N]``.
        tau_m: membrane time constant in steps.
        tau_s: synaptic time constant in steps.
        theta: firing threshold.
        error: ``"code"`` or ``"exact"`` error vector (module docstring).
        distance: ``"code"`` or ``"paper"`` distance weights.

    Returns:
        ``delta``, the gradient with respect to the input current, shape ``[T, N]``.
    """
    synaptic_decay = 1.0 - 1.0 / tau_s
    psc_error = reverse_filter(grad_psc, synaptic_decay)
    if error == "code":
        downstream = reverse_filter(psc_error, synaptic_decay)
    else:
        downstream = psc_error

    changes = neighbor_loss_change(
        potential,
        downstream / tau_s,
        membrane_decay=1.0 - 1.0 / tau_m,
        theta=theta,
    )
    return changes * distance_weight(theta - potential, distance)
