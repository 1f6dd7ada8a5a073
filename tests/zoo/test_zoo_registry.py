"""Registry of the model zoo: listing, lookup, entry validation and lazy reading."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

import na_lightning
from na_lightning import zoo
from na_lightning.zoo import _registry
from na_lightning.zoo._builder import count_parameters
from tests.conftest import REPO_ROOT


def entry_data(entry: zoo.ZooEntry) -> dict:
    return json.loads(json.dumps(entry.to_dict()))


def write_entry(repo, data: dict, file_name: str | None = None) -> None:
    path = repo / "zoo" / (file_name or f"{data['name']}.json")
    path.write_text(json.dumps(data), encoding="utf-8")


def test_list_models_sorted_and_filtered(tiny_entry, repo):
    data = entry_data(tiny_entry)
    for name in ("tiny_cnn.a0", "other_net.t1"):
        write_entry(repo, {**data, "name": name})

    assert zoo.list_models() == ["other_net.t1", "tiny_cnn.a0", "tiny_cnn.t1"]
    assert zoo.list_models("tiny_cnn.*") == ["tiny_cnn.a0", "tiny_cnn.t1"]
    assert zoo.list_models("*.t1") == ["other_net.t1", "tiny_cnn.t1"]
    assert zoo.list_models("nothing*") == []


def test_missing_registry_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ZOO_ENV, str(tmp_path / "absent"))

    assert zoo.list_models() == []
    with pytest.raises(zoo.UnknownModelError, match="contains no models"):
        zoo.model_info("tiny_cnn.t1")


def test_default_registry_is_repository_zoo(monkeypatch):
    monkeypatch.delenv(zoo.ZOO_ENV, raising=False)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(na_lightning.__file__)))

    assert str(zoo.registry_dir()) == os.path.join(package_parent, "zoo")
    assert zoo.registry_dir() == REPO_ROOT / "zoo"


def test_model_info_returns_frozen_entry(tiny_entry):
    entry = zoo.model_info("tiny_cnn.t1")

    assert entry.name == "tiny_cnn.t1"
    assert (entry.architecture, entry.tag, entry.hub_name) == ("tiny_cnn", "t1", "tiny_cnn__t1")
    assert entry.builder["architecture"] == "4C3-P2-16"
    assert entry.builder["input_shape"] == (1, 8, 8)
    assert entry.classes == ("circle", "square", "triangle")
    assert entry.input.mean == (0.5,)
    assert entry.metric().accuracy == 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "other"
    with pytest.raises(TypeError):
        entry.builder["num_classes"] = 4


def test_entry_round_trips_through_json(tiny_entry):
    data = entry_data(tiny_entry)
    again = zoo.model_info("tiny_cnn.t1")

    assert entry_data(again) == data
    assert list(data) == ["name", "dataset", "builder", "input", "classes", "weights", "metrics",
                          "num_params", "recipe", "license"]


def test_typo_suggests_closest_names(tiny_entry):
    with pytest.raises(zoo.UnknownModelError) as excinfo:
        zoo.get_model("tiny_cnn.t2")

    message = str(excinfo.value)
    assert "Unknown model 'tiny_cnn.t2'" in message
    assert "Did you mean 'tiny_cnn.t1'?" in message


def test_architecture_alone_suggests_its_tags(tiny_entry):
    with pytest.raises(zoo.UnknownModelError, match=r"Did you mean 'tiny_cnn.t1'"):
        zoo.model_info("tiny_cnn")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda data: data.update(color="blue"), r"entry has unknown keys \['color'\]"),
        (lambda data: data["weights"].update(md5="0" * 32), r"weights has unknown keys \['md5'\]"),
        (lambda data: data["metrics"][0].update(top5=0.9), r"metrics\[0\] has unknown keys \['top5'\]"),
        (lambda data: data["recipe"].update(gpus=8), r"recipe has unknown keys \['gpus'\]"),
        (lambda data: data["input"].update(sensor_size=[8, 8, 2]), r"input has unknown keys \['sensor_size'\]"),
        (lambda data: data["builder"].update(dropout=0.1), r"builder has unknown keys \['dropout'\]"),
        (lambda data: data.pop("license"), r"missing the required keys \['license'\]"),
        (lambda data: data["builder"].pop("tau_m"), r"builder is missing the required keys \['tau_m'\]"),
        (lambda data: data["weights"].update(sha256="abc"), "weights.sha256 must be 64 lowercase hex digits"),
        (lambda data: data["weights"].update(file="/etc/x.safetensors"), "weights.file must be a relative path"),
        (lambda data: data["metrics"][0].update(accuracy=98.5), r"accuracy must be a fraction in 0\.\.1"),
        (lambda data: data["metrics"][0].update(date="31.01.2025"), "must be an ISO date"),
        (lambda data: data.update(classes=["a", "b"]), "builder.num_classes is 3 but the number of classes is 2"),
        (lambda data: data["input"].update(shape=[1, 9, 9]), r"builder.input_shape is \(1, 8, 8\) but input.shape"),
        (lambda data: data["input"].update(std=[0.0]), "input.std must be > 0"),
        (lambda data: data["builder"].update(architecture="4X3"), "NAClassifier rejects the builder"),
    ],
)
def test_invalid_entry_rejected(tiny_entry, repo, change, expected):
    data = entry_data(tiny_entry)
    change(data)
    write_entry(repo, data)

    with pytest.raises(zoo.InvalidEntryError, match=expected) as excinfo:
        zoo.list_models()
    assert "tiny_cnn.t1.json" in str(excinfo.value)


def test_num_params_must_match_rebuilt_network(tiny_entry, repo):
    data = entry_data(tiny_entry)
    counted = count_parameters(dict(tiny_entry.builder))
    data["num_params"] = counted + 1
    write_entry(repo, data)

    with pytest.raises(zoo.InvalidEntryError) as excinfo:
        zoo.model_info("tiny_cnn.t1")
    assert f"num_params is {counted + 1}" in str(excinfo.value)
    assert f"has {counted} parameters" in str(excinfo.value)


def test_num_params_recount(tiny_entry, tiny_model):
    assert tiny_entry.num_params == sum(parameter.numel() for parameter in tiny_model.parameters())
    assert tiny_entry.num_params == count_parameters(dict(tiny_entry.builder))


def test_bad_name_and_file_name_rejected(tiny_entry, repo):
    data = entry_data(tiny_entry)
    (repo / "zoo" / "tiny_cnn.t1.json").unlink()
    write_entry(repo, {**data, "name": "Tiny-CNN"}, "Tiny-CNN.json")

    with pytest.raises(zoo.InvalidEntryError, match="Invalid model name 'Tiny-CNN'"):
        zoo.list_models()

    (repo / "zoo" / "Tiny-CNN.json").unlink()
    write_entry(repo, data, "tiny_cnn.t9.json")
    with pytest.raises(zoo.InvalidEntryError, match="rename the file to tiny_cnn.t1.json"):
        zoo.list_models()


def test_invalid_json_names_file(repo):
    (repo / "zoo" / "broken.t1.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(zoo.InvalidEntryError, match=r"broken\.t1\.json: not valid UTF-8 JSON"):
        zoo.list_models()


def test_edited_entry_read_again(tiny_entry, repo):
    assert zoo.model_info("tiny_cnn.t1").notes == ""
    data = entry_data(tiny_entry)
    data["notes"] = "retrained"
    path = repo / "zoo" / "tiny_cnn.t1.json"
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")

    assert zoo.model_info("tiny_cnn.t1").notes == "retrained"


def test_import_reads_no_registry_file(tiny_entry, repo):
    script = textwrap.dedent(
        """
        import json, os, sys
        watched = (os.environ["NA_LIGHTNING_ZOO"], os.path.dirname(os.environ["NA_LIGHTNING_ZOO"]) + "/checkpoints")
        events = []
        def hook(event, args):
            if event in ("open", "os.scandir", "os.listdir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
                path = os.fsdecode(args[0])
                if path.startswith(watched):
                    events.append((event, path))
        sys.addaudithook(hook)
        import na_lightning
        import na_lightning.zoo
        from na_lightning.zoo import _registry
        during_import = list(events)
        cache_after_import = _registry.cache_size()
        names = na_lightning.zoo.list_models()
        print(json.dumps({"during_import": during_import, "cache": cache_after_import,
                          "names": names, "after_list": len(events)}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["during_import"] == []
    assert report["cache"] == 0
    assert report["names"] == ["tiny_cnn.t1"]
    assert report["after_list"] > 0


def test_cache_filled_on_first_lookup(tiny_entry):
    _registry.clear_cache()
    assert _registry.cache_size() == 0

    zoo.list_models()

    assert _registry.cache_size() == 1
