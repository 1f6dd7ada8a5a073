"""The CIFAR-10 presets of the NA paper, and the configs that train them."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from PIL import Image

from na_lightning.cli import build_cli
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.models import PRESETS, SpikingNetwork, list_presets, parse_architecture, preset_hparams
from na_lightning.nn.layers import SpikingConv2d, SpikingLinear, SumPool2d, TemporalDropout
from tests.conftest import REPO_ROOT

CONFIGS = {
    "alexnet_cifar10": REPO_ROOT / "configs" / "cifar10_alexnet.yaml",
    "cifarnet_cifar10": REPO_ROOT / "configs" / "cifar10_cifarnet.yaml",
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def conv_params(channels: list[int]) -> int:
    return sum(9 * a * b for a, b in zip(channels, channels[1:]))


def test_preset_names():
    assert list_presets() == ["alexnet_cifar10", "cifarnet_cifar10"]
    assert set(PRESETS) == set(CONFIGS)


def test_alexnet_layers():
    tokens = parse_architecture(preset_hparams("alexnet_cifar10")["architecture"])
    layers = [token.text for token in tokens if token.kind != "dropout"]
    dropouts = [token.values[0] for token in tokens if token.kind == "dropout"]

    assert layers == ["96C3", "256C3", "P2", "384C3", "P2", "384C3", "256C3", "1024", "1024"]
    assert dropouts == [0.2] * 7
    # Every spiking hidden layer is followed by dropout.
    for token, following in zip(tokens, tokens[1:]):
        if token.kind in ("conv", "linear"):
            assert following.kind == "dropout", token.text


def test_cifarnet_layers():
    tokens = parse_architecture(preset_hparams("cifarnet_cifar10")["architecture"])

    assert [token.text for token in tokens] == [
        "128C3", "256C3", "P2", "512C3", "P2", "1024C3", "512C3", "1024", "512"
    ]


@pytest.mark.parametrize(
    ("name", "channels", "flat", "hidden"),
    [
        ("alexnet_cifar10", [3, 96, 256, 384, 384, 256], 256 * 8 * 8, [1024, 1024]),
        ("cifarnet_cifar10", [3, 128, 256, 512, 1024, 512], 512 * 8 * 8, [1024, 512]),
    ],
)
def test_preset_network_sizes(name, channels, flat, hidden):
    hparams = preset_hparams(name)
    with torch.device("meta"):
        model = NAClassifier(**hparams)
    layers = list(model.network.layers)
    convs = [layer for layer in layers if isinstance(layer, SpikingConv2d)]
    linears = [layer for layer in layers if isinstance(layer, SpikingLinear)]

    assert [layer.conv.padding for layer in convs] == [(1, 1)] * 5
    assert [layer.conv.kernel_size for layer in convs] == [(3, 3)] * 5
    assert sum(isinstance(layer, SumPool2d) for layer in layers) == 2
    # Padding 1 keeps 32 x 32, the two pooling layers leave 8 x 8.
    assert linears[0].linear.in_features == flat
    assert [layer.linear.out_features for layer in linears] == [*hidden, 10]
    expected = conv_params(channels) + flat * hidden[0] + hidden[0] * hidden[1] + hidden[1] * 10
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


def test_alexnet_dropout_modules():
    with torch.device("meta"):
        network = SpikingNetwork(
            preset_hparams("alexnet_cifar10")["architecture"], num_classes=10, input_shape=(3, 32, 32), padding=1
        )
    dropouts = [layer for layer in network.layers if isinstance(layer, TemporalDropout)]

    assert [layer.p for layer in dropouts] == [0.2] * 7


def test_preset_recipe_values():
    alexnet = preset_hparams("alexnet_cifar10")
    cifarnet = preset_hparams("cifarnet_cifar10")

    expected = {
        "num_classes": 10, "input_shape": (3, 32, 32), "padding": 1, "time_steps": 5, "tau_m": 5.0,
        "tau_s": 2.0, "conv_weight_scale": 5.0, "linear_weight_scale": 1.0, "loss": "kernel", "lr": 5e-4,
        "lr_gamma": 0.985, "weight_decay": 0.01, "weight_clamp": 4.0,
    }
    for key, value in expected.items():
        assert alexnet[key] == value, key
        assert cifarnet[key] == value, key
    assert alexnet["grad"] == "na"
    assert cifarnet["grad"] == "stbp"


def test_preset_hparams_returns_copy():
    hparams = preset_hparams("alexnet_cifar10")
    hparams["time_steps"] = 8

    assert preset_hparams("alexnet_cifar10")["time_steps"] == 5
    with pytest.raises(TypeError):
        PRESETS["alexnet_cifar10"].hparams["time_steps"] = 8


def test_unknown_preset_suggests_closest():
    with pytest.raises(ValueError) as excinfo:
        preset_hparams("alexnet_cifar")

    message = str(excinfo.value)
    assert "Unknown preset 'alexnet_cifar'" in message
    assert "Did you mean 'alexnet_cifar10'" in message
    with pytest.raises(ValueError, match=r"the presets are \['alexnet_cifar10', 'cifarnet_cifar10'\]\.$"):
        preset_hparams("resnet18")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_model_matches_preset(name):
    config = yaml.safe_load(CONFIGS[name].read_text())
    hparams = preset_hparams(name)

    for key, value in hparams.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert config["model"][key] == expected, key
    assert config["data"]["class_path"] == "na_lightning.data.CIFAR10DataModule"
    assert config["data"]["init_args"]["batch_size"] == 50
    assert config["trainer"]["max_epochs"] == 300
    assert config["trainer"]["gradient_clip_val"] == 1.0


@pytest.fixture(scope="module")
def tiny_cifar_folder(tmp_path_factory):
    """Ten classes with two 32 x 32 PNG images each, in train/ and test/."""
    root = tmp_path_factory.mktemp("cifar10")
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(2):
                pixels = generator.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


# 10 to 27 s each on a shared 2-core CPU.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_trains_two_batches(name, tiny_cifar_folder, tmp_path):
    cli = build_cli(
        [
            "--config", str(CONFIGS[name]),
            "--data.init_args.data_dir", str(tiny_cifar_folder),
            "--data.init_args.cache_dir", str(tmp_path / "cache"),
            "--data.init_args.download", "false",
            "--data.init_args.batch_size", "2",
            "--data.init_args.val_size", "2",
            "--data.init_args.num_workers", "0",
            # The compiled NA kernel would spend most of this test compiling.
            "--model.kernel", "eager",
        ],
        run=False,
    )
    assert cli.trainer.max_epochs == 300
    assert cli.trainer.gradient_clip_val == 1.0
    assert type(cli.datamodule).__name__ == "CIFAR10DataModule"
    assert cli.model.hparams.architecture == preset_hparams(name)["architecture"]
    assert cli.model.hparams.grad == preset_hparams(name)["grad"]

    # The config's trainer would write a checkpoint of several hundred MB, so a bare one runs the steps.
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        gradient_clip_val=cli.trainer.gradient_clip_val,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    before = [parameter.detach().clone() for parameter in cli.model.parameters()]
    trainer.fit(cli.model, datamodule=cli.datamodule)

    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["train_loss_epoch"])
    changed = [not torch.equal(old, new) for old, new in zip(before, cli.model.parameters())]
    assert changed[-1], "the output layer did not change in two optimizer steps"
    # Weights stay clamped to the recipe's [-4, 4] after every step.
    assert max(float(parameter.abs().max()) for parameter in cli.model.parameters()) <= 4.0
