"""Kernel and count losses and the read-out."""

from __future__ import annotations

import pytest
import torch

from na_lightning.losses import CountLoss, KernelLoss, predict_classes


def test_kernel_target_default_matches_authors_code():
    target = KernelLoss(tau_s=2.0).target_train(5)

    torch.testing.assert_close(target, torch.tensor([0.25, 0.5, 0.6875, 0.8125, 0.890625]))


def test_kernel_target_custom_pattern():
    target = KernelLoss(tau_s=2.0, pattern=[0, 1, 1, 1, 1], filter_passes=0).target_train(5)

    torch.testing.assert_close(target, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))


def test_kernel_loss_value_and_gradient():
    output = torch.zeros(5, 2, 3, requires_grad=True)
    labels = torch.tensor([1, 2])

    loss = KernelLoss(tau_s=2.0)(output, labels)
    loss.backward()

    target = torch.tensor([0.25, 0.5, 0.6875, 0.8125, 0.890625])
    assert loss.item() == pytest.approx(0.5 * 2 * (target**2).sum().item() / 2)
    torch.testing.assert_close(output.grad[:, 0, 1], -target / 2)
    assert output.grad[:, 0, 0].abs().sum() == 0


def test_kernel_pattern_length_mismatch_raises():
    with pytest.raises(ValueError, match="3 steps but the network runs 5"):
        KernelLoss(pattern=[1, 1, 1])(torch.zeros(5, 1, 2), torch.tensor([0]))


def test_count_loss_hinge_and_gradient():
    steps = 30
    output = torch.zeros(steps, 1, 3)
    output[:, 0, 0] = 0.6  # true class, count 18 >= 15: no error
    output[:, 0, 1] = 0.2  # wrong class, count 6 > 3: error 3
    output[:, 0, 2] = 0.05  # wrong class, count 1.5 <= 3: no error
    output.requires_grad_(True)

    loss = CountLoss(15.0, 3.0)(output, torch.tensor([0]))
    loss.backward()

    assert loss.item() == pytest.approx(9.0 / (2 * steps))
    torch.testing.assert_close(output.grad[:, 0, 1], torch.full((steps,), 3.0 / steps))
    assert output.grad[:, 0, 0].abs().sum() == 0
    assert output.grad[:, 0, 2].abs().sum() == 0


def test_count_loss_pushes_true_class_up():
    output = torch.zeros(10, 1, 2, requires_grad=True)

    CountLoss(5.0, 1.0)(output, torch.tensor([1])).backward()

    torch.testing.assert_close(output.grad[:, 0, 1], torch.full((10,), -0.5))


def test_predict_argmax_of_summed_psc():
    output = torch.tensor([[[0.1, 0.5]], [[0.9, 0.0]]])

    assert predict_classes(output).tolist() == [0]


def test_labels_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"labels must have shape \[B\] = \[2\]"):
        KernelLoss()(torch.zeros(5, 2, 3), torch.tensor([0, 1, 2]))
