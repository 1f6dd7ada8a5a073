"""Public functions to list, describe and load zoo models by name."""

from __future__ import annotations

import logging
from typing import Any

from na_lightning.lightning.classifier import NAClassifier
from na_lightning.zoo._builder import BUILDER_PARAMETERS, build_classifier
from na_lightning.zoo._entry import ZooEntry
from na_lightning.zoo._errors import InvalidEntryError, ZooError
from na_lightning.zoo._registry import PathLike, find_entry, list_names
from na_lightning.zoo._transforms import build_transforms
from na_lightning.zoo._weights import load_network_state, load_weights, no_weights_error

logger = logging.getLogger(__name__)


def list_models(pattern: str = "*", *, zoo_dir: PathLike | None = None) -> list[str]:
    """Return the sorted names of the registered models that match ``pattern``.

    Args:
        pattern: shell-style pattern (:func:`fnmatch.fnmatchcase`), e.g. ``"*mnist*"``.
        zoo_dir: registry folder; None for ``$NA_LIGHTNING_ZOO`` or ``<repo>/zoo``.

    Example:
        >>> list_models("*mnist*")  # doctest: +SKIP
        ['spiking_cnn_mnist.na_t5_e5', 'spiking_cnn_nmnist.na_t30_subset1k']
    """
    return list_names(pattern, zoo_dir)


def model_info(name: str, *, zoo_dir: PathLike | None = None) -> ZooEntry:
    """Return the registry entry of ``name`` as a frozen :class:`ZooEntry`.

    Raises:
        UnknownModelError: ``name`` is not registered; the message suggests close names.
    """
    return find_entry(name, zoo_dir)


def get_model(
    name: str,
    pretrained: bool = True,
    *,
    zoo_dir: PathLike | None = None,
    progress: bool = False,
    **overrides: Any,
) -> NAClassifier:
    """Build a registered model, load its verified weights and put it in eval mode.

    ``model(x)`` takes normalized images ``[B, C, H, W]`` (analog models) or event frames
    ``[B, T, C, H, W]`` (event models) and returns class scores ``[B, num_classes]``: the
    output PSC summed over time, not probabilities. ``model.transforms`` turns one raw image into
    the normalized input ``[C, H, W]`` (see :func:`image_transforms`), and ``model.zoo_entry``
    is the registry entry.

    Args:
        name: registered model name, ``architecture.tag``.
        pretrained: load the registered weights; False keeps the random initialization.
        zoo_dir: registry folder; None for ``$NA_LIGHTNING_ZOO`` or ``<repo>/zoo``.
        progress: show a progress bar when the weights are downloaded.
        **overrides: NAClassifier arguments that replace the entry's builder values, e.g.
            ``time_steps=8`` or ``kernel="eager"``. A different ``num_classes`` keeps the output
            layer at its random initialization and loads all other layers.

    Raises:
        UnknownModelError: ``name`` is not registered.
        NoWeightsError: ``pretrained`` is True and the model has no trained weights yet.
        WeightsNotFoundError, WeightsIntegrityError: the weights file is missing, could not be
            downloaded, is truncated or has another sha256 than registered.
        StateDictMismatchError: the weights do not fit the network (names missing, unexpected
            or of another shape), e.g. after an override that changes layer sizes.
    """
    entry = find_entry(name, zoo_dir)
    builder = _builder_with_overrides(entry, overrides)
    if pretrained and entry.weights is None:
        raise no_weights_error(entry)

    model = build_classifier(builder)
    if pretrained:
        state = load_weights(entry, zoo_dir, progress)
        skip = ()
        if builder["num_classes"] != entry.builder["num_classes"]:
            skip = (_output_layer_prefix(model),)
            logger.warning(
                "Model %s: num_classes=%d differs from the registered %d, so the output layer "
                "(%s*) keeps its random initialization",
                entry.name, builder["num_classes"], entry.builder["num_classes"], skip[0],
            )
        load_network_state(model.network, state, f"the weights of {entry.name}", skip_prefixes=skip)

    model.eval()
    # The transforms run on raw CPU images before the model, so they are a plain attribute and
    # not a submodule that .to(device) would move or state_dict() would list.
    object.__setattr__(model, "transforms", build_transforms(entry))
    object.__setattr__(model, "zoo_entry", entry)
    return model


def zoo_entry_of(model: NAClassifier) -> ZooEntry:
    """Return ``model.zoo_entry``, set by :func:`get_model`.

    Raises:
        ZooError: the model was not built by :func:`get_model`.
    """
    entry = getattr(model, "zoo_entry", None)
    if not isinstance(entry, ZooEntry):
        raise ZooError(
            f"Expected a model from na_lightning.zoo.get_model, which sets model.zoo_entry; got a "
            f"{type(model).__name__} without one. Pass the model name instead."
        )
    return entry


def _builder_with_overrides(entry: ZooEntry, overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(key for key in overrides if key not in BUILDER_PARAMETERS)
    if unknown:
        raise InvalidEntryError(
            f"get_model({entry.name!r}) got unknown overrides {unknown}; the valid overrides are "
            f"the NAClassifier arguments {sorted(BUILDER_PARAMETERS)}."
        )
    return {**entry.builder, **overrides}


def _output_layer_prefix(model: NAClassifier) -> str:
    """Return the state-dict prefix of the classifier layer, e.g. ``"layers.5."``."""
    return f"layers.{len(model.network.layers) - 1}."
