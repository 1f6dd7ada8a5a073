"""Tests for fine-tuning an NAClassifier: weight transfer, input adapters, freezing, optimizer, CLI."""

from __future__ import annotations

import pytorch_lightning as pl
import pytest
import torch
from pytorch_lightning.cli import LightningCLI

from na_lightning.cli import build_cli
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.lightning.finetune import (
    FineTuneClassifier,
    FrameAdapter,
    adapt_channels,
    finetune_from,
    load_source_model,
    network_hparams,
)
from tests.conftest import DATA_ROOT, REPO_ROOT

NMNIST_DIR = DATA_ROOT / "nmnist"
FINETUNE_CONFIG = str(REPO_ROOT / "configs" / "finetune_nmnist_from_mnist.yaml")
MNIST_CONFIG = str(REPO_ROOT / "configs" / "mnist_cnn.yaml")


def mnist_source(**kwargs) -> NAClassifier:
    torch.manual_seed(0)
    return NAClassifier(kernel="eager", **kwargs).eval()


def save_checkpoint(model: pl.LightningModule, path) -> str:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


def weight(model: NAClassifier, name: str) -> torch.Tensor:
    (parameter,) = list(model.network.spiking_layers[name].parameters())
    return parameter


def finetune_cli(args: list[str]) -> LightningCLI:
    """Build the library's CLI from ``args`` without running a subcommand."""
    return build_cli(args, run=False)


# --------------------------------------------------------------------------------------------
# Building blocks


def test_adapt_channels_spread_and_repeat():
    grey = torch.arange(8.0).reshape(2, 1, 2, 2)

    spread = adapt_channels(grey, 2, "spread")
    repeat = adapt_channels(grey, 2, "repeat")
    merged = adapt_channels(torch.cat([grey, 3 * grey], 1), 1, "spread")

    assert spread.shape == (2, 2, 2, 2)
    assert torch.equal(spread[:, 0], grey[:, 0] / 2)
    assert torch.equal(spread[:, 1], grey[:, 0] / 2)
    assert torch.equal(repeat[:, 1], grey[:, 0])
    assert torch.equal(merged[:, 0], 4 * grey[:, 0])


def test_frame_adapter_crop_pad_resize():
    frames = torch.zeros(2, 3, 2, 34, 34)
    frames[..., 3, 3] = 1.0
    frames[..., 17, 17] = 1.0

    cropped = FrameAdapter("crop", (28, 28))(frames)
    padded = FrameAdapter("pad", (40, 40))(frames)
    resized = FrameAdapter("resize", (28, 28))(frames)

    assert cropped.shape == (2, 3, 2, 28, 28)
    assert cropped[0, 0, 0, 0, 0] == 1.0
    assert cropped[0, 0, 0, 14, 14] == 1.0
    assert cropped.sum() == 2 * 2 * 3 * 2
    assert padded.shape == (2, 3, 2, 40, 40)
    assert padded[0, 0, 0, 20, 20] == 1.0
    assert padded.sum() == frames.sum()
    assert resized.shape == (2, 3, 2, 28, 28)
    assert 0.0 < resized.max() < 1.0


def test_frame_adapter_pad_rejects_larger_input():
    with pytest.raises(ValueError, match="34x34 is larger than the network input 28x28"):
        FrameAdapter("pad", (28, 28))(torch.zeros(1, 2, 34, 34))


# --------------------------------------------------------------------------------------------
# Weight transfer


def test_spread_channels_reproduce_source_output():
    source = mnist_source()
    images = torch.rand(3, 1, 28, 28)

    model = finetune_from(source, input_shape=(2, 28, 28)).eval()

    assert model.transfer_plan == {"layers.0": "adapt", "layers.2": "copy", "layers.4": "copy", "layers.5": "copy"}
    with torch.no_grad():
        expected = source(images)
        actual = model(images.repeat(1, 2, 1, 1))
    torch.testing.assert_close(actual, expected)


def test_new_classes_replace_head():
    source = mnist_source()

    model = finetune_from(source, num_classes=5)

    assert model.transfer_plan["layers.5"] == "new"
    assert weight(model, "layers.5").shape == (5, 300)
    assert torch.equal(weight(model, "layers.4"), weight(source, "layers.4"))
    assert model.hparams.head_layers == ["layers.5"]


def test_reset_head_with_same_classes():
    source = mnist_source()

    model = finetune_from(source, reset_head=True)

    assert model.transfer_plan["layers.5"] == "new"
    assert not torch.equal(weight(model, "layers.5"), weight(source, "layers.5"))


def test_keep_target_size_reinitializes_first_linear():
    source = mnist_source()

    model = finetune_from(source, input_shape=(2, 34, 34), encoding="events", time_steps=30)

    assert model.network.input_shape == (2, 34, 34)
    assert model.transfer_plan == {"layers.0": "adapt", "layers.2": "copy", "layers.4": "new", "layers.5": "copy"}
    assert weight(model, "layers.4").shape == (300, 40 * 5 * 5)
    assert model.hparams.head_layers == ["layers.4", "layers.5"]
    assert model(torch.zeros(2, 30, 2, 34, 34)).shape == (2, 10)


def test_crop_adapter_keeps_source_size():
    source = mnist_source()

    model = finetune_from(source, input_shape=(2, 34, 34), encoding="events", input_adapter="crop")

    assert model.network.input_shape == (2, 28, 28)
    assert set(model.transfer_plan.values()) == {"adapt", "copy"}
    assert model(torch.zeros(2, 7, 2, 34, 34)).shape == (2, 10)


def test_reinit_channels():
    source = mnist_source()

    model = finetune_from(source, input_shape=(2, 28, 28), channel_init="reinit")

    assert model.transfer_plan["layers.0"] == "new"
    assert "layers.0" in model.hparams.head_layers


def test_linear_first_layer_channels_adapted():
    source = mnist_source(architecture="20", input_shape=(1, 4, 4))

    model = finetune_from(source, input_shape=(2, 4, 4), channel_init="repeat")

    source_weight = weight(source, "layers.0")
    adapted = weight(model, "layers.0").unflatten(1, (2, 16))
    assert model.transfer_plan["layers.0"] == "adapt"
    assert torch.equal(adapted[:, 0], source_weight)
    assert torch.equal(adapted[:, 1], source_weight)


def test_overrides_change_settings():
    model = finetune_from(mnist_source(), loss="count", lr=1e-3, tau_m=8.0)

    assert model.hparams.loss == "count"
    assert model.hparams.lr == 1e-3
    assert model.network.spiking_layers["layers.0"].neuron.tau_m == 8.0


def test_architecture_override_rejected():
    with pytest.raises(ValueError, match="architecture"):
        finetune_from(mnist_source(), architecture="10C5-P2-300")
    with pytest.raises(ValueError, match="tau_q"):
        finetune_from(mnist_source(), tau_q=3.0)


def test_direct_construction_checks_architecture():
    with pytest.raises(ValueError, match="architecture='10C5-300' differs"):
        FineTuneClassifier(mnist_source(), architecture="10C5-300")


# --------------------------------------------------------------------------------------------
# Freezing and optimizer


def test_freeze_first_layers():
    model = finetune_from(mnist_source(), input_shape=(2, 28, 28), freeze_layers=2)

    assert not weight(model, "layers.0").requires_grad
    assert not weight(model, "layers.2").requires_grad
    assert weight(model, "layers.4").requires_grad
    assert weight(model, "layers.5").requires_grad


def test_freeze_fresh_layer_rejected():
    with pytest.raises(ValueError, match=r"\['layers.4'\]"):
        finetune_from(mnist_source(), input_shape=(2, 34, 34), freeze_layers=3)


def test_freeze_output_layer_rejected():
    with pytest.raises(ValueError, match="freeze_layers=4"):
        finetune_from(mnist_source(), freeze_layers=4)


def test_optimizer_groups():
    model = finetune_from(mnist_source(), freeze_layers=1, backbone_lr_factor=0.1, lr=1e-3)

    optimizer = model.configure_optimizers()["optimizer"]
    groups = {group["name"]: group for group in optimizer.param_groups}

    assert set(groups) == {"backbone", "head"}
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)
    assert [p.shape for p in groups["head"]["params"]] == [(10, 300)]
    assert [p.shape for p in groups["backbone"]["params"]] == [(40, 15, 5, 5), (300, 640)]
    assert groups["backbone"]["weight_decay"] == 0.01


def test_frozen_layer_gets_no_gradient():
    model = finetune_from(mnist_source(), freeze_layers=1)
    model.train()
    images = torch.rand(4, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3])

    loss = model.loss_fn(model.network(images), labels)
    loss.backward()

    assert weight(model, "layers.0").grad is None
    assert weight(model, "layers.5").grad is not None


# --------------------------------------------------------------------------------------------
# Sources and checkpoints


def test_source_from_checkpoint(tmp_path):
    source = mnist_source()
    path = save_checkpoint(source, tmp_path / "mnist.ckpt")

    model = finetune_from(path, input_shape=(2, 28, 28))

    assert torch.equal(weight(model, "layers.2"), weight(source, "layers.2"))
    torch.testing.assert_close(weight(model, "layers.0")[:, 1], weight(source, "layers.0")[:, 0] / 2)


def test_finetuned_checkpoint_loads_without_source(tmp_path):
    source_path = tmp_path / "mnist.ckpt"
    save_checkpoint(mnist_source(), source_path)
    model = finetune_from(str(source_path), num_classes=4, input_shape=(2, 34, 34), input_adapter="crop", freeze_layers=1)
    finetuned_path = save_checkpoint(model, tmp_path / "finetuned.ckpt")
    source_path.unlink()

    restored = FineTuneClassifier.load_from_checkpoint(finetuned_path)
    chained = load_source_model(finetuned_path)

    assert restored.hparams.source is None
    assert restored.hparams.head_layers == ["layers.5"]
    assert isinstance(restored.input_adapter, FrameAdapter)
    assert not weight(restored, "layers.0").requires_grad
    for name in ("layers.0", "layers.5"):
        assert torch.equal(weight(restored, name), weight(model, name))
    assert isinstance(chained, FineTuneClassifier)
    assert network_hparams(chained)["num_classes"] == 4


def test_zoo_loader_hook():
    source = mnist_source()
    requested = []

    def zoo(name):
        requested.append(name)
        return source

    model = finetune_from("mnist-cnn", zoo_loader=zoo, num_classes=3)

    assert requested == ["mnist-cnn"]
    assert torch.equal(weight(model, "layers.4"), weight(source, "layers.4"))


def test_unknown_source_name():
    with pytest.raises(FileNotFoundError, match="zoo_loader"):
        load_source_model("no-such-model")
    with pytest.raises(TypeError, match="expected an NAClassifier"):
        load_source_model("name", zoo_loader=lambda name: torch.nn.Linear(1, 1))


# --------------------------------------------------------------------------------------------
# Command line


def test_mnist_config_parses_in_subclass_mode(tmp_path):
    cli = finetune_cli(["--config", MNIST_CONFIG, "--data.init_args.data_dir", str(tmp_path)])

    assert type(cli.model) is NAClassifier
    assert cli.model.hparams.architecture == "15C5-P2-40C5-P2-300"


def test_finetune_config_builds_model(tmp_path):
    source = save_checkpoint(mnist_source(), tmp_path / "mnist.ckpt")

    cli = finetune_cli(
        [
            "--config", FINETUNE_CONFIG,
            "--model.init_args.source", source,
            "--data.init_args.data_dir", str(tmp_path),
        ]
    )

    assert isinstance(cli.model, FineTuneClassifier)
    assert cli.model.transfer_plan == {"layers.0": "adapt", "layers.2": "copy", "layers.4": "copy", "layers.5": "copy"}
    assert cli.model.network.encoder.__class__.__name__ == "EventEncoder"
    assert cli.model.hparams.source is None
    assert not weight(cli.model, "layers.0").requires_grad


def fake_zoo(name: str) -> NAClassifier:
    """A zoo loader for the command line test: every name is the seeded MNIST network."""
    return mnist_source()


def test_finetune_config_with_zoo_loader(tmp_path):
    cli = finetune_cli(
        [
            "--config", FINETUNE_CONFIG,
            "--model.init_args.source", "mnist-cnn",
            "--model.init_args.zoo_loader", "tests.lightning.test_finetune.fake_zoo",
            "--data.init_args.data_dir", str(tmp_path),
        ]
    )

    assert cli.model.transfer_plan["layers.2"] == "copy"
    assert torch.equal(weight(cli.model, "layers.2"), weight(mnist_source(), "layers.2"))
    assert cli.model.hparams.zoo_loader is None


@pytest.mark.slow
@pytest.mark.skipif(not (NMNIST_DIR / "Train").is_dir(), reason=f"real N-MNIST subset not in {NMNIST_DIR}")
def test_finetune_smoke_on_nmnist(tmp_path):
    source = save_checkpoint(mnist_source(), tmp_path / "mnist.ckpt")
    cli = finetune_cli(
        [
            "--config", FINETUNE_CONFIG,
            "--model.init_args.source", source,
            "--model.init_args.kernel", "eager",
            "--data.init_args.data_dir", str(NMNIST_DIR),
            "--data.init_args.download", "false",
            "--data.init_args.val_size", "100",
            "--data.init_args.batch_size", "4",
            "--data.init_args.num_workers", "0",
            "--data.init_args.cache_dir", str(tmp_path / "cache"),
            "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1",
            "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"),
        ]
    )
    frozen_before = weight(cli.model, "layers.0").detach().clone()
    head_before = weight(cli.model, "layers.5").detach().clone()

    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train_loss_epoch"])
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0
    assert torch.equal(weight(cli.model, "layers.0"), frozen_before)
    assert not torch.equal(weight(cli.model, "layers.5"), head_before)
