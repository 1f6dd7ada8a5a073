"""SpikeMonitor: what it logs to TensorBoard and other loggers, its warnings and its cost."""

from __future__ import annotations

import csv
import io
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from na_lightning.inspect import raster_image
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.lightning.monitor import SpikeMonitor

MONITOR_LOGGER = "na_lightning.lightning.monitor"
LAYERS = ("layers.0", "layers.2", "layers.3")
SAMPLES = 24
BATCH = 8
BATCHES = SAMPLES // BATCH
SANITY_BATCHES = 2


def tiny_classifier(**overrides) -> NAClassifier:
    # Weight scale 3 makes every layer of the untrained network spike on these inputs.
    options = {
        "architecture": "4C3-P2-16",
        "input_shape": (1, 8, 8),
        "num_classes": 3,
        "time_steps": 4,
        "kernel": "eager",
        "conv_weight_scale": 3.0,
        "linear_weight_scale": 3.0,
    }
    options.update(overrides)
    torch.manual_seed(0)
    return NAClassifier(**options)


def tiny_images(positive: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(SAMPLES, 1, 8, 8, generator=generator) * 2
    return images.abs() + 0.5 if positive else images


def tiny_loader(images: torch.Tensor) -> DataLoader:
    labels = torch.arange(SAMPLES) % 3
    return DataLoader(TensorDataset(images, labels), batch_size=BATCH)


def fit(model, tmp_path, logger, monitor, epochs: int = 1, images=None) -> pl.Trainer:
    images = tiny_images() if images is None else images
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=[monitor],
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, tiny_loader(images), tiny_loader(images))
    return trainer


def read_events(trainer) -> EventAccumulator:
    accumulator = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def count_forwards(model: NAClassifier) -> list[int]:
    calls = [0]

    def count(module, inputs, output):
        calls[0] += 1

    model.network.register_forward_hook(count)
    return calls


def test_tensorboard_tags_per_layer(tmp_path):
    model = tiny_classifier()
    trainer = fit(model, tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor(), epochs=2)
    tags = read_events(trainer).Tags()

    for name in LAYERS:
        assert f"spikes/raster/{name}" in tags["images"]
        assert f"spikes/potential/{name}" in tags["images"]
        assert f"spikes/rate/{name}" in tags["histograms"]
        assert f"spikes/silent_fraction/{name}" in tags["scalars"]
        assert f"grad_abs_mean/{name}" in tags["scalars"]
    assert "spikes/raster/layers.1" not in tags["images"]


def test_raster_is_first_validation_sample(tmp_path):
    model = tiny_classifier()
    images = tiny_images()
    monitor = SpikeMonitor()
    trainer = fit(model, tmp_path, TensorBoardLogger(tmp_path), monitor, epochs=2, images=images)
    events = read_events(trainer)

    assert torch.equal(monitor.sample, images[0])
    network = model.network.eval()
    for layer in network.spiking_layers.values():
        layer.record_potential = True
    with torch.no_grad():
        network(images[:1])
    for name, layer in network.spiking_layers.items():
        spikes = (layer.potential[:, 0] > layer.neuron.theta).flatten(1)
        logged = events.Images(f"spikes/raster/{name}")
        assert [event.step for event in logged] == [BATCHES, 2 * BATCHES]
        pixels = np.array(Image.open(io.BytesIO(logged[-1].encoded_image_string)).convert("L"))
        assert pixels.tolist() == raster_image(spikes).tolist(), name


def test_rate_histogram_counts_every_neuron(tmp_path):
    model = tiny_classifier()
    images = tiny_images()
    trainer = fit(model, tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor(), images=images)
    events = read_events(trainer)

    network = model.network.eval()
    for layer in network.spiking_layers.values():
        layer.record_potential = True
    with torch.no_grad():
        network(images)
    for name, layer in network.spiking_layers.items():
        rates = (layer.potential > layer.neuron.theta).float().mean(dim=(0, 1)).flatten()
        histogram = events.Histograms(f"spikes/rate/{name}")[-1].histogram_value
        assert histogram.num == rates.numel()
        assert histogram.sum == pytest.approx(float(rates.sum()), rel=1e-5)
        assert histogram.max == pytest.approx(float(rates.max()))
        silent = events.Scalars(f"spikes/silent_fraction/{name}")[-1].value
        assert silent == pytest.approx(float((rates == 0).float().mean()))


def test_rate_batches_limits_counted_batches(tmp_path):
    model = tiny_classifier()
    images = tiny_images()
    trainer = fit(model, tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor(rate_batches=1), images=images)
    events = read_events(trainer)

    network = model.network.eval()
    for layer in network.spiking_layers.values():
        layer.record_potential = True
    with torch.no_grad():
        network(images[:BATCH])
    for name, layer in network.spiking_layers.items():
        rates = (layer.potential > layer.neuron.theta).float().mean(dim=(0, 1)).flatten()
        histogram = events.Histograms(f"spikes/rate/{name}")[-1].histogram_value
        assert histogram.sum == pytest.approx(float(rates.sum()), rel=1e-5)
        assert len(layer._forward_hooks) == 0


def test_every_n_epochs_skips_pictures(tmp_path):
    trainer = fit(tiny_classifier(), tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor(every_n_epochs=2), epochs=3)
    events = read_events(trainer)

    for name in LAYERS:
        assert [event.step for event in events.Images(f"spikes/raster/{name}")] == [BATCHES, 3 * BATCHES]
        assert [event.step for event in events.Histograms(f"spikes/rate/{name}")] == [BATCHES, 3 * BATCHES]
        assert len(events.Scalars(f"grad_abs_mean/{name}")) == 3 * BATCHES


class LogRecorder(NAClassifier):
    """NAClassifier whose ``log`` records the values instead of sending them to a trainer."""

    def log(self, name, value, **options):
        self.logged[name] = value


def test_gradient_is_mean_absolute_weight_gradient():
    model = LogRecorder(architecture="4C3-P2-16", input_shape=(1, 8, 8), num_classes=3)
    model.logged = {}
    layers = model.network.layers
    layers[0].conv.weight.grad = torch.full_like(layers[0].conv.weight, -0.5)
    layers[2].linear.weight.grad = torch.arange(layers[2].linear.weight.numel(), dtype=torch.float32).reshape(16, 36) - 10
    monitor = SpikeMonitor()

    monitor.on_before_optimizer_step(SimpleNamespace(is_global_zero=True), model, optimizer=None)

    assert set(model.logged) == {"grad_abs_mean/layers.0", "grad_abs_mean/layers.2"}
    assert float(model.logged["grad_abs_mean/layers.0"]) == pytest.approx(0.5)
    expected = float((torch.arange(576, dtype=torch.float32) - 10).abs().mean())
    assert float(model.logged["grad_abs_mean/layers.2"]) == pytest.approx(expected)

    model.logged = {}
    monitor.on_before_optimizer_step(SimpleNamespace(is_global_zero=False), model, optimizer=None)
    assert model.logged == {}


def test_gradients_logged_during_training(tmp_path):
    trainer = fit(tiny_classifier(), tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor())
    events = read_events(trainer)

    output_gradients = [event.value for event in events.Scalars("grad_abs_mean/layers.3")]
    assert len(output_gradients) == BATCHES
    assert all(value > 0 for value in output_gradients)


def test_silent_layers_warn_once_per_epoch(tmp_path, caplog):
    model = tiny_classifier(theta=100.0)

    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        fit(model, tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor(), epochs=2)

    messages = [record.getMessage() for record in caplog.records if record.name == MONITOR_LOGGER]
    assert len(messages) == 2 * len(LAYERS)
    for name in LAYERS:
        for epoch in (0, 1):
            matching = [message for message in messages if f"Layer {name} " in message and f"epoch {epoch}:" in message]
            assert len(matching) == 1, (name, epoch, messages)
            assert "was silent" in matching[0]
            assert "Lower theta" in matching[0]


def test_saturated_layers_warn(tmp_path, caplog):
    model = tiny_classifier(theta=0.01, lr=0.0, weight_clamp=None)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(1.0)

    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        fit(model, tmp_path, CSVLogger(tmp_path), SpikeMonitor(), images=tiny_images(positive=True))

    messages = [record.getMessage() for record in caplog.records if record.name == MONITOR_LOGGER]
    assert len(messages) == len(LAYERS)
    for name, message in zip(LAYERS, messages):
        assert f"Layer {name} " in message
        assert "was saturated" in message
        assert "Raise theta" in message


def test_healthy_layers_do_not_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        fit(tiny_classifier(), tmp_path, CSVLogger(tmp_path), SpikeMonitor())

    assert [record for record in caplog.records if record.name == MONITOR_LOGGER] == []


def test_one_extra_forward_per_validation_epoch(tmp_path):
    model = tiny_classifier()
    calls = count_forwards(model)

    fit(model, tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor(), epochs=2)

    without_monitor = 2 * (BATCHES + BATCHES) + SANITY_BATCHES
    assert calls[0] == without_monitor + 2


def test_other_logger_gets_scalars_without_pictures(tmp_path):
    model = tiny_classifier()
    calls = count_forwards(model)

    trainer = fit(model, tmp_path, CSVLogger(tmp_path), SpikeMonitor())

    assert calls[0] == 2 * BATCHES + SANITY_BATCHES
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    for name in LAYERS:
        assert f"grad_abs_mean/{name}" in columns
        assert f"spikes/silent_fraction/{name}" in columns


def test_layers_restored_after_fit(tmp_path):
    model = tiny_classifier()

    fit(model, tmp_path, TensorBoardLogger(tmp_path), SpikeMonitor())

    for layer in model.network.spiking_layers.values():
        assert layer.record_potential is False
        assert layer.potential is None
        assert len(layer._forward_hooks) == 0


def test_other_ranks_do_nothing(caplog):
    model = tiny_classifier(theta=100.0)
    model.network(tiny_images()[:BATCH])
    monitor = SpikeMonitor()
    trainer = SimpleNamespace(is_global_zero=False, sanity_checking=False, current_epoch=0)

    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        monitor.on_train_epoch_start(trainer, model)
        monitor.on_train_batch_end(trainer, model, None, None, 0)
        monitor.on_train_epoch_end(trainer, model)
        monitor.on_validation_epoch_start(trainer, model)

    assert caplog.records == []
    assert all(len(layer._forward_hooks) == 0 for layer in model.network.spiking_layers.values())


def test_raster_image_layout():
    # Two steps, three neurons: neuron 0 fires at step 0, neuron 2 at step 1.
    spikes = torch.tensor([[True, False, False], [False, False, True]])

    image = raster_image(spikes)

    assert image.dtype == np.uint8
    assert image.shape == (3 * 42, 2 * 128)
    assert image[0, 0] == 0
    assert image[0, 128] == 255
    assert image[42, 0] == 255
    assert image[42, 128] == 255
    assert image[84, 0] == 255
    assert image[84, 255] == 0


def test_raster_image_subsamples_large_layers():
    spikes = torch.zeros(5, 1000, dtype=torch.bool)
    spikes[:, 999] = True

    image = raster_image(spikes, max_neurons=100)

    assert image.shape == (100 * 1, 5 * 51)
    assert (image[-1] == 0).all()
    assert (image[:-1] == 255).all()


def test_invalid_options_rejected():
    with pytest.raises(ValueError, match="max_neurons=0 is invalid"):
        SpikeMonitor(max_neurons=0)
    with pytest.raises(ValueError, match="traces=2.5 is invalid"):
        SpikeMonitor(traces=2.5)
    with pytest.raises(ValueError, match="rate_batches=-1 is invalid; expected an integer >= 0"):
        SpikeMonitor(rate_batches=-1)
    with pytest.raises(ValueError, match="every_n_epochs=0 is invalid"):
        SpikeMonitor(every_n_epochs=0)
