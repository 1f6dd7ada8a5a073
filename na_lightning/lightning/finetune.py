"""Fine-tune a trained ``NAClassifier`` on another dataset, sensor or number of classes.

:func:`finetune_from` takes a source model (an ``NAClassifier``, a Lightning checkpoint file, or
a model name resolved by a ``zoo_loader`` callable) and returns a :class:`FineTuneClassifier`:
the same architecture, with

- a new classifier head when the number of classes changes (or ``reset_head=True``);
- first-layer weights adapted to another number of input channels, e.g. 1 (grey images) to
  2 (ON/OFF event polarities), see :func:`adapt_channels`;
- an optional :class:`FrameAdapter` in front of the network that pads, crops or resizes the
  frames to the spatial size the source was trained on;
- another input encoding (``"analog"`` images to ``"events"`` frames), since the encoders have
  no weights;
- the first ``freeze_layers`` spiking layers frozen, and the other pretrained layers trained
  with ``backbone_lr_factor`` times the learning rate of the head.

Every weight whose shape is unchanged is copied. A weight whose shape changes for another
reason, such as the first fully connected layer when the flattened feature map changes size
(``input_adapter="none"`` with another input size), keeps its fresh initialization and trains
with the head.

Example:
    >>> mnist = NAClassifier()  # the MNIST recipe: input (1, 28, 28), analog
    >>> model = finetune_from(mnist, input_shape=(2, 34, 34), encoding="events",
    ...                       input_adapter="crop", freeze_layers=1)
    >>> model.network.input_shape, model.transfer_plan["layers.0"]
    ((2, 28, 28), 'adapt')
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from na_lightning.lightning.classifier import NAClassifier
from na_lightning.models.backbone import SpikingNetwork

logger = logging.getLogger(__name__)

INPUT_ADAPTERS = ("none", "pad", "crop", "resize")
CHANNEL_INITS = ("spread", "repeat", "reinit")

_NETWORK_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(NAClassifier.__init__).parameters.items()
    if name != "self"
}
NETWORK_HPARAMS = tuple(_NETWORK_DEFAULTS)
"""Names of the ``NAClassifier`` arguments, which :func:`finetune_from` takes from the source."""

_FIXED_HPARAMS = ("architecture", "padding")

ZooLoader = Callable[[str], NAClassifier]
"""Resolve a model name to a trained ``NAClassifier``."""


class FrameAdapter(nn.Module):
    """Fit frames ``[B, T, C, H, W]`` or images ``[B, C, H, W]`` to the spatial size ``size``.

    Modes:

    - ``"pad"``: zero-pad, centered, with the odd row or column at the bottom or right.
      Inputs larger than ``size`` raise a ValueError.
    - ``"crop"``: center crop with ``torchvision.transforms.v2.functional.center_crop``,
      which also zero-pads a dimension that is smaller than ``size``.
    - ``"resize"``: bilinear resampling with antialiasing. Binary event frames become
      fractional values between 0 and 1.

    Args:
        mode: ``"pad"``, ``"crop"`` or ``"resize"``.
        size: ``(H, W)`` the network expects, in pixels.
    """

    def __init__(self, mode: str, size: Sequence[int]) -> None:
        super().__init__()
        if mode not in INPUT_ADAPTERS[1:]:
            raise ValueError(f"mode={mode!r} is invalid. Expected one of {INPUT_ADAPTERS[1:]}.")
        self.mode = mode
        self.size = (int(size[0]), int(size[1]))

    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``inputs`` with the last two dimensions changed to :attr:`size`."""
        height, width = inputs.shape[-2:]
        if (height, width) == self.size:
            return inputs

        leading = inputs.shape[:-3]
        flat = inputs.flatten(0, -4) if inputs.dim() > 4 else inputs
        if self.mode == "pad":
            target_height, target_width = self.size
            if height > target_height or width > target_width:
                raise ValueError(
                    f"Input of spatial size {height}x{width} is larger than the network input "
                    f"{target_height}x{target_width}, so input_adapter='pad' cannot fit it. "
                    "Use input_adapter='crop' or 'resize'."
                )
            top, left = (target_height - height) // 2, (target_width - width) // 2
            adapted = F.pad(flat, (left, target_width - width - left, top, target_height - height - top))
        elif self.mode == "crop":
            adapted = TF.center_crop(flat, list(self.size))
        else:
            adapted = F.interpolate(
                flat.float(), size=self.size, mode="bilinear", align_corners=False, antialias=True
            )
        return adapted.unflatten(0, leading) if inputs.dim() > 4 else adapted

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, size={self.size}"


def adapt_channels(weight: Tensor, channels: int, mode: str = "spread") -> Tensor:
    """Adapt first-layer weights ``[O, C_src, ...]`` to ``channels`` input channels.

    ``"spread"`` sums the source channels and divides the sum evenly over the new channels,
    so each filter's summed weight is unchanged. From 1 to 2 channels, each polarity gets half
    of the grey-level filter. From 2 to 1 channel, the new filter is the sum of the two.
    ``"repeat"`` gives every new channel the mean of the source channels (1 to 2: each
    polarity gets the full grey-level filter).

    Args:
        weight: convolution ``[O, C_src, k, k]`` or linear ``[O, C_src, H * W]`` weights.
        channels: input channels of the new layer.
        mode: ``"spread"`` or ``"repeat"``.

    Returns:
        Weights ``[O, channels, ...]``, a new tensor.
    """
    if mode == "spread":
        per_channel = weight.sum(1, keepdim=True) / channels
    elif mode == "repeat":
        per_channel = weight.mean(1, keepdim=True)
    else:
        raise ValueError(f"mode={mode!r} is invalid. Expected 'spread' or 'repeat'.")
    return per_channel.expand(weight.shape[0], channels, *weight.shape[2:]).clone()


def load_source_model(
    source: str | os.PathLike[str] | NAClassifier, zoo_loader: ZooLoader | None = None
) -> NAClassifier:
    """Return the model to fine-tune from.

    Args:
        source: an ``NAClassifier`` (returned as is), the path of a Lightning checkpoint of an
            ``NAClassifier`` or ``FineTuneClassifier``, or a model name for ``zoo_loader``.
        zoo_loader: callable that returns a trained ``NAClassifier`` for a model name.

    Raises:
        FileNotFoundError: ``source`` is not a file and no ``zoo_loader`` is given.
        TypeError: ``source`` or the ``zoo_loader`` result is not an ``NAClassifier``.
    """
    if isinstance(source, NAClassifier):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be an NAClassifier, a checkpoint path or a model name, got "
            f"{type(source).__name__}."
        )

    path = Path(source).expanduser()
    if path.is_file():
        return _load_checkpoint(path)
    if zoo_loader is None:
        raise FileNotFoundError(
            f"source {str(source)!r} is not a checkpoint file. Pass the path of a Lightning "
            "checkpoint, or a zoo_loader that resolves model names."
        )
    model = zoo_loader(str(source))
    if not isinstance(model, NAClassifier):
        raise TypeError(
            f"zoo_loader({str(source)!r}) returned {type(model).__name__}, expected an NAClassifier."
        )
    return model


def _load_checkpoint(path: Path) -> NAClassifier:
    """Rebuild an ``NAClassifier`` or ``FineTuneClassifier`` from its hyperparameters and weights.

    The file is read with ``torch.load(weights_only=True)``, which unpickles only tensors and
    plain containers.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"Checkpoint {path} contains objects that torch.load(weights_only=True) rejects "
            f"({error}). If you trust the file, load it with "
            "NAClassifier.load_from_checkpoint(path, weights_only=False) and pass the model as "
            "source."
        ) from error
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} is not a Lightning checkpoint of an NAClassifier: it has no "
            "'hyper_parameters' or no 'state_dict'. Pass a .ckpt file written by the Trainer."
        )

    model_class = FineTuneClassifier if "head_layers" in hparams else NAClassifier
    accepted = set(inspect.signature(model_class.__init__).parameters) | set(NETWORK_HPARAMS)
    arguments = {name: value for name, value in hparams.items() if name in accepted}
    model = model_class(**arguments)
    model.load_state_dict(checkpoint["state_dict"])
    logger.info("Loaded %s from %s", model_class.__name__, path)
    return model


def network_hparams(model: NAClassifier) -> dict[str, Any]:
    """Return the ``NAClassifier`` arguments of ``model`` (architecture, neuron, loss, optimizer).

    Arguments missing from ``model.hparams`` get the ``NAClassifier`` defaults.
    """
    return {name: model.hparams.get(name, default) for name, default in _NETWORK_DEFAULTS.items()}


def plan_transfer(
    source: SpikingNetwork, target: SpikingNetwork, channel_init: str = "spread", reset_head: bool = False
) -> dict[str, str]:
    """Decide, per spiking layer, how ``target`` gets its weights from ``source``.

    Returns:
        ``{layer name: action}`` with the action ``"copy"`` (same shape), ``"adapt"`` (first
        layer, other input channels, see :func:`adapt_channels`) or ``"new"`` (keeps its fresh
        initialization: the head when the class count changes or ``reset_head`` is set, the
        first layer with ``channel_init="reinit"``, and any other layer whose shape changed).
    """
    if len(source.spiking_layers) != len(target.spiking_layers):
        raise ValueError(
            f"source has {len(source.spiking_layers)} spiking layers, target "
            f"{len(target.spiking_layers)}, but fine-tuning needs the same architecture."
        )

    names = list(target.spiking_layers)
    source_channels, target_channels = source.input_shape[0], target.input_shape[0]
    plan = {}
    for name in names:
        source_weight = _layer_weight(source.spiking_layers[name])
        target_weight = _layer_weight(target.spiking_layers[name])
        if name == names[-1] and reset_head:
            plan[name] = "new"
        elif source_weight.shape == target_weight.shape:
            plan[name] = "copy"
        elif name == names[0] and source_channels != target_channels and channel_init != "reinit":
            same_rest = _per_channel_shape(source_weight, source_channels) == _per_channel_shape(
                target_weight, target_channels
            )
            plan[name] = "adapt" if same_rest else "new"
        else:
            plan[name] = "new"
    return plan


def _layer_weight(layer: nn.Module) -> Tensor:
    (weight,) = list(layer.parameters())
    return weight


def _per_channel_shape(weight: Tensor, channels: int) -> tuple[int, ...]:
    """Return the shape of one input channel's weights, to compare layers with other channel counts.

    Convolutions give ``(O, k, k)``. Linear layers give ``(O, in_features // channels, remainder)``.
    """
    if weight.dim() == 2:
        return (weight.shape[0], weight.shape[1] // channels, weight.shape[1] % channels)
    return (weight.shape[0], *weight.shape[2:])


class FineTuneClassifier(NAClassifier):
    """An ``NAClassifier`` initialized from a trained one, with an input adapter and two learning rates.

    The ``NAClassifier`` arguments (``**kwargs``) describe the new network, and ``architecture``
    and ``padding`` must equal the source's. :func:`finetune_from` fills them in from the
    source. Weights move as :func:`plan_transfer` decides, and :attr:`transfer_plan` records it.

    AdamW gets two parameter groups: ``"head"`` (the layers in ``head_layers``) at ``lr`` and
    ``"backbone"`` (all other trainable layers) at ``lr * backbone_lr_factor``, with the same
    weight decay, betas and per-epoch decay as ``NAClassifier``.

    After construction the hyperparameters store ``source=None`` and the resolved
    ``head_layers``, so that ``FineTuneClassifier.load_from_checkpoint(path)`` rebuilds the
    model without the source.

    Args:
        source: model to copy weights from: an ``NAClassifier``, a checkpoint path, or a model
            name for ``zoo_loader``. Default None keeps the fresh initialization, as when
            loading a checkpoint.
        frame_size: ``(H, W)`` of the frames or images the model receives, in pixels. Default
            None: they match the network's ``input_shape``.
        input_adapter: ``"none"`` (default), or ``"pad"``, ``"crop"``, ``"resize"`` to fit the
            input to the network's ``input_shape`` with a :class:`FrameAdapter`.
        channel_init: first-layer weights when the number of input channels changes:
            ``"spread"`` (default), ``"repeat"`` (see :func:`adapt_channels`) or ``"reinit"``.
        reset_head: replace the classifier head even when the number of classes is unchanged.
            Default False.
        freeze_layers: freeze the weights of the first ``freeze_layers`` spiking layers.
            Default 0.
        backbone_lr_factor: learning rate of the backbone relative to ``lr``. Default 0.1.
        head_layers: names of the layers trained at ``lr``, e.g. ``["layers.7"]``. Default
            None: the output layer and every layer that keeps its fresh initialization.
        zoo_loader: callable that resolves a model name in ``source`` to an ``NAClassifier``.
            Default None.
        **kwargs: ``NAClassifier`` arguments of the new network.
    """

    def __init__(
        self,
        source: str | NAClassifier | None = None,
        *,
        frame_size: Sequence[int] | None = None,
        input_adapter: str = "none",
        channel_init: str = "spread",
        reset_head: bool = False,
        freeze_layers: int = 0,
        backbone_lr_factor: float = 0.1,
        head_layers: Sequence[str] | None = None,
        zoo_loader: ZooLoader | None = None,
        **kwargs: Any,
    ) -> None:
        source_model = None if source is None else load_source_model(source, zoo_loader)
        source_name = _describe(source)
        # Lightning collects the hyperparameters from the local variables of this frame. They
        # must not contain the source model, because checkpoints load without it.
        source = zoo_loader = None
        super().__init__(**kwargs)
        if input_adapter not in INPUT_ADAPTERS:
            raise ValueError(f"input_adapter={input_adapter!r} is invalid. Expected one of {INPUT_ADAPTERS}.")
        if channel_init not in CHANNEL_INITS:
            raise ValueError(f"channel_init={channel_init!r} is invalid. Expected one of {CHANNEL_INITS}.")
        if not backbone_lr_factor >= 0:
            raise ValueError(f"backbone_lr_factor must be >= 0, got {backbone_lr_factor!r}")

        self.input_adapter = self._build_adapter(input_adapter, frame_size)
        layer_names = list(self.network.spiking_layers)
        output_layer = layer_names[-1]

        self.transfer_plan: dict[str, str] = {}
        if source_model is not None:
            self._check_same_architecture(source_model)
            self.transfer_plan = plan_transfer(source_model.network, self.network, channel_init, reset_head)
            self._copy_weights(source_model.network, channel_init)
            logger.info("Fine-tuning from %s: %s", source_name, self.transfer_plan)

        if head_layers is None:
            new_layers = [name for name, action in self.transfer_plan.items() if action == "new"]
            head_layers = sorted({*new_layers, output_layer}, key=layer_names.index)
        unknown = [name for name in head_layers if name not in layer_names]
        if unknown:
            raise ValueError(f"head_layers {unknown} are not spiking layers. Expected names among {layer_names}.")

        self._freeze(freeze_layers, layer_names)

        # LightningCLI hands its own arguments to save_hyperparameters, source included.
        hparams = dict(self.hparams)
        hparams.update(source=None, zoo_loader=None, head_layers=list(head_layers))
        self.save_hyperparameters(hparams)

    def _build_adapter(self, mode: str, frame_size: Sequence[int] | None) -> nn.Module:
        network_size = tuple(self.network.input_shape[1:])
        if mode == "none":
            if frame_size is not None and tuple(frame_size) != network_size:
                raise ValueError(
                    f"frame_size={tuple(frame_size)} differs from the network input "
                    f"{network_size} and input_adapter='none'. Pass input_adapter='pad', "
                    "'crop' or 'resize', or build the network for the frame size."
                )
            return nn.Identity()
        adapter = FrameAdapter(mode, network_size)
        if mode == "pad" and frame_size is not None:
            if frame_size[0] > network_size[0] or frame_size[1] > network_size[1]:
                raise ValueError(
                    f"frame_size={tuple(frame_size)} is larger than the network input "
                    f"{network_size}, so input_adapter='pad' cannot fit it. Use 'crop' or 'resize'."
                )
        return adapter

    def _check_same_architecture(self, source: NAClassifier) -> None:
        source_hparams = network_hparams(source)
        for name in _FIXED_HPARAMS:
            source_value = source_hparams[name]
            if source_value != self.hparams[name]:
                raise ValueError(
                    f"{name}={self.hparams[name]!r} differs from the source's {source_value!r}, "
                    f"but fine-tuning keeps the source's {name}. Pass {name}={source_value!r}."
                )

    @torch.no_grad()
    def _copy_weights(self, source: SpikingNetwork, channel_init: str) -> None:
        channels = self.network.input_shape[0]
        for name, action in self.transfer_plan.items():
            target_weight = _layer_weight(self.network.spiking_layers[name])
            source_weight = _layer_weight(source.spiking_layers[name])
            if action == "copy":
                target_weight.copy_(source_weight)
            elif action == "adapt":
                grouped = source_weight
                if source_weight.dim() == 2:
                    grouped = source_weight.unflatten(1, (source.input_shape[0], -1))
                adapted = adapt_channels(grouped, channels, channel_init)
                target_weight.copy_(adapted.reshape(target_weight.shape))
            elif action == "new":
                logger.info(
                    "Layer %s keeps its fresh initialization: source weight %s, new weight %s",
                    name, tuple(source_weight.shape), tuple(target_weight.shape),
                )

    def _freeze(self, count: int, layer_names: list[str]) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < len(layer_names):
            raise ValueError(
                f"freeze_layers={count!r} is invalid. Expected an integer from 0 to "
                f"{len(layer_names) - 1}, because the output layer always trains."
            )
        frozen = layer_names[:count]
        fresh = [name for name in frozen if self.transfer_plan.get(name) == "new"]
        if fresh:
            raise ValueError(
                f"freeze_layers={count} would freeze {fresh}, which keep their fresh "
                "initialization. Freeze fewer layers, or use an input_adapter so that their "
                "weights transfer."
            )
        for name in frozen:
            self.network.spiking_layers[name].requires_grad_(False)

    def forward(self, inputs: Tensor) -> Tensor:
        """Class scores ``[B, num_classes]`` of images ``[B, C, H, W]`` or frames ``[B, T, C, H, W]``."""
        return super().forward(self.input_adapter(inputs))

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        inputs, labels = batch
        return super()._shared_step((self.input_adapter(inputs), labels), stage)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Return the AdamW parameter groups ``"backbone"`` and ``"head"`` (trainable weights only)."""
        head_names = set(self.hparams.head_layers)
        head, backbone = [], []
        assigned = set()
        for name, layer in self.network.spiking_layers.items():
            for parameter in layer.parameters():
                assigned.add(id(parameter))
                if parameter.requires_grad:
                    (head if name in head_names else backbone).append(parameter)
        backbone += [p for p in self.parameters() if p.requires_grad and id(p) not in assigned]

        lr = self.hparams.lr
        groups = []
        if backbone:
            groups.append({"name": "backbone", "params": backbone, "lr": lr * self.hparams.backbone_lr_factor})
        if head:
            groups.append({"name": "head", "params": head, "lr": lr})
        return groups

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameter_groups(),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.hparams.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def finetune_from(
    source: str | os.PathLike[str] | NAClassifier,
    *,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    encoding: str | None = None,
    time_steps: int | None = None,
    input_adapter: str = "none",
    channel_init: str = "spread",
    reset_head: bool = False,
    freeze_layers: int = 0,
    backbone_lr_factor: float = 0.1,
    zoo_loader: ZooLoader | None = None,
    **overrides: Any,
) -> FineTuneClassifier:
    """Build a :class:`FineTuneClassifier` from a trained model and the shape of the new data.

    Every ``NAClassifier`` argument not given here keeps the source's value.

    Args:
        source: an ``NAClassifier``, a Lightning checkpoint path, or a model name for
            ``zoo_loader``.
        num_classes: classes of the new task; None keeps the source's.
        input_shape: ``(C, H, W)`` of the new frames or images; None keeps the source's. With
            ``input_adapter="none"`` the network is built for ``(H, W)``. With another adapter
            the network keeps the source's ``(H, W)``, and the adapter fits the input to it.
        encoding: ``"analog"`` or ``"events"``; None keeps the source's.
        time_steps: simulation steps for analog input; None keeps the source's.
        input_adapter: ``"none"``, ``"pad"``, ``"crop"`` or ``"resize"`` (see :class:`FrameAdapter`).
        channel_init: ``"spread"``, ``"repeat"`` or ``"reinit"`` (see :func:`adapt_channels`).
        reset_head: replace the head even when the number of classes is unchanged.
        freeze_layers: freeze the first ``freeze_layers`` spiking layers.
        backbone_lr_factor: backbone learning rate relative to ``lr``.
        zoo_loader: callable that resolves a model name to an ``NAClassifier``.
        **overrides: other ``NAClassifier`` arguments to change, e.g. ``loss="count"``, ``lr=1e-4``.

    Raises:
        ValueError: an override is not an ``NAClassifier`` argument or changes the architecture.
    """
    unknown = sorted(set(overrides) - set(NETWORK_HPARAMS))
    if unknown:
        raise ValueError(f"{unknown} are not NAClassifier arguments. Expected names among {NETWORK_HPARAMS}.")
    fixed = sorted(set(overrides) & set(_FIXED_HPARAMS))
    if fixed:
        raise ValueError(f"{fixed} cannot change when fine-tuning. Remove them to keep the source's values.")

    model = load_source_model(source, zoo_loader)
    hparams = network_hparams(model)
    source_shape = tuple(hparams["input_shape"])
    frame_shape = source_shape if input_shape is None else tuple(int(size) for size in input_shape)
    if len(frame_shape) != 3:
        raise ValueError(f"input_shape={input_shape!r} is invalid. Expected (channels, height, width).")
    network_shape = frame_shape if input_adapter == "none" else (frame_shape[0], *source_shape[1:])

    hparams.update(overrides)
    hparams["input_shape"] = network_shape
    for name, value in (("num_classes", num_classes), ("encoding", encoding), ("time_steps", time_steps)):
        if value is not None:
            hparams[name] = value

    return FineTuneClassifier(
        model,
        frame_size=frame_shape[1:],
        input_adapter=input_adapter,
        channel_init=channel_init,
        reset_head=reset_head,
        freeze_layers=freeze_layers,
        backbone_lr_factor=backbone_lr_factor,
        **hparams,
    )


def _describe(source: Any) -> str:
    return type(source).__name__ if isinstance(source, nn.Module) else str(source)
