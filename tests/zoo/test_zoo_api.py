"""Loading zoo models: outputs, transforms, weights integrity, downloads and torch.hub."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from na_lightning import zoo
from na_lightning.lightning.classifier import NAClassifier
from tests.conftest import REPO_ROOT


def sample_images(count: int = 5) -> torch.Tensor:
    return torch.randn(count, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2


def rewrite_entry(repo, name: str, change) -> None:
    path = repo / "zoo" / f"{name}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_loaded_model_matches_original(tiny_entry, tiny_model):
    model = zoo.get_model("tiny_cnn.t1")
    images = sample_images()

    with torch.no_grad():
        expected = tiny_model(images)
        scores = model(images)

    assert isinstance(model, NAClassifier)
    assert scores.shape == (5, 3)
    assert torch.equal(scores, expected)
    assert expected.abs().sum() > 0


def test_loaded_model_in_eval_mode(tiny_entry):
    model = zoo.get_model("tiny_cnn.t1")

    assert model.training is False
    assert all(not module.training for module in model.modules())


def test_entry_and_transforms_attached(tiny_entry):
    model = zoo.get_model("tiny_cnn.t1")

    assert model.zoo_entry == tiny_entry
    assert callable(model.transforms)
    module_names = [name for name, _ in model.named_modules()]
    assert not any(name.startswith("transforms") for name in module_names)
    assert set(model.state_dict()) == {f"network.{key}" for key in model.network.state_dict()}


def test_transforms_normalize_tensor_and_pil(tiny_entry):
    model = zoo.get_model("tiny_cnn.t1")
    pixels = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8) * 4
    expected = (pixels.float() / 255 - 0.5) / 0.25

    from_tensor = model.transforms(pixels)
    from_pil = model.transforms(Image.fromarray(pixels[0].numpy(), mode="L"))

    assert type(from_tensor) is torch.Tensor
    assert from_tensor.dtype == torch.float32
    assert torch.allclose(from_tensor, expected, atol=1e-6)
    assert torch.allclose(from_pil, expected, atol=1e-6)


def test_transforms_resize_and_convert_color(tiny_entry):
    model = zoo.get_model("tiny_cnn.t1")
    rgb = Image.fromarray(np.full((32, 32, 3), 255, dtype=np.uint8), mode="RGB")

    image = model.transforms(rgb)

    assert image.shape == (1, 8, 8)
    # torchvision's uint8 grayscale rounds white down to 254, one level: 1 / 255 / 0.25 = 0.016.
    assert torch.allclose(image, torch.full((1, 8, 8), (1.0 - 0.5) / 0.25), atol=0.02)
    assert model(image.unsqueeze(0)).shape == (1, 3)


def test_model_without_weights(tiny_entry, repo):
    data = tiny_entry.to_dict()
    data.update(name="tiny_cnn.untrained", weights=None, metrics=[])
    (repo / "zoo" / "tiny_cnn.untrained.json").write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(zoo.NoWeightsError) as excinfo:
        zoo.get_model("tiny_cnn.untrained")
    assert "tiny_cnn.untrained has no trained weights yet" in str(excinfo.value)
    assert "pretrained=False" in str(excinfo.value)

    model = zoo.get_model("tiny_cnn.untrained", pretrained=False)
    assert model.training is False
    assert model(sample_images(2)).shape == (2, 3)


def test_event_model_transforms_placeholder(tiny_entry, repo, tmp_path):
    data = tiny_entry.to_dict()
    data["builder"].update(encoding="events", input_shape=[2, 8, 8])
    data.update(
        name="tiny_cnn.events",
        weights=None,
        metrics=[],
        input={"shape": [2, 8, 8], "encoding": "events", "sensor_size": [8, 8, 2], "time_bin_us": 1000.0},
        num_params=tiny_entry.num_params + 4 * 9,
    )
    (repo / "zoo" / "tiny_cnn.events.json").write_text(json.dumps(data), encoding="utf-8")

    model = zoo.get_model("tiny_cnn.events", pretrained=False)

    assert model.zoo_entry.input.sensor_size == (8, 8, 2)
    assert model(torch.rand(2, 6, 2, 8, 8)).shape == (2, 3)
    with pytest.raises(NotImplementedError, match="frames of 1000.0 microseconds"):
        model.transforms(np.zeros(3))
    with pytest.raises(zoo.ZooError, match="not supported yet for event model tiny_cnn.events"):
        zoo.predict_files(model, [tmp_path / "events.bin"])


def test_overrides_change_builder(tiny_entry, tiny_model):
    model = zoo.get_model("tiny_cnn.t1", time_steps=6)

    assert model.hparams.time_steps == 6
    assert torch.equal(model.network.layers[0].conv.weight, tiny_model.network.layers[0].conv.weight)
    with pytest.raises(zoo.InvalidEntryError, match=r"unknown overrides \['time_step'\]"):
        zoo.get_model("tiny_cnn.t1", time_step=6)


def test_num_classes_override_keeps_hidden_layers(tiny_entry, tiny_model):
    model = zoo.get_model("tiny_cnn.t1", num_classes=5)

    assert model(sample_images(2)).shape == (2, 5)
    assert torch.equal(model.network.layers[0].conv.weight, tiny_model.network.layers[0].conv.weight)
    assert torch.equal(model.network.layers[2].linear.weight, tiny_model.network.layers[2].linear.weight)
    assert model.network.layers[3].linear.weight.shape == (5, 16)


def test_weights_load_without_unpickling(tiny_entry, monkeypatch):
    def reject_torch_load(*args, **kwargs):
        raise AssertionError("torch.load must not read zoo weights")

    monkeypatch.setattr(torch, "load", reject_torch_load)

    model = zoo.get_model("tiny_cnn.t1")
    assert model(sample_images(1)).shape == (1, 3)


def test_sha_mismatch_names_file_and_hashes(tiny_entry, repo):
    path = repo / tiny_entry.weights.file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()

    with pytest.raises(zoo.WeightsIntegrityError) as excinfo:
        zoo.get_model("tiny_cnn.t1")

    message = str(excinfo.value)
    assert str(path) in message
    assert "has the registered size but different contents" in message
    assert f"expected {tiny_entry.weights.sha256}" in message
    assert f"sha256 {actual}" in message
    assert "git checkout -- checkpoints/tiny_cnn.t1.safetensors" in message


def test_truncated_file_names_sizes_and_hashes(tiny_entry, repo):
    path = repo / tiny_entry.weights.file
    data = path.read_bytes()
    path.write_bytes(data[:100])

    with pytest.raises(zoo.WeightsIntegrityError) as excinfo:
        zoo.get_model("tiny_cnn.t1")

    message = str(excinfo.value)
    assert f"is truncated (100 of {len(data)} bytes)" in message
    assert hashlib.sha256(data[:100]).hexdigest() in message
    assert tiny_entry.weights.sha256 in message
    assert "git checkout -- checkpoints/tiny_cnn.t1.safetensors" in message


def test_missing_weights_file(tiny_entry, repo):
    (repo / tiny_entry.weights.file).unlink()

    with pytest.raises(zoo.WeightsNotFoundError) as excinfo:
        zoo.get_model("tiny_cnn.t1")
    assert "not found, and the entry has no url" in str(excinfo.value)
    assert "git checkout -- checkpoints/tiny_cnn.t1.safetensors" in str(excinfo.value)


def test_state_dict_mismatch_names_keys(tiny_entry, repo):
    path = repo / tiny_entry.weights.file
    tensors = safetensors.torch.load_file(str(path))
    tensors["layers.9.linear.weight"] = tensors.pop("layers.3.linear.weight")
    safetensors.torch.save_file(tensors, str(path))
    data = path.read_bytes()

    def register_new_file(entry):
        entry["weights"].update(sha256=hashlib.sha256(data).hexdigest(), num_bytes=len(data))

    rewrite_entry(repo, "tiny_cnn.t1", register_new_file)

    with pytest.raises(zoo.StateDictMismatchError) as excinfo:
        zoo.get_model("tiny_cnn.t1")
    message = str(excinfo.value)
    assert "missing keys ['layers.3.linear.weight']" in message
    assert "unexpected keys ['layers.9.linear.weight']" in message


def test_download_from_url(tiny_entry, repo, tmp_path, monkeypatch, tiny_model):
    served = tmp_path / "served.safetensors"
    shutil.move(repo / tiny_entry.weights.file, served)
    rewrite_entry(repo, "tiny_cnn.t1", lambda data: data["weights"].update(url="https://example.org/tiny.safetensors"))
    calls = []

    def fake_download(url, destination, hash_prefix=None, progress=True):
        calls.append((url, destination))
        shutil.copyfile(served, destination)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)

    first = zoo.get_model("tiny_cnn.t1")
    second = zoo.get_model("tiny_cnn.t1")

    cached = tmp_path / "cache" / "checkpoints" / "tiny_cnn.t1.safetensors"
    assert calls == [("https://example.org/tiny.safetensors", str(cached))]
    assert cached.read_bytes() == served.read_bytes()
    images = sample_images(3)
    assert torch.equal(first(images), tiny_model(images))
    assert torch.equal(second(images), tiny_model(images))


def test_corrupt_download_deleted(tiny_entry, repo, tmp_path, monkeypatch):
    (repo / tiny_entry.weights.file).unlink()
    rewrite_entry(repo, "tiny_cnn.t1", lambda data: data["weights"].update(url="https://example.org/tiny.safetensors"))

    def fake_download(url, destination, hash_prefix=None, progress=True):
        with open(destination, "wb") as file:
            file.write(b"\0" * 64)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)

    with pytest.raises(zoo.WeightsIntegrityError, match="The downloaded file was deleted"):
        zoo.get_model("tiny_cnn.t1")
    assert not (tmp_path / "cache" / "checkpoints" / "tiny_cnn.t1.safetensors").exists()


def test_corrupt_cached_download_says_delete(tiny_entry, repo, tmp_path):
    (repo / tiny_entry.weights.file).unlink()
    rewrite_entry(repo, "tiny_cnn.t1", lambda data: data["weights"].update(url="https://example.org/tiny.safetensors"))
    cached = tmp_path / "cache" / "checkpoints" / "tiny_cnn.t1.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"partial")

    with pytest.raises(zoo.WeightsIntegrityError) as excinfo:
        zoo.get_model("tiny_cnn.t1")
    assert f"Delete {cached} and load the model again" in str(excinfo.value)


def test_failed_download_reported(tiny_entry, repo, monkeypatch):
    (repo / tiny_entry.weights.file).unlink()
    rewrite_entry(repo, "tiny_cnn.t1", lambda data: data["weights"].update(url="https://example.org/tiny.safetensors"))

    def offline(url, destination, hash_prefix=None, progress=True):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)

    with pytest.raises(zoo.WeightsNotFoundError, match="from https://example.org/tiny.safetensors .* failed: Network is unreachable"):
        zoo.get_model("tiny_cnn.t1")


def test_hub_load_local(tiny_entry, repo, tiny_model, monkeypatch):
    shutil.copyfile(REPO_ROOT / "hubconf.py", repo / "hubconf.py")
    monkeypatch.delenv(zoo.ZOO_ENV)

    model = torch.hub.load(str(repo), "tiny_cnn__t1", source="local", trust_repo=True, verbose=False)

    images = sample_images(2)
    assert model.zoo_entry.name == "tiny_cnn.t1"
    assert model.training is False
    assert torch.equal(model(images), tiny_model(images))

    untrained = torch.hub.load(str(repo), "tiny_cnn__t1", pretrained=False, time_steps=2, source="local")
    assert untrained.hparams.time_steps == 2
    with pytest.raises(RuntimeError, match="Cannot find callable tiny_cnn__t2"):
        torch.hub.load(str(repo), "tiny_cnn__t2", source="local")
