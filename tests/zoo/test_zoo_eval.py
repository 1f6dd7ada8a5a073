"""Re-measuring accuracy on real MNIST test images, and predicting image files."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from PIL import Image

from na_lightning import zoo
from na_lightning.data import MNISTNotFoundError
from na_lightning.data.mnist import read_idx_images, read_idx_labels


def manual_predictions(model, mnist_dir, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Classify MNIST test images without the data module: decode, scale, normalize by hand."""
    images = read_idx_images(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx_labels(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    if indices is not None:
        images, labels = images[indices], labels[indices]
    inputs = ((images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)
    with torch.no_grad():
        predicted = torch.cat([model(batch).argmax(1) for batch in inputs.split(1000)])
    return predicted, labels


def test_evaluate_whole_test_split(mnist_entry, mnist_dir):
    model = zoo.get_model("small_cnn_mnist.t1")
    predicted, labels = manual_predictions(model, mnist_dir)

    result = zoo.evaluate(model, data_dir=mnist_dir, batch_size=500)

    assert result.num_samples == result.split_size == 10000
    assert result.seed is None
    assert result.num_correct == int((predicted == labels).sum())
    assert result.recorded.accuracy == 0.1
    assert result.difference == pytest.approx(result.accuracy - 0.1)
    assert result.tolerance == zoo.DEFAULT_TOLERANCE


def test_sample_tolerance_grows_with_sampling_error():
    recorded = zoo.Metric(dataset="mnist", split="test", num_samples=10000, accuracy=0.55, date="2026-01-01", command="x")
    sample = zoo.EvalResult("m", "mnist", "test", 1000, 10000, 550, 0, recorded)
    whole = zoo.EvalResult("m", "mnist", "test", 10000, 10000, 5500, None, recorded)
    accurate = zoo.EvalResult("m", "mnist", "test", 1000, 10000, 990, 0, replace(recorded, accuracy=0.99))

    # 3 * sqrt(0.55 * 0.45 / 1000 * 9000 / 9999) = 0.044777
    assert sample.tolerance == pytest.approx(0.044777, abs=1e-6)
    assert whole.tolerance == zoo.DEFAULT_TOLERANCE
    assert accurate.tolerance == zoo.DEFAULT_TOLERANCE
    assert replace(sample, recorded=replace(recorded, tolerance=0.002)).tolerance == 0.002


def test_evaluate_fixed_sample(mnist_entry, mnist_dir):
    first = zoo.evaluate("small_cnn_mnist.t1", data_dir=mnist_dir, limit=300, seed=5)
    second = zoo.evaluate("small_cnn_mnist.t1", data_dir=mnist_dir, limit=300, seed=5)

    indices = torch.randperm(10000, generator=torch.Generator().manual_seed(5))[:300].sort().values
    predicted, labels = manual_predictions(zoo.get_model("small_cnn_mnist.t1"), mnist_dir, indices)
    assert (first.num_samples, first.split_size, first.seed) == (300, 10000, 5)
    assert first.num_correct == second.num_correct == int((predicted == labels).sum())


def test_evaluate_rejects_model_without_entry(mnist_entry):
    model = zoo.get_model("small_cnn_mnist.t1")
    del model.zoo_entry

    with pytest.raises(zoo.ZooError, match="model.zoo_entry"):
        zoo.evaluate(model)


def test_evaluate_unknown_dataset(tiny_entry):
    with pytest.raises(zoo.ZooError, match=r"Unknown dataset 'shapes'; the zoo can evaluate on \['cifar10', 'mnist', 'nmnist'\]"):
        zoo.evaluate("tiny_cnn.t1")


def test_evaluate_missing_data(mnist_entry, tmp_path):
    with pytest.raises(MNISTNotFoundError, match="MNIST folder not found") as excinfo:
        zoo.evaluate("small_cnn_mnist.t1", data_dir=tmp_path / "absent")

    assert excinfo.value.fix == (
        "Check data_dir (--data-dir on the command line): it must be the mnist folder."
    )
    assert str(excinfo.value).endswith(excinfo.value.fix)


def test_evaluate_missing_default_data(mnist_entry, tmp_path, monkeypatch):
    monkeypatch.setenv("NA_LIGHTNING_DATA", str(tmp_path))

    with pytest.raises(MNISTNotFoundError, match=f"MNIST folder not found: {tmp_path / 'mnist'}") as excinfo:
        zoo.evaluate("small_cnn_mnist.t1")

    assert excinfo.value.fix == (
        "Pass the mnist folder as data_dir (--data-dir on the command line), or set "
        "NA_LIGHTNING_DATA to a folder that contains mnist/."
    )


def test_predict_files_matches_model(mnist_entry, mnist_dir, tmp_path):
    images = read_idx_images(mnist_dir / "t10k-images-idx3-ubyte.gz")[:4]
    files = []
    for index, image in enumerate(images):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(image.numpy(), mode="L").save(path)
        files.append(path)
    model = zoo.get_model("small_cnn_mnist.t1")
    expected = model(((images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1))

    predictions = zoo.predict_files(model, files)

    assert [prediction.file for prediction in predictions] == files
    assert [prediction.class_index for prediction in predictions] == expected.argmax(1).tolist()
    assert [prediction.class_name for prediction in predictions] == [str(i) for i in expected.argmax(1).tolist()]
    assert [prediction.score for prediction in predictions] == pytest.approx(expected.max(1).values.tolist())


def test_predict_rejects_event_files(mnist_entry, tmp_path):
    path = tmp_path / "sample.bin"
    path.write_bytes(b"\0" * 10)

    with pytest.raises(zoo.InputFileError, match="looks like an event recording"):
        zoo.predict_files(zoo.get_model("small_cnn_mnist.t1"), [path])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
def test_evaluate_unavailable_cuda_rejected():
    with pytest.raises(zoo.ZooError, match="Device 'cuda' is not available.*--device cpu"):
        zoo.evaluate("spiking_cnn_mnist.na_t5_e5", device="cuda")


def test_evaluate_needs_only_test_files(mnist_entry, mnist_dir, tmp_path):
    folder = tmp_path / "test_only"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(mnist_dir / name)

    result = zoo.evaluate("small_cnn_mnist.t1", data_dir=folder, limit=20)

    assert result.num_samples == 20
    assert result.split_size == 10000
