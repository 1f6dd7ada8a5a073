"""Model zoo: registered NA-trained spiking networks with verified weights, loaded by name.

>>> from na_lightning import zoo
>>> zoo.list_models("*mnist*")  # doctest: +SKIP
['spiking_cnn_mnist.na_t5_e5', 'spiking_cnn_nmnist.na_t30_subset1k']
>>> model = zoo.get_model("spiking_cnn_mnist.na_t5_e5")  # doctest: +SKIP
>>> scores = model(model.transforms(image).unsqueeze(0))  # doctest: +SKIP

The registry is a folder of JSON entry files (``zoo/`` in the repository, or
``$NA_LIGHTNING_ZOO``); importing this package reads none of them.
"""

from na_lightning.zoo._api import get_model, list_models, model_info
from na_lightning.zoo._datasets import DATASETS, DatasetSpec
from na_lightning.zoo._entry import InputSpec, Metric, Recipe, WeightsSpec, ZooEntry, hub_name
from na_lightning.zoo._errors import (
    InvalidEntryError,
    NoWeightsError,
    StateDictMismatchError,
    UnknownModelError,
    WeightsIntegrityError,
    WeightsNotFoundError,
    ZooError,
)
from na_lightning.zoo._eval import DEFAULT_TOLERANCE, EvalResult, evaluate
from na_lightning.zoo._import import import_checkpoint, record_metric
from na_lightning.zoo._predict import InputFileError, Prediction, predict_files
from na_lightning.zoo._registry import ZOO_ENV, registry_dir
from na_lightning.zoo._weights import CACHE_ENV, checkpoint_cache_dir

__all__ = [
    "CACHE_ENV",
    "DATASETS",
    "DEFAULT_TOLERANCE",
    "DatasetSpec",
    "EvalResult",
    "InputFileError",
    "InputSpec",
    "InvalidEntryError",
    "Metric",
    "NoWeightsError",
    "Prediction",
    "Recipe",
    "StateDictMismatchError",
    "UnknownModelError",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "WeightsSpec",
    "ZOO_ENV",
    "ZooEntry",
    "ZooError",
    "checkpoint_cache_dir",
    "evaluate",
    "get_model",
    "hub_name",
    "import_checkpoint",
    "list_models",
    "model_info",
    "predict_files",
    "record_metric",
    "registry_dir",
]
