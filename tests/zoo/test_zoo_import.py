"""Registering checkpoints: Lightning and DDP state dicts, validation and atomic writes."""

from __future__ import annotations

import collections
import hashlib
import json

import pytest
import safetensors.torch
import torch

from na_lightning import zoo
from na_lightning.zoo import _import

from tests.zoo.zoo_helpers import MNIST_BUILDER, TINY_BUILDER, lightning_checkpoint, make_classifier


def test_import_writes_weights_and_entry(tiny_entry, tiny_model, repo):
    weights = repo / "checkpoints" / "tiny_cnn.t1.safetensors"
    entry_file = repo / "zoo" / "tiny_cnn.t1.json"

    assert tiny_entry.weights.file == "checkpoints/tiny_cnn.t1.safetensors"
    assert tiny_entry.weights.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert tiny_entry.weights.num_bytes == weights.stat().st_size
    assert tiny_entry.num_params == sum(parameter.numel() for parameter in tiny_model.parameters())
    assert tiny_entry.recipe.epochs == 3
    assert tiny_entry.recipe.config == "configs/tiny.yaml"
    assert tiny_entry.recipe.hardware is None
    assert json.loads(entry_file.read_text(encoding="utf-8"))["name"] == "tiny_cnn.t1"
    assert list((repo / "checkpoints").iterdir()) == [weights]


def test_import_stores_network_tensors(tiny_entry, tiny_model, repo):
    tensors = safetensors.torch.load_file(str(repo / tiny_entry.weights.file))

    assert set(tensors) == set(tiny_model.network.state_dict())
    for key, value in tiny_model.network.state_dict().items():
        assert torch.equal(tensors[key], value)


def test_import_writes_full_builder(tiny_entry):
    builder = tiny_entry.builder

    assert builder["architecture"] == "4C3-P2-16"
    assert builder["kernel"] == "eager"
    assert builder["conv_weight_scale"] == 3.0
    assert builder["lr"] == 5e-4
    assert "_instantiator" not in builder


def test_import_keeps_caller_metrics(tiny_entry):
    assert len(tiny_entry.metrics) == 1
    assert tiny_entry.metrics[0].accuracy == 0.5
    assert tiny_entry.metrics[0].command == "na-lightning zoo eval tiny_cnn.t1"


@pytest.mark.parametrize(
    "prefix", ["module.network.", "module.model.", "_orig_mod.network.", "module.module.network."]
)
def test_import_strips_wrapper_prefixes(tmp_path, tiny_model, import_tiny, prefix):
    state = collections.OrderedDict(
        (f"{prefix}{key}", value) for key, value in tiny_model.network.state_dict().items()
    )
    path = tmp_path / "ddp.pt"
    torch.save(state, path)

    entry = import_tiny(path, builder=TINY_BUILDER, recipe={"epochs": 7})
    model = zoo.get_model(entry.name)

    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2
    assert entry.recipe.epochs == 7
    assert torch.equal(model(images), tiny_model(images))


def test_import_drops_tensors_outside_network(tmp_path, tiny_model, import_tiny, caplog):
    contents = lightning_checkpoint(tiny_model)
    contents["state_dict"]["loss_fn.target"] = torch.ones(4)
    path = tmp_path / "extra.ckpt"
    torch.save(contents, path)

    entry = import_tiny(path)

    tensors = safetensors.torch.load_file(str(zoo.registry_dir().parent / entry.weights.file))
    assert "loss_fn.target" not in tensors
    assert "target" not in tensors
    assert "Dropping checkpoint tensors outside the network: ['loss_fn.target']" in caplog.text


def test_import_reports_missing_and_unexpected(tmp_path, import_tiny):
    other = make_classifier({**TINY_BUILDER, "architecture": "4C3-P2-8-16"})
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": other.state_dict()}, path)

    with pytest.raises(zoo.StateDictMismatchError) as excinfo:
        import_tiny(path, builder=TINY_BUILDER, recipe={"epochs": 1})

    message = str(excinfo.value)
    assert "unexpected keys ['layers.4.linear.weight']" in message
    assert "wrong shapes: layers.2.linear.weight (8, 36) instead of (16, 36)" in message
    assert list(zoo.registry_dir().iterdir()) == []


def test_import_refuses_to_overwrite(tiny_entry, tiny_checkpoint, import_tiny, repo):
    before = (repo / "zoo" / "tiny_cnn.t1.json").read_bytes()

    with pytest.raises(zoo.ZooError, match="already registered"):
        import_tiny(tiny_checkpoint)
    assert (repo / "zoo" / "tiny_cnn.t1.json").read_bytes() == before

    entry = import_tiny(tiny_checkpoint, notes="second import", overwrite=True)
    assert entry.notes == "second import"


def test_interrupted_write_keeps_old_weights(tiny_entry, tiny_checkpoint, import_tiny, repo, monkeypatch):
    weights = repo / tiny_entry.weights.file
    before = weights.read_bytes()

    def interrupted_save(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted_save)

    with pytest.raises(KeyboardInterrupt):
        import_tiny(tiny_checkpoint, overwrite=True)

    assert weights.read_bytes() == before
    assert sorted(path.name for path in weights.parent.iterdir()) == ["tiny_cnn.t1.safetensors"]
    assert zoo.get_model("tiny_cnn.t1").zoo_entry.weights.sha256 == tiny_entry.weights.sha256


def test_invalid_entry_writes_nothing(tiny_checkpoint, import_tiny, repo):
    with pytest.raises(zoo.InvalidEntryError, match=r"metrics\[0\].accuracy must be a fraction"):
        import_tiny(tiny_checkpoint, metrics=[{
            "dataset": "shapes", "split": "test", "num_samples": 10, "accuracy": 97.0,
            "date": "2025-01-31", "command": "x",
        }])

    assert list((repo / "zoo").iterdir()) == []
    assert list((repo / "checkpoints").iterdir()) == []


class CallbackState:
    """A class that weights_only unpickling does not allow."""


def test_import_rejects_pickled_objects(tmp_path, import_tiny):
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "callback": CallbackState()}, path)

    with pytest.raises(zoo.ZooError, match="weights_only loading rejects"):
        import_tiny(path)


def test_import_rejects_truncated_checkpoint(tmp_path, tiny_checkpoint, import_tiny):
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(tiny_checkpoint.read_bytes()[:200])

    with pytest.raises(zoo.ZooError, match="Cannot read checkpoint .*truncated.ckpt.* may be truncated"):
        import_tiny(path)


def test_import_rejects_missing_and_folder_paths(tmp_path, import_tiny):
    with pytest.raises(FileNotFoundError, match="not found"):
        import_tiny(tmp_path / "absent.ckpt")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        import_tiny(tmp_path)


def test_import_reads_dataset_from_datamodule(repo, tmp_path):
    model = make_classifier(MNIST_BUILDER)
    path = tmp_path / "mnist.ckpt"
    torch.save(lightning_checkpoint(model, datamodule="na_lightning.data.MNISTDataModule"), path)

    entry = zoo.import_checkpoint(path, "small_cnn_mnist.t2")

    assert entry.dataset == "mnist"
    assert entry.classes == tuple("0123456789")
    assert entry.input.mean == (0.1307,)
    assert entry.input.std == (0.3081,)
    assert entry.license == "CC-BY-SA-3.0"
    assert entry.metrics == ()


def test_import_needs_dataset_when_unknown(tiny_checkpoint, repo):
    with pytest.raises(zoo.ZooError, match="Pass dataset="):
        zoo.import_checkpoint(tiny_checkpoint, "tiny_cnn.t3")


def test_record_metric_replaces_same_split(tiny_entry):
    metric = zoo.Metric("shapes", "test", 200, 0.75, "2025-03-01", "na-lightning zoo eval tiny_cnn.t1")
    validation = {"dataset": "shapes", "split": "val", "num_samples": 50, "accuracy": 0.8,
                  "date": "2025-03-01", "command": "x"}

    zoo.record_metric("tiny_cnn.t1", metric)
    entry = zoo.record_metric("tiny_cnn.t1", validation)

    assert [(item.split, item.accuracy) for item in entry.metrics] == [("test", 0.75), ("val", 0.8)]
    assert zoo.model_info("tiny_cnn.t1").metric(split="test").num_samples == 200


def test_network_state_keeps_plain_keys():
    weight = torch.zeros(2)

    assert _import.network_state({"layers.0.conv.weight": weight}) == {"layers.0.conv.weight": weight}
    assert _import.network_state({"module.network.layers.0.conv.weight": weight}) == {"layers.0.conv.weight": weight}
