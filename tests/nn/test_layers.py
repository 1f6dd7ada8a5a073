"""Spiking layers, pooling, dropout and input encoders."""

from __future__ import annotations

import torch

from na_lightning.nn.layers import AnalogEncoder, EventEncoder, SumPool2d, TemporalDropout


def test_sum_pool_scales_window_sum():
    inputs = torch.arange(16.0).reshape(1, 1, 1, 4, 4)

    pooled = SumPool2d(2, scale=1.1)(inputs)

    expected = 1.1 * torch.tensor([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])
    torch.testing.assert_close(pooled[0, 0, 0], expected)


def test_dropout_mask_shared_over_time():
    torch.manual_seed(0)
    dropout = TemporalDropout(0.5).train()
    inputs = torch.ones(6, 4, 8, 3, 3)

    outputs = dropout(inputs)

    assert torch.equal(outputs, outputs[:1].expand_as(outputs))
    assert set(outputs.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(dropout.eval()(inputs), inputs)


def test_analog_encoder_is_filtered_constant():
    image = torch.tensor([[2.0]])

    current = AnalogEncoder(time_steps=4, tau_s=2.0)(image)

    torch.testing.assert_close(current.flatten(), torch.tensor([1.0, 1.5, 1.75, 1.875]))


def test_event_encoder_time_major_filter():
    frames = torch.zeros(1, 3, 2, 1, 1)
    frames[0, 0, 1] = 1.0

    current = EventEncoder(tau_s=2.0)(frames)

    assert current.shape == (3, 1, 2, 1, 1)
    torch.testing.assert_close(current[:, 0, 1].flatten(), torch.tensor([0.5, 0.25, 0.125]))
    assert current[:, 0, 0].abs().sum() == 0
