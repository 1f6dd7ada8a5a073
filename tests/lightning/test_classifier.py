"""NAClassifier as a LightningModule, on synthetic batches and on real MNIST."""

from __future__ import annotations

import pytorch_lightning as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from na_lightning.data import MNISTDataModule
from na_lightning.lightning.classifier import NAClassifier


def tiny_classifier(**overrides) -> NAClassifier:
    options = {"architecture": "4C3-P2-16", "input_shape": (1, 8, 8), "num_classes": 3}
    options.update(overrides)
    return NAClassifier(**options)


def tiny_loader(samples: int = 24) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(samples, 1, 8, 8, generator=generator) * 2
    labels = torch.randint(0, 3, (samples,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=8)


def test_hyperparameters_saved():
    model = tiny_classifier(grad="stbp", lr=1e-3)

    assert model.hparams.architecture == "4C3-P2-16"
    assert model.hparams.grad == "stbp"
    assert model.hparams.lr == 1e-3


def test_forward_returns_class_scores():
    model = tiny_classifier(time_steps=4)

    scores = model(torch.randn(5, 1, 8, 8))

    assert scores.shape == (5, 3)
    assert ((scores >= 0) & (scores <= 4)).all()


def test_fit_logs_metrics_and_clamps_weights(tmp_path):
    model = tiny_classifier(weight_clamp=0.05)
    trainer = pl.Trainer(
        max_epochs=1, default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False
    )

    trainer.fit(model, tiny_loader(), tiny_loader())

    metrics = trainer.callback_metrics
    for key in ("train_loss", "val_loss", "val_acc", "val_firing_rate/layers.0", "val_firing_rate/layers.3"):
        assert key in metrics, key
    assert all(parameter.abs().max() <= 0.05 for parameter in model.parameters())
    assert any((tmp_path / "lightning_logs").rglob("events.out.tfevents.*"))


def test_predict_step_returns_scores(tmp_path):
    model = tiny_classifier()
    trainer = pl.Trainer(default_root_dir=tmp_path, enable_progress_bar=False, logger=False)

    predictions = trainer.predict(model, tiny_loader(10))

    assert [batch.shape for batch in predictions] == [(8, 3), (2, 3)]


def test_optimizer_and_scheduler_follow_recipe():
    model = tiny_classifier()

    config = model.configure_optimizers()

    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 5e-4
    assert optimizer.defaults["weight_decay"] == 0.01
    assert config["lr_scheduler"]["scheduler"].gamma == 0.985


def test_unknown_option_raises():
    with pytest.raises(ValueError, match="loss='hinge' is not supported"):
        tiny_classifier(loss="hinge")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("grad", "nah", "grad='nah' is not supported; expected one of ('na', 'stbp')."),
        ("error", "cod", "error='cod' is not supported"),
        ("distance", "papr", "distance='papr' is not supported"),
        ("kernel", "fast", "kernel='fast' is not supported"),
        ("tau_m", 0.5, "tau_m=0.5 is invalid; expected a time constant >= 1 step"),
        ("theta", 0.0, "theta=0.0 is invalid; expected a finite threshold > 0."),
    ],
)
def test_neuron_option_typo_raises_at_construction(option, value, message):
    with pytest.raises(ValueError) as excinfo:
        tiny_classifier(**{option: value})

    assert message in str(excinfo.value)


@pytest.mark.slow
def test_real_mnist_short_epoch_beats_chance(mnist_dir, tmp_path):
    # One epoch on 4,000 real training images; chance is 10%.
    pl.seed_everything(0)
    data = MNISTDataModule(
        data_dir=str(mnist_dir), train_subset=4000, val_size=500, test_subset=1000, batch_size=64
    )
    model = NAClassifier()
    trainer = pl.Trainer(
        max_epochs=1,
        gradient_clip_val=1.0,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

    trainer.fit(model, data)
    first_layer_rate = float(trainer.callback_metrics["val_firing_rate/layers.0"])
    result = trainer.test(model, data, verbose=False)[0]

    assert result["test_acc"] > 0.6
    assert 0.0 < first_layer_rate < 0.5
