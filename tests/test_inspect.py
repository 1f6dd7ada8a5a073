"""``na-lightning inspect``: PNG files and summaries for zoo models and checkpoints on real inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from na_lightning import zoo
from na_lightning.data.events import ToBinnedFrames, read_events
from na_lightning.data.mnist import MNISTDataModule, read_idx_images
from na_lightning.inspect import main
from na_lightning.lightning.classifier import NAClassifier
from tests.conftest import DATA_ROOT
from tests.zoo.zoo_helpers import MNIST_BUILDER, lightning_checkpoint, make_classifier

MNIST_IMAGES = DATA_ROOT / "mnist" / "t10k-images-idx3-ubyte.gz"
NMNIST_RECORDING = DATA_ROOT / "nmnist" / "Test" / "0" / "00004.bin"
MNIST_LAYERS = ("layers.0", "layers.2", "layers.3")
EVENT_BUILDER = {
    "architecture": "4C5-P2-16",
    "input_shape": (2, 34, 34),
    "num_classes": 10,
    "encoding": "events",
    "time_steps": 30,
    "tau_m": 8.0,
    "tau_s": 4.0,
    "padding": 1,
    "kernel": "eager",
    "conv_weight_scale": 4.0,
    "linear_weight_scale": 3.0,
}


@pytest.fixture
def digit_png(tmp_path) -> Path:
    """The first MNIST test image (a 7) as a PNG file."""
    if not MNIST_IMAGES.is_file():
        pytest.skip(f"real MNIST test images not found at {MNIST_IMAGES}; set NA_LIGHTNING_DATA")
    path = tmp_path / "digit7.png"
    Image.fromarray(read_idx_images(MNIST_IMAGES)[0].numpy()).save(path)
    return path


@pytest.fixture
def nmnist_bin() -> Path:
    if not NMNIST_RECORDING.is_file():
        pytest.skip(f"real N-MNIST recording not found at {NMNIST_RECORDING}; set NA_LIGHTNING_DATA")
    return NMNIST_RECORDING


@pytest.fixture
def mnist_model_name(tmp_path, monkeypatch) -> str:
    """A small untrained MNIST network registered as ``small_cnn_mnist.t1`` in a temporary zoo."""
    root = tmp_path / "repo"
    (root / "zoo").mkdir(parents=True)
    monkeypatch.setenv(zoo.ZOO_ENV, str(root / "zoo"))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    checkpoint = tmp_path / "mnist.ckpt"
    model = make_classifier(MNIST_BUILDER)
    torch.save(lightning_checkpoint(model, datamodule="na_lightning.data.MNISTDataModule"), checkpoint)
    zoo.import_checkpoint(checkpoint, "small_cnn_mnist.t1")
    return "small_cnn_mnist.t1"


def save_checkpoint(path: Path, model: NAClassifier, datamodule: dict | None) -> Path:
    contents = lightning_checkpoint(model)
    if datamodule is not None:
        contents["datamodule_hyper_parameters"] = datamodule
    torch.save(contents, path)
    return path


@pytest.fixture
def mnist_checkpoint(tmp_path) -> Path:
    model = make_classifier(MNIST_BUILDER)
    return save_checkpoint(tmp_path / "mnist.ckpt", model, {"_class_path": "na_lightning.data.MNISTDataModule"})


@pytest.fixture
def event_checkpoint(tmp_path) -> Path:
    model = make_classifier(EVENT_BUILDER)
    datamodule = {"_class_path": "na_lightning.data.nmnist.NMNISTDataModule", "time_steps": 30, "bin_width_us": 3000.0}
    return save_checkpoint(tmp_path / "nmnist.ckpt", model, datamodule)


def table_rows(out: str) -> dict[str, list[str]]:
    """Return the rows of the layer table by layer name."""
    rows = [line.split() for line in out.splitlines() if line.startswith("layers.")]
    return {row[0]: row for row in rows if row[1].startswith("Spiking")}


def layer_spike_counts(model: NAClassifier, inputs: torch.Tensor) -> dict[str, int]:
    """Spikes per spiking layer for one batch, computed from the recorded membrane potentials."""
    network = model.network.eval()
    for layer in network.spiking_layers.values():
        layer.record_potential = True
    with torch.no_grad():
        network(inputs)
    return {name: int((layer.potential > layer.neuron.theta).sum()) for name, layer in network.spiking_layers.items()}


def run_failing(argv, capsys) -> str:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("na-lightning inspect: error: ")
    assert "Traceback" not in err
    return err


def test_zoo_model_on_mnist_digit(mnist_model_name, digit_png, tmp_path, capsys):
    out_dir = tmp_path / "pictures"

    main([mnist_model_name, str(digit_png), "--out", str(out_dir)])
    out = capsys.readouterr().out

    files = sorted(path.name for path in out_dir.iterdir())
    expected = sorted(f"{kind}_{name}.png" for kind in ("raster", "potential", "rates") for name in MNIST_LAYERS)
    assert files == expected
    for path in out_dir.iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size[0] >= 400
            assert image.size[1] >= 300

    model = zoo.get_model(mnist_model_name, kernel="eager")
    with Image.open(digit_png) as image:
        inputs = model.transforms(image.convert("L")).unsqueeze(0)
    counts = layer_spike_counts(model, inputs)
    rows = table_rows(out)
    for name in MNIST_LAYERS:
        assert int(rows[name][3]) == counts[name], name
    assert counts["layers.0"] > 0
    predicted = int(model(inputs).argmax())
    assert f"predicted  {predicted} (class {predicted}," in out
    assert f"Wrote 9 files to {out_dir}" in out


def test_checkpoint_uses_dataset_normalization(mnist_checkpoint, digit_png, tmp_path, capsys):
    main([str(mnist_checkpoint), str(digit_png), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out

    model = make_classifier(MNIST_BUILDER)
    with Image.open(digit_png) as image:
        pixels = torch.from_numpy(np.array(image)).float().div(255.0)
    mean, std = MNISTDataModule.mean[0], MNISTDataModule.std[0]
    inputs = pixels.sub(mean).div(std).reshape(1, 1, 28, 28)
    counts = layer_spike_counts(model, inputs)
    rows = table_rows(out)
    for name in MNIST_LAYERS:
        assert int(rows[name][3]) == counts[name], name
    assert f"model      {mnist_checkpoint}" in out


def test_checkpoint_without_dataset_needs_normalization(tmp_path, digit_png, capsys):
    checkpoint = save_checkpoint(tmp_path / "bare.ckpt", make_classifier(MNIST_BUILDER), datamodule=None)

    err = run_failing([str(checkpoint), str(digit_png), "--out", str(tmp_path / "out")], capsys)
    assert "Pass --mean and --std" in err

    main([str(checkpoint), str(digit_png), "--out", str(tmp_path / "out"), "--mean", "0.1307", "--std", "0.3081"])
    assert "Wrote 9 files" in capsys.readouterr().out


def test_event_checkpoint_on_nmnist_recording(event_checkpoint, nmnist_bin, tmp_path, capsys):
    out_dir = tmp_path / "events"

    main([str(event_checkpoint), str(nmnist_bin), "--out", str(out_dir)])
    out = capsys.readouterr().out

    assert len(list(out_dir.glob("*.png"))) == 9
    frames = ToBinnedFrames(sensor_size=(34, 34, 2), time_steps=30)(read_events(nmnist_bin))
    counts = layer_spike_counts(make_classifier(EVENT_BUILDER), torch.from_numpy(frames).unsqueeze(0))
    rows = table_rows(out)
    assert counts["layers.0"] > 0
    for name in MNIST_LAYERS:
        assert int(rows[name][3]) == counts[name], name


def test_npy_events_match_bin(event_checkpoint, nmnist_bin, tmp_path, capsys):
    npy = tmp_path / "recording.npy"
    np.save(npy, read_events(nmnist_bin))

    main([str(event_checkpoint), str(nmnist_bin), "--out", str(tmp_path / "from_bin")])
    from_bin = table_rows(capsys.readouterr().out)
    main([str(event_checkpoint), str(npy), "--out", str(tmp_path / "from_npy")])
    from_npy = table_rows(capsys.readouterr().out)

    assert from_npy == from_bin


def test_silent_layer_reported_with_fix(tmp_path, digit_png, capsys):
    silent = make_classifier({**MNIST_BUILDER, "theta": 100.0})
    checkpoint = save_checkpoint(tmp_path / "silent.ckpt", silent, {"_class_path": "na_lightning.data.MNISTDataModule"})

    main([str(checkpoint), str(digit_png), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out

    assert table_rows(out)["layers.0"][-1] == "silent"
    assert "layers.0 is silent: no neuron's membrane potential exceeded theta. Lower theta" in out


def test_default_output_folder(mnist_checkpoint, digit_png, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    main([str(mnist_checkpoint), str(digit_png)])

    assert len(list((tmp_path / "inspect_digit7").glob("*.png"))) == 9


def test_missing_input_file(mnist_checkpoint, tmp_path, capsys):
    missing = tmp_path / "nothing.png"
    err = run_failing([str(mnist_checkpoint), str(missing)], capsys)
    assert f"Input file {missing} not found." in err


def test_folder_as_input(mnist_checkpoint, tmp_path, capsys):
    err = run_failing([str(mnist_checkpoint), str(tmp_path)], capsys)
    assert f"Input path {tmp_path} is a folder" in err


def test_corrupt_image(mnist_checkpoint, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not image data")

    err = run_failing([str(mnist_checkpoint), str(corrupt)], capsys)
    assert f"Cannot read {corrupt} as an image" in err


def test_truncated_event_file(event_checkpoint, tmp_path, capsys):
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(bytes(7))

    err = run_failing([str(event_checkpoint), str(truncated)], capsys)
    assert "not a multiple of 5 bytes" in err


def test_event_file_for_image_model(mnist_checkpoint, nmnist_bin, capsys):
    err = run_failing([str(mnist_checkpoint), str(nmnist_bin)], capsys)
    assert "is an event recording (.bin)" in err


def test_image_for_event_model(event_checkpoint, digit_png, capsys):
    err = run_failing([str(event_checkpoint), str(digit_png)], capsys)
    assert "takes events" in err


def test_unknown_zoo_model(mnist_model_name, digit_png, capsys):
    err = run_failing(["small_cnn_mnist.t2", str(digit_png)], capsys)
    assert "small_cnn_mnist.t2" in err


def test_missing_checkpoint(tmp_path, digit_png, capsys):
    missing = tmp_path / "gone.ckpt"
    err = run_failing([str(missing), str(digit_png)], capsys)
    assert f"Checkpoint {missing} not found." in err


def test_output_path_is_a_file(mnist_checkpoint, digit_png, tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.write_text("")

    err = run_failing([str(mnist_checkpoint), str(digit_png), "--out", str(occupied)], capsys)
    assert "is not a folder" in err


def test_zoo_event_model_on_nmnist_recording(event_checkpoint, nmnist_bin, tmp_path, monkeypatch, capsys):
    root = tmp_path / "repo"
    (root / "zoo").mkdir(parents=True)
    monkeypatch.setenv(zoo.ZOO_ENV, str(root / "zoo"))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    zoo.import_checkpoint(
        event_checkpoint,
        "small_cnn_nmnist.t1",
        dataset="nmnist",
        classes=[str(digit) for digit in range(10)],
        input_spec={"shape": [2, 34, 34], "encoding": "events", "sensor_size": [34, 34, 2], "time_bin_us": 3000.0},
        license="CC-BY-SA-4.0",
    )

    main(["small_cnn_nmnist.t1", str(nmnist_bin), "--out", str(tmp_path / "out")])
    from_zoo = table_rows(capsys.readouterr().out)
    main([str(event_checkpoint), str(nmnist_bin), "--out", str(tmp_path / "out_ckpt")])
    from_checkpoint = table_rows(capsys.readouterr().out)

    assert from_zoo == from_checkpoint
    assert int(from_zoo["layers.0"][3]) > 0
