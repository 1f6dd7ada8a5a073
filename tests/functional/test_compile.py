"""The NA neuron inside a whole model compiled with ``torch.compile``."""

from __future__ import annotations

import torch

from na_lightning.models.backbone import SpikingNetwork
from na_lightning.nn.layers import NeuronOptions


def test_compiled_network_matches_eager():
    torch.manual_seed(0)
    network = SpikingNetwork(
        "4C3-P2-12", num_classes=3, input_shape=(1, 8, 8), time_steps=3, neuron=NeuronOptions(kernel="eager")
    ).double()
    images = torch.randn(6, 1, 8, 8, dtype=torch.float64) * 2
    weights = [parameter for parameter in network.parameters()]

    eager_output = network(images)
    eager_grads = torch.autograd.grad(eager_output.square().sum(), weights)
    compiled = torch.compile(network)
    compiled_output = compiled(images)
    compiled_grads = torch.autograd.grad(compiled_output.square().sum(), weights)

    torch.testing.assert_close(compiled_output, eager_output, rtol=1e-12, atol=1e-12)
    for compiled_grad, eager_grad in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-10, atol=1e-12)
    assert any(grad.abs().sum() > 0 for grad in compiled_grads)
