"""Spike-based losses on the output layer's PSC ``[T, B, K]`` and the read-out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from na_lightning.functional import psc_filter

LOSSES = ("kernel", "count")


def class_scores(output_psc: Tensor) -> Tensor:
    """Sum the output PSC over time: ``[T, B, K]`` to class scores ``[B, K]``."""
    return output_psc.sum(0)


def predict_classes(output_psc: Tensor) -> Tensor:
    """Predict each sample's class as the argmax of its summed output PSC, ``[B]``."""
    return class_scores(output_psc).argmax(-1)


def _check_output(output_psc: Tensor, labels: Tensor) -> None:
    if output_psc.dim() != 3:
        raise ValueError(
            f"output_psc must have shape [T, B, K], got {tuple(output_psc.shape)}."
        )
    if labels.shape != output_psc.shape[1:2]:
        raise ValueError(
            f"labels must have shape [B] = [{output_psc.shape[1]}] to match output_psc "
            f"{tuple(output_psc.shape)}, got {tuple(labels.shape)}."
        )


class KernelLoss(nn.Module):
    r"""Van Rossum distance between the output PSC and a filtered target spike train.

    .. math:: L = \frac{1}{2B} \sum_{t, b, k} \bigl(a[t, b, k] - d[t, b, k]\bigr)^2

    The target of the true class is ``pattern`` (default: a spike at every step)
    passed ``filter_passes`` times through the synaptic filter. The other classes
    target 0. The defaults follow the NA authors' released code, which filters an
    all-ones train twice: for ``tau_s = 2`` and ``T = 5`` the true-class target is
    ``[0.25, 0.5, 0.6875, 0.8125, 0.890625]``. TSSL-BP used the unfiltered train
    ``[0, 1, 1, 1, 1]`` (``pattern=[0, 1, 1, 1, 1], filter_passes=0``).

    Args:
        tau_s: synaptic time constant of the filter, in steps.
        pattern: target spike train of the true class, one value per step, or
            ``None`` for all ones. Its length must equal ``T`` of the output.
        filter_passes: how many times the pattern is filtered.
    """

    def __init__(
        self, tau_s: float = 2.0, pattern: Sequence[float] | None = None, filter_passes: int = 2
    ) -> None:
        super().__init__()
        if filter_passes < 0:
            raise ValueError(f"filter_passes={filter_passes!r} is invalid; expected >= 0.")
        self.tau_s = tau_s
        self.pattern = None if pattern is None else [float(value) for value in pattern]
        self.filter_passes = filter_passes

    def target_train(self, time_steps: int, dtype=torch.float32, device=None) -> Tensor:
        """Return the true-class target ``[T]``."""
        if self.pattern is None:
            train = torch.ones(time_steps, dtype=dtype, device=device)
        elif len(self.pattern) != time_steps:
            raise ValueError(
                f"The kernel-loss target pattern has {len(self.pattern)} steps but the "
                f"network runs {time_steps}; give one value per step."
            )
        else:
            train = torch.tensor(self.pattern, dtype=dtype, device=device)
        for _ in range(self.filter_passes):
            train = psc_filter(train, self.tau_s)
        return train

    def forward(self, output_psc: Tensor, labels: Tensor) -> Tensor:
        _check_output(output_psc, labels)
        steps, batch, classes = output_psc.shape
        train = self.target_train(steps, output_psc.dtype, output_psc.device)
        one_hot = F.one_hot(labels, classes).to(output_psc.dtype)
        target = train.view(steps, 1, 1) * one_hot.unsqueeze(0)
        return 0.5 * ((output_psc - target) ** 2).sum() / batch


class CountLoss(nn.Module):
    r"""Hinged loss on the summed output PSC of each class.

    With ``n = sum_t a[t]``, the true class is pushed up to ``true_count`` and the
    others down to ``false_count``. No error remains once the true class reaches
    ``n >= true_count`` or a wrong class ``n <= false_count``. The loss is
    ``sum (n - target)^2 / (2 T B)`` over the classes that violate their hinge, so
    ``dL/da[t] = (n - target) / (T B)`` at every step. The defaults (15 and 3) are
    the NA authors' N-MNIST setting for ``T = 30``.
    """

    def __init__(self, true_count: float = 15.0, false_count: float = 3.0) -> None:
        super().__init__()
        if false_count >= true_count:
            raise ValueError(
                f"false_count={false_count!r} must be below true_count={true_count!r}."
            )
        self.true_count = true_count
        self.false_count = false_count

    def forward(self, output_psc: Tensor, labels: Tensor) -> Tensor:
        _check_output(output_psc, labels)
        steps, batch, classes = output_psc.shape
        counts = output_psc.sum(0)
        is_true = F.one_hot(labels, classes).bool()
        target = torch.where(is_true, self.true_count, self.false_count).to(counts.dtype)
        violates = torch.where(is_true, counts < self.true_count, counts > self.false_count)
        error = (counts - target) * violates.to(counts.dtype)
        return (error**2).sum() / (2.0 * steps * batch)


def build_loss(name: str, *, tau_s: float, **options) -> nn.Module:
    """Create a loss by name: ``"kernel"`` (:class:`KernelLoss`) or ``"count"`` (:class:`CountLoss`)."""
    if name == "kernel":
        return KernelLoss(tau_s=tau_s, **options)
    if name == "count":
        return CountLoss(**options)
    raise ValueError(f"loss={name!r} is not supported; expected one of {LOSSES}.")
