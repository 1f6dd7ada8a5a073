"""Backbones built from layer notation such as ``15C5-P2-40C5-P2-300``."""

from __future__ import annotations

import pytest
import torch

from na_lightning.models.backbone import SpikingNetwork, parse_architecture
from na_lightning.nn.layers import NeuronOptions, SpikingConv2d, SpikingLinear, SumPool2d, TemporalDropout


def test_parse_mnist_architecture():
    tokens = parse_architecture("15C5-P2-40C5-P2-300")

    assert [token.kind for token in tokens] == ["conv", "pool", "conv", "pool", "linear"]
    assert tokens[0].values == (15.0, 5.0)
    assert tokens[4].values == (300.0,)


def test_mnist_network_layers_and_parameter_count():
    network = SpikingNetwork("15C5-P2-40C5-P2-300", num_classes=10)
    kinds = [type(layer) for layer in network.layers]

    assert kinds == [SpikingConv2d, SumPool2d, SpikingConv2d, SumPool2d, SpikingLinear, SpikingLinear]
    # 15*1*25 + 40*15*25 + 300*(40*4*4) + 10*300 weights, no biases.
    assert sum(p.numel() for p in network.parameters()) == 375 + 15000 + 192000 + 3000
    assert network.layers[-1].output_layer
    assert not network.layers[0].output_layer


def test_nmnist_network_with_padding_and_dropout():
    network = SpikingNetwork(
        "12C5-P2-64C5-P2-D0.2", num_classes=10, input_shape=(2, 34, 34), encoding="events", padding=1
    )

    assert isinstance(network.layers[4], TemporalDropout)
    # 34 -> conv5 pad1 32 -> pool 16 -> conv5 pad1 14 -> pool 7: 64 * 7 * 7 inputs.
    assert network.layers[-1].linear.in_features == 64 * 7 * 7
    frames = (torch.rand(3, 6, 2, 34, 34) < 0.1).float()
    assert network(frames).shape == (6, 3, 10)


def test_forward_shape_time_major():
    network = SpikingNetwork("4C3-P2-20", num_classes=5, input_shape=(1, 10, 10), time_steps=4)

    output = network(torch.randn(2, 1, 10, 10))

    assert output.shape == (4, 2, 5)
    assert ((output >= 0) & (output < 1)).all()


@pytest.mark.parametrize(
    ("architecture", "fragment"),
    [
        ("15C5-P2-40X5", "'40X5' at position 2"),
        ("15C5--300", "'' at position 1"),
        ("0C5-300", "size of 0"),
        ("300-15C5", "cannot follow a fully connected layer"),
    ],
)
def test_bad_architecture_names_token(architecture, fragment):
    with pytest.raises(ValueError, match="expected|cannot|size") as excinfo:
        SpikingNetwork(architecture, num_classes=10)
    assert fragment in str(excinfo.value)


def test_feature_map_too_small_raises():
    with pytest.raises(ValueError, match="shrinks the feature map"):
        SpikingNetwork("15C5-P2-40C5-P2-P2-P2-P2", num_classes=10)


@pytest.mark.parametrize("time_steps", [0, -3])
def test_time_steps_below_one_raises(time_steps):
    with pytest.raises(ValueError, match=f"time_steps={time_steps}"):
        SpikingNetwork("300", num_classes=10, time_steps=time_steps)


@pytest.mark.parametrize(
    "shape",
    [(1, 28, 28), (2, 1, 32, 32), (2, 3, 28, 28), (2, 5, 1, 28, 28)],
)
def test_wrong_input_shape_raises(shape):
    network = SpikingNetwork("15C5-P2-300", num_classes=10)

    with pytest.raises(ValueError, match=r"expected \[B, 1, 28, 28\]"):
        network(torch.randn(*shape))


def test_input_shape_hint_depends_on_shape():
    network = SpikingNetwork("15C5-P2-300", num_classes=10)

    with pytest.raises(ValueError) as single_image:
        network(torch.randn(1, 28, 28))
    with pytest.raises(ValueError) as other_images:
        network(torch.randn(2, 3, 32, 32))

    assert "x.unsqueeze(0)" in str(single_image.value)
    assert "x.unsqueeze(0)" not in str(other_images.value)
    assert "a network built for these images" in str(other_images.value)


def test_stbp_network_trains_weights():
    network = SpikingNetwork(
        "6C3-P2-30", num_classes=3, input_shape=(1, 8, 8), neuron=NeuronOptions(grad="stbp")
    )
    network(torch.randn(4, 1, 8, 8) * 3).sum().backward()

    assert all(parameter.grad is not None for parameter in network.parameters())
