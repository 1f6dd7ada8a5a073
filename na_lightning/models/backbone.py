"""Spiking networks built from the layer notation of spiking-network papers.

An architecture is a string of tokens joined by ``-``:

- ``15C5``: convolution with 15 output channels and a 5x5 kernel, then LIF neurons;
- ``P2``: 2x2 sum pooling with stride 2 (times 1.1), no neurons;
- ``300``: fully connected layer of 300 LIF neurons;
- ``D0.2``: dropout with probability 0.2, one mask per sample and channel for all steps.

The classifier layer of ``num_classes`` neurons is appended, so the MNIST network
of the NA paper is ``SpikingNetwork("15C5-P2-40C5-P2-300", num_classes=10)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import Tensor, nn

from na_lightning.functional import GradientRescale
from na_lightning.nn.layers import (
    AnalogEncoder,
    EventEncoder,
    NeuronOptions,
    SpikingConv2d,
    SpikingLayer,
    SpikingLinear,
    SumPool2d,
    TemporalDropout,
    output_size,
)

ENCODINGS = ("analog", "events")

_TOKEN_FORMS = (
    ("conv", re.compile(r"^(\d+)C(\d+)$")),
    ("pool", re.compile(r"^P(\d+)$")),
    ("dropout", re.compile(r"^D(0?\.\d+|0)$")),
    ("linear", re.compile(r"^(\d+)$")),
)
_TOKEN_HELP = "'<channels>C<kernel>' (e.g. 15C5), 'P<size>' (e.g. P2), '<neurons>' (e.g. 300) or 'D<p>' (e.g. D0.2)"


@dataclass(frozen=True)
class LayerToken:
    """One parsed token of an architecture string."""

    kind: str
    values: tuple[float, ...]
    text: str


def parse_architecture(architecture: str) -> list[LayerToken]:
    """Parse an architecture string such as ``"15C5-P2-40C5-P2-300"`` into tokens.

    An empty string is a network with only the classifier layer.

    Raises:
        ValueError: a token does not match any form; the message names it and its position.
    """
    if not isinstance(architecture, str):
        raise TypeError(f"architecture must be a string like '15C5-P2-300', got {architecture!r}.")
    tokens = []
    texts = [text.strip() for text in architecture.split("-")] if architecture.strip() else []
    for position, text in enumerate(texts):
        for kind, pattern in _TOKEN_FORMS:
            match = pattern.match(text)
            if match:
                values = tuple(float(group) for group in match.groups())
                tokens.append(LayerToken(kind, values, text))
                break
        else:
            raise ValueError(
                f"Unknown token {text!r} at position {position} of architecture "
                f"{architecture!r}; expected {_TOKEN_HELP}, joined by '-'."
            )
        if kind in ("conv", "pool", "linear") and min(values) < 1:
            raise ValueError(
                f"Token {text!r} in architecture {architecture!r} has a size of 0; "
                "channels, kernels and neurons must be at least 1."
            )
    return tokens


class SpikingNetwork(nn.Module):
    """A feed-forward spiking network from an architecture string.

    Args:
        architecture: hidden layers in the notation of the module docstring.
        num_classes: neurons of the appended classifier layer.
        input_shape: ``(C, H, W)`` of one input image or event frame.
        time_steps: simulation steps ``T`` for analog input; event input brings its own.
        encoding: ``"analog"`` (images ``[B, C, H, W]``, held constant) or ``"events"``
            (frames ``[B, T, C, H, W]``).
        neuron: LIF constants and gradient options for every spiking layer.
        padding: zero padding of every convolution, in pixels.
        conv_weight_scale: factor on the default convolution initialization.
        linear_weight_scale: factor on the Kaiming-normal linear initialization.
        rescale: per-layer NA gradient rescaling
            (:class:`~na_lightning.functional.GradientRescale`). On by default; it has no
            effect when ``neuron.grad`` is ``"stbp"``.
    """

    def __init__(
        self,
        architecture: str,
        *,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        time_steps: int = 5,
        encoding: str = "analog",
        neuron: NeuronOptions = NeuronOptions(),
        padding: int = 0,
        conv_weight_scale: float = 1.0,
        linear_weight_scale: float = 1.0,
        rescale: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps={time_steps!r} is invalid; expected an integer >= 1.")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding={encoding!r} is not supported; expected one of {ENCODINGS}.")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} is invalid; expected at least 1.")
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape={input_shape!r} is invalid; expected (channels, height, width).")
        self.architecture = architecture
        self.input_shape = tuple(int(size) for size in input_shape)
        self.time_steps = time_steps
        self.encoding = encoding
        # Rescaling acts on NA gradients only, so an STBP network ignores the flag.
        self.rescale = rescale and neuron.grad == "na"
        self.encoder = (
            AnalogEncoder(time_steps, neuron.tau_s) if encoding == "analog" else EventEncoder(neuron.tau_s)
        )
        self.layers = self._build_layers(
            parse_architecture(architecture),
            num_classes,
            neuron,
            padding,
            conv_weight_scale,
            linear_weight_scale,
        )

    def _build_layers(self, tokens, num_classes, neuron, padding, conv_scale, linear_scale):
        channels, height, width = self.input_shape
        features = None  # set once the network is flattened by a linear layer
        layers = nn.ModuleList()
        for token in tokens:
            if token.kind == "conv":
                if features is not None:
                    raise ValueError(
                        f"Token {token.text!r} in {self.architecture!r}: a convolution cannot "
                        "follow a fully connected layer."
                    )
                out_channels, kernel = int(token.values[0]), int(token.values[1])
                layers.append(
                    SpikingConv2d(
                        channels, out_channels, kernel, padding=padding, weight_scale=conv_scale, neuron=neuron
                    )
                )
                channels = out_channels
                height = output_size(height, kernel, padding)
                width = output_size(width, kernel, padding)
            elif token.kind == "pool":
                if features is not None:
                    raise ValueError(
                        f"Token {token.text!r} in {self.architecture!r}: pooling cannot follow "
                        "a fully connected layer."
                    )
                size = int(token.values[0])
                layers.append(SumPool2d(size))
                height = output_size(height, size, 0, stride=size)
                width = output_size(width, size, 0, stride=size)
            elif token.kind == "dropout":
                layers.append(TemporalDropout(token.values[0]))
            else:
                in_features = features if features is not None else channels * height * width
                features = int(token.values[0])
                layers.append(SpikingLinear(in_features, features, weight_scale=linear_scale, neuron=neuron))
            if height < 1 or width < 1:
                raise ValueError(
                    f"Token {token.text!r} in {self.architecture!r} shrinks the feature map "
                    f"to {height}x{width} for input shape {self.input_shape}; use a larger "
                    "input, padding, or fewer pooling layers."
                )

        in_features = features if features is not None else channels * height * width
        layers.append(
            SpikingLinear(
                in_features, num_classes, weight_scale=linear_scale, neuron=neuron, output_layer=True
            )
        )
        return layers

    @property
    def spiking_layers(self) -> dict[str, SpikingLayer]:
        """The spiking layers by name (``layers.0``, ...), input to output."""
        return {
            f"layers.{index}": layer
            for index, layer in enumerate(self.layers)
            if isinstance(layer, SpikingLayer)
        }

    def check_input(self, inputs: Tensor) -> None:
        """Raise a ValueError naming the shape when ``inputs`` does not fit this network."""
        if self.encoding == "analog":
            expected = "[B, " + ", ".join(str(size) for size in self.input_shape) + "]"
            valid = inputs.dim() == 4 and tuple(inputs.shape[1:]) == self.input_shape
            if tuple(inputs.shape) == self.input_shape:
                hint = "Add the batch axis with x.unsqueeze(0) for a single image."
            else:
                hint = (
                    "Pass images of the shape the network was built for, or a network built for "
                    "these images (input_shape, or the checkpoint's model arguments)."
                )
        else:
            expected = "[B, T, " + ", ".join(str(size) for size in self.input_shape) + "]"
            valid = inputs.dim() == 5 and tuple(inputs.shape[2:]) == self.input_shape and inputs.shape[1] >= 1
            hint = "Event frames are batch first, then time: [batch, steps, polarity, height, width]."
        if not valid:
            raise ValueError(
                f"Input of shape {tuple(inputs.shape)} does not fit this network; expected "
                f"{expected} ({self.encoding} encoding). {hint}"
            )

    def forward(self, inputs: Tensor) -> Tensor:
        """Run the network.

        Args:
            inputs: images ``[B, C, H, W]`` (analog) or frames ``[B, T, C, H, W]`` (events).

        Returns:
            The output layer's PSC, shape ``[T, B, num_classes]``.
        """
        self.check_input(inputs)
        rescale = GradientRescale() if self.rescale else None
        activity = self.encoder(inputs)
        for layer in self.layers:
            if isinstance(layer, SpikingLayer):
                activity = layer(activity, rescale)
            else:
                activity = layer(activity)
        return activity
