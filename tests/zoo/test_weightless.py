"""Zoo entries registered without weights (the CIFAR-10 networks), and RGB models in the zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from na_lightning import zoo
from na_lightning.data import CIFAR10DataModule
from na_lightning.models import preset_hparams
from na_lightning.zoo._builder import BUILDER_DEFAULTS, count_parameters
from na_lightning.zoo.cli import main
from tests.conftest import REPO_ROOT
from tests.zoo.zoo_helpers import lightning_checkpoint, make_classifier

ZOO_DIR = REPO_ROOT / "zoo"
WEIGHTLESS = {
    "alexnet_cifar10.na_t5": ("alexnet_cifar10", "configs/cifar10_alexnet.yaml"),
    "cifarnet_cifar10.stbp_t5": ("cifarnet_cifar10", "configs/cifar10_cifarnet.yaml"),
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
STD = torch.tensor([0.2470, 0.2435, 0.2616])
RGB_BUILDER = {
    "architecture": "4C3-P2-16",
    "num_classes": 10,
    "input_shape": (3, 32, 32),
    "padding": 1,
    "time_steps": 3,
    "kernel": "eager",
    "conv_weight_scale": 3.0,
    "linear_weight_scale": 3.0,
}


def rgb_entry_data(name: str = "tiny_rgb_cifar10.untrained") -> dict:
    """A small weightless CIFAR-10 entry, as JSON data."""
    builder = json.loads(json.dumps({**BUILDER_DEFAULTS, **RGB_BUILDER}))
    return {
        "name": name,
        "dataset": "cifar10",
        "builder": builder,
        "input": {"shape": [3, 32, 32], "encoding": "analog", "mean": MEAN.tolist(), "std": STD.tolist()},
        "classes": list(CLASSES),
        "weights": None,
        "metrics": [],
        "num_params": count_parameters(builder),
        "recipe": {"config": "configs/tiny.yaml", "epochs": 1, "seed": 0, "hardware": None, "wall_time_s": None},
        "license": "test data",
    }


def write_entry(repo, data: dict) -> None:
    (repo / "zoo" / f"{data['name']}.json").write_text(json.dumps(data), encoding="utf-8")


def real_entry_data(name: str) -> dict:
    return json.loads((ZOO_DIR / f"{name}.json").read_text(encoding="utf-8"))


def run_failing(argv, capsys) -> str:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("na-lightning zoo: error: ")
    return captured.err


# The registered CIFAR-10 networks


@pytest.mark.parametrize("name", sorted(WEIGHTLESS))
def test_real_entry_registered_without_weights(name):
    preset, config = WEIGHTLESS[name]
    entry = zoo.model_info(name, zoo_dir=ZOO_DIR)

    assert entry.weights is None
    assert entry.metrics == ()
    assert entry.dataset == "cifar10"
    assert entry.classes == CLASSES
    assert entry.input.mean == zoo.DATASETS["cifar10"].mean
    assert entry.input.std == zoo.DATASETS["cifar10"].std
    assert entry.recipe.config == config
    assert "far beyond a 2-core CPU" in entry.notes
    for key, value in preset_hparams(preset).items():
        assert entry.builder[key] == value, key


@pytest.mark.parametrize("name", sorted(WEIGHTLESS))
def test_real_entry_matches_its_config(name):
    entry = zoo.model_info(name, zoo_dir=ZOO_DIR)
    config = yaml.safe_load((REPO_ROOT / entry.recipe.config).read_text())

    for key, value in config["model"].items():
        expected = tuple(value) if isinstance(value, list) else value
        assert entry.builder[key] == expected, key
    assert entry.recipe.epochs == config["trainer"]["max_epochs"]
    assert entry.recipe.seed == config["seed_everything"]


def test_real_entry_num_params():
    assert zoo.model_info("alexnet_cifar10.na_t5", zoo_dir=ZOO_DIR).num_params == 21_156_384
    assert zoo.model_info("cifarnet_cifar10.stbp_t5", zoo_dir=ZOO_DIR).num_params == 44_999_040


def test_pretrained_raises_with_fix():
    with pytest.raises(zoo.NoWeightsError) as excinfo:
        zoo.get_model("alexnet_cifar10.na_t5", zoo_dir=ZOO_DIR)

    message = str(excinfo.value)
    assert "Model alexnet_cifar10.na_t5 has no trained weights yet" in message
    assert "get_model('alexnet_cifar10.na_t5', pretrained=False) builds the untrained network" in message
    assert "`na-lightning fit --config configs/cifar10_alexnet.yaml`" in message
    assert "`na-lightning zoo import CHECKPOINT --name alexnet_cifar10.na_t5 --overwrite`" in message


def test_untrained_real_network_classifies():
    model = zoo.get_model("alexnet_cifar10.na_t5", pretrained=False, zoo_dir=ZOO_DIR, kernel="eager")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))

    inputs = model.transforms(image)
    assert model.training is False
    assert model.zoo_entry.name == "alexnet_cifar10.na_t5"
    assert inputs.shape == (3, 32, 32)
    assert model(inputs.unsqueeze(0)).shape == (1, 10)


def test_hub_entrypoints_without_weights():
    with pytest.raises(zoo.NoWeightsError, match="cifarnet_cifar10.stbp_t5 has no trained weights yet"):
        torch.hub.load(str(REPO_ROOT), "cifarnet_cifar10__stbp_t5", source="local", trust_repo=True, verbose=False)

    model = torch.hub.load(str(REPO_ROOT), "cifarnet_cifar10__stbp_t5", pretrained=False, source="local")
    assert model.zoo_entry.weights is None
    assert model.hparams.grad == "stbp"


# Command line


def test_list_shows_weightless(capsys):
    main(["--zoo-dir", str(ZOO_DIR), "list", "*cifar10*"])
    lines = capsys.readouterr().out.splitlines()

    assert lines[0].split()[-1] == "WEIGHTS"
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    weightless = [name for name, row in rows.items() if row[-1] == "none"]
    assert sorted(weightless) == sorted(WEIGHTLESS)
    for name in WEIGHTLESS:
        assert rows[name][1] == "cifar10"
        assert rows[name][2] == "-"


def test_info_says_no_weights(capsys):
    main(["--zoo-dir", str(ZOO_DIR), "info", "cifarnet_cifar10.stbp_t5"])
    out = capsys.readouterr().out

    assert "weights      none (registered without trained weights" in out
    assert (
        "to train     na-lightning fit --config configs/cifar10_cifarnet.yaml, then na-lightning zoo "
        "import CHECKPOINT --name cifarnet_cifar10.stbp_t5 --overwrite"
    ) in out
    assert "metric       none recorded" in out


@pytest.mark.parametrize("command", [["eval", "alexnet_cifar10.na_t5"], ["predict", "alexnet_cifar10.na_t5", "x.png"]])
def test_eval_and_predict_refuse(command, capsys):
    err = run_failing(["--zoo-dir", str(ZOO_DIR), *command], capsys)

    assert "Model alexnet_cifar10.na_t5 has no trained weights yet" in err
    assert "pretrained=False" in err
    assert "zoo import CHECKPOINT --name alexnet_cifar10.na_t5 --overwrite" in err


# Validation and registration


def test_record_metric_rejected(repo):
    write_entry(repo, real_entry_data("alexnet_cifar10.na_t5"))
    metric = {
        "dataset": "cifar10", "split": "test", "num_samples": 10, "accuracy": 0.1, "date": "2025-01-01",
        "command": "na-lightning zoo eval alexnet_cifar10.na_t5",
    }
    with pytest.raises(zoo.NoWeightsError, match="alexnet_cifar10.na_t5 has no trained weights yet"):
        zoo.record_metric("alexnet_cifar10.na_t5", metric)

    assert zoo.model_info("alexnet_cifar10.na_t5").metrics == ()


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("none", "weights must be a JSON object, got str 'none'"),
        (False, "weights must be a JSON object, got bool False"),
        ([], "weights must be a JSON object, got list"),
        ({}, r"weights is missing the required keys \['file', 'sha256', 'num_bytes'\]"),
        ({"file": "checkpoints/a.safetensors"}, r"weights is missing the required keys \['sha256', 'num_bytes'\]"),
        (
            {"file": "checkpoints/a.safetensors", "sha256": "0" * 63, "num_bytes": 10},
            "weights.sha256 must be 64 lowercase hex digits",
        ),
        ({"file": "a.pt", "sha256": "0" * 64, "num_bytes": 10}, "weights.file must be a .safetensors file"),
        (
            {"file": "checkpoints/a.safetensors", "sha256": "0" * 64, "num_bytes": 0},
            "weights.num_bytes must be an integer >= 1",
        ),
    ],
)
def test_malformed_weights_rejected(repo, weights, expected):
    data = real_entry_data("alexnet_cifar10.na_t5")
    data["weights"] = weights
    write_entry(repo, data)

    with pytest.raises(zoo.InvalidEntryError, match=expected) as excinfo:
        zoo.list_models()
    assert "alexnet_cifar10.na_t5.json" in str(excinfo.value)


def test_metrics_without_weights_rejected(repo):
    data = real_entry_data("alexnet_cifar10.na_t5")
    data["metrics"] = [{
        "dataset": "cifar10", "split": "test", "num_samples": 10000, "accuracy": 0.9176, "date": "2023-01-01",
        "command": "reported in the paper",
    }]
    write_entry(repo, data)

    with pytest.raises(zoo.InvalidEntryError, match="weights is null but metrics lists 1 measurements"):
        zoo.list_models()


def test_import_replaces_weightless_entry(repo, tmp_path):
    write_entry(repo, rgb_entry_data("tiny_rgb_cifar10.t1"))
    trained = make_classifier(RGB_BUILDER, seed=3)
    checkpoint = tmp_path / "trained.ckpt"
    torch.save(lightning_checkpoint(trained, epoch=4, datamodule="na_lightning.data.CIFAR10DataModule"), checkpoint)

    with pytest.raises(zoo.ZooError, match="already registered"):
        zoo.import_checkpoint(checkpoint, "tiny_rgb_cifar10.t1")
    entry = zoo.import_checkpoint(checkpoint, "tiny_rgb_cifar10.t1", overwrite=True)

    assert entry.weights is not None
    assert entry.dataset == "cifar10"
    assert entry.classes == CLASSES
    assert entry.input.mean == CIFAR10DataModule.mean
    assert "Krizhevsky" in entry.license
    assert entry.recipe.epochs == 5
    model = zoo.get_model("tiny_rgb_cifar10.t1")
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(images), trained(images))


# RGB models: transforms, prediction and evaluation


def test_rgb_transforms_values(repo):
    write_entry(repo, rgb_entry_data())
    model = zoo.get_model("tiny_rgb_cifar10.untrained", pretrained=False)

    red = model.transforms(Image.new("RGB", (32, 32), (255, 0, 0)))
    gray = model.transforms(Image.new("L", (32, 32), 128))
    large = model.transforms(Image.new("RGB", (64, 48), (0, 255, 0)))
    rgba = model.transforms(Image.new("RGBA", (32, 32), (0, 0, 255, 10)).convert("RGB"))

    assert red.shape == gray.shape == large.shape == (3, 32, 32)
    assert torch.allclose(red[:, 7, 9], (torch.tensor([1.0, 0.0, 0.0]) - MEAN) / STD, atol=1e-5)
    # A gray pixel is copied into all three channels, each normalized with its own mean and std.
    assert torch.allclose(gray[:, 0, 0], (torch.full((3,), 128 / 255) - MEAN) / STD, atol=1e-5)
    assert torch.allclose(large[:, 31, 31], (torch.tensor([0.0, 1.0, 0.0]) - MEAN) / STD, atol=1e-5)
    assert torch.allclose(rgba[:, 3, 3], (torch.tensor([0.0, 0.0, 1.0]) - MEAN) / STD, atol=1e-5)


def test_predict_rgb_and_other_image_files(repo, tmp_path):
    write_entry(repo, rgb_entry_data())
    model = zoo.get_model("tiny_rgb_cifar10.untrained", pretrained=False)
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    files = {
        "rgb.png": Image.fromarray(pixels),
        "photo.jpg": Image.fromarray(pixels).resize((64, 48)),
        "gray.png": Image.fromarray(pixels[..., 0]),
        "alpha.png": Image.fromarray(np.dstack([pixels, np.full((32, 32), 128, np.uint8)])),
        "palette.png": Image.fromarray(pixels).convert("P"),
    }
    for name, image in files.items():
        image.save(tmp_path / name)

    predictions = zoo.predict_files(model, [tmp_path / name for name in files])

    assert [prediction.file.name for prediction in predictions] == list(files)
    for prediction in predictions:
        assert prediction.class_name == CLASSES[prediction.class_index]
    # The RGBA file is classified from its RGB channels, so it scores exactly like the RGB file.
    assert predictions[3].score == predictions[0].score
    assert predictions[3].class_index == predictions[0].class_index


def test_cifar10_dataset_spec(tmp_path):
    spec = zoo.DATASETS["cifar10"]
    datamodule = spec.build_datamodule(tmp_path, 16)

    assert spec.classes == CLASSES
    assert spec.datamodule_class == "na_lightning.data.CIFAR10DataModule"
    assert spec.license.startswith("No formal license")
    assert "Learning Multiple Layers of Features from Tiny Images" in spec.license
    assert isinstance(datamodule, CIFAR10DataModule)
    assert datamodule.hparams.augment is False
    assert datamodule.hparams.download is False
    assert datamodule.hparams.batch_size == 16


def test_evaluate_untrained_on_image_folder(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "cifar10"
    generator = np.random.default_rng(2)
    for name in CLASSES:
        (folder / "test" / name).mkdir(parents=True)
        Image.fromarray(generator.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "test" / name / "0.png")
    write_entry(repo, rgb_entry_data())
    model = zoo.get_model("tiny_rgb_cifar10.untrained", pretrained=False)

    result = zoo.evaluate(model, data_dir=folder, limit=6)

    assert result.split_size == 10
    assert result.num_samples == 6
    assert 0 <= result.num_correct <= 6
    assert result.recorded is None
    assert list((tmp_path / "home" / ".cache" / "na_lightning" / "cifar10").glob("test-*.images.npy"))
