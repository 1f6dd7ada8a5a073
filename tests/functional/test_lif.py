"""LIF forward dynamics, the STBP baseline and argument checks of ``lif_psc``."""

from __future__ import annotations

import math

import pytest
import torch

from na_lightning.functional import lif_neuron, lif_psc, psc_filter, reverse_filter


def test_forward_hand_worked():
    # u = [0.6, 1.08, 0.6, 1.08]: fires at steps 1 and 3; the PSC halves each step.
    current = torch.full((4, 1), 0.6)

    output = lif_neuron(current)

    torch.testing.assert_close(output.potential.flatten(), torch.tensor([0.6, 1.08, 0.6, 1.08]))
    torch.testing.assert_close(output.psc.flatten(), torch.tensor([0.0, 0.5, 0.25, 0.625]))


def test_strict_threshold_does_not_fire_at_theta():
    psc = lif_psc(torch.tensor([[1.0], [0.0]], dtype=torch.float64))

    assert psc.abs().sum() == 0


def test_hard_reset_after_spike():
    # 2.0 fires and resets to 0, so the next input of 0.9 alone stays below threshold.
    output = lif_neuron(torch.tensor([[2.0], [0.9]]))

    torch.testing.assert_close(output.potential.flatten(), torch.tensor([2.0, 0.9]))


@pytest.mark.parametrize("shape", [(1,), (3, 2), (5, 2, 3, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes_preserved(shape, dtype):
    current = torch.rand(shape, dtype=dtype) * 3

    for grad in ("na", "stbp"):
        psc = lif_psc(current, grad=grad)
        assert psc.shape == current.shape
        assert psc.dtype == dtype


def test_stbp_and_na_share_forward():
    current = torch.rand(6, 50) * 2.5

    torch.testing.assert_close(lif_psc(current, grad="stbp"), lif_psc(current, grad="na"))


def test_stbp_gradient_hand_worked():
    # One step, u = 0.5, slope 4: d psc / d c = sigmoid'(4 (u - 1)) * 4 / tau_s.
    current = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)

    lif_psc(current, grad="stbp").sum().backward()

    sigmoid = 1 / (1 + math.exp(2.0))
    assert current.grad.item() == pytest.approx(4 * sigmoid * (1 - sigmoid) / 2)


def test_filters():
    values = torch.tensor([1.0, 0.0, 0.0, 2.0])

    torch.testing.assert_close(psc_filter(values, 2.0), torch.tensor([0.5, 0.25, 0.125, 1.0625]))
    torch.testing.assert_close(reverse_filter(values, 0.5), torch.tensor([1.25, 0.5, 1.0, 2.0]))


@pytest.mark.parametrize(
    ("current", "error", "fragment"),
    [
        (torch.zeros(()), ValueError, "shape [T, ...] with T >= 1"),
        (torch.zeros(0, 3), ValueError, "got shape (0, 3)"),
        (torch.zeros(3, 2, dtype=torch.int64), TypeError, "torch.int64"),
        (torch.zeros(3, 2, dtype=torch.float16), TypeError, "current.float()"),
        ([[0.5]], TypeError, "got list"),
        (torch.tensor([[0.1], [float("nan")]]), ValueError, "non-finite value (nan) at index (1, 0)"),
        (torch.tensor([[float("inf")]]), ValueError, "non-finite value (inf)"),
    ],
)
def test_bad_current_raises(current, error, fragment):
    with pytest.raises(error) as excinfo:
        lif_psc(current)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"tau_m": 0.5}, "tau_m=0.5 is invalid"),
        ({"tau_s": float("nan")}, "tau_s=nan is invalid"),
        ({"theta": 0.0}, "theta=0.0 is invalid"),
        ({"grad": "bptt"}, "grad='bptt' is not supported; expected one of ('na', 'stbp')"),
        ({"error": "approx"}, "error='approx'"),
        ({"distance": "l2"}, "distance='l2'"),
        ({"kernel": "cuda"}, "kernel='cuda'"),
    ],
)
def test_bad_options_raise(options, fragment):
    with pytest.raises(ValueError) as excinfo:
        lif_psc(torch.ones(3, 2), **options)
    assert fragment in str(excinfo.value)


def test_non_finite_check_can_be_disabled():
    psc = lif_psc(torch.tensor([[float("nan")], [0.5]]), check_finite=False)

    assert psc.shape == (2, 1)
