"""torch.hub entrypoints: one per registered model of this repository's ``zoo/`` folder.

torch.hub entrypoints must be Python identifiers, so an entrypoint is the model name with the
dot replaced by two underscores: model ``spiking_cnn_mnist.na_t5`` is entrypoint
``spiking_cnn_mnist__na_t5``::

    model = torch.hub.load("path/to/na-lightning", "spiking_cnn_mnist__na_t5", source="local")

``torch.hub.list`` and ``torch.hub.help`` read GitHub repositories only (torch 2.x); for a local
clone, ``na-lightning zoo list`` lists the models.

Each entrypoint takes the arguments of :func:`na_lightning.zoo.get_model` after the name
(``pretrained=True``, ``progress``, NAClassifier overrides) and reads the registry in the
``zoo/`` folder beside this file, regardless of ``$NA_LIGHTNING_ZOO``. Entrypoints are created
on attribute access, so this file lists no model by hand.
"""

# Imports carry a leading underscore because torch.hub.list() reports every public callable.
from pathlib import Path as _Path

from na_lightning.zoo import get_model as _get_model
from na_lightning.zoo import hub_name as _hub_name
from na_lightning.zoo import list_models as _list_models
from na_lightning.zoo import model_info as _model_info

dependencies = ["torch", "torchvision", "pytorch_lightning", "safetensors"]

_ZOO_DIR = _Path(__file__).resolve().parent / "zoo"


def _entrypoint_names() -> dict[str, str]:
    """Return the model names of the registry by entrypoint name."""
    return {_hub_name(name): name for name in _list_models(zoo_dir=_ZOO_DIR)}


def _make_entrypoint(name: str):
    entry = _model_info(name, zoo_dir=_ZOO_DIR)

    def entrypoint(pretrained: bool = True, **kwargs):
        return _get_model(name, pretrained, zoo_dir=_ZOO_DIR, **kwargs)

    metric = entry.metric()
    accuracy = "no recorded test accuracy" if metric is None else (
        f"{100 * metric.accuracy:.2f} % {metric.dataset} {metric.split} accuracy on "
        f"{metric.num_samples} samples"
    )
    weights = "registered without trained weights" if entry.weights is None else entry.weights.file
    entrypoint.__name__ = entrypoint.__qualname__ = _hub_name(name)
    entrypoint.__doc__ = (
        f"Zoo model {name}: {entry.builder['architecture']} on {entry.dataset}, {accuracy}.\n\n"
        f"Weights: {weights}. Arguments are those of na_lightning.zoo.get_model after the name: "
        "pretrained=True, progress=False and NAClassifier overrides."
    )
    return entrypoint


def __getattr__(attribute: str):
    names = _entrypoint_names()
    if attribute in names:
        return _make_entrypoint(names[attribute])
    raise AttributeError(
        f"hubconf has no entrypoint {attribute!r}; the entrypoints are {sorted(names)} "
        "(model names with '.' replaced by '__')."
    )


def __dir__() -> list[str]:
    return sorted({*globals(), *_entrypoint_names()})
