"""``na-lightning zoo`` commands, run through ``main(argv)``."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from na_lightning import zoo
from na_lightning.cli import main as top_level_main
from na_lightning.data.mnist import read_idx_images
from na_lightning.zoo.cli import main
from tests.zoo.zoo_helpers import TINY_BUILDER, TINY_INPUT, lightning_checkpoint, make_classifier


def run_failing(argv, capsys) -> str:
    """Run a command that must fail; return its stderr."""
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def assert_one_line_error(err: str, *parts: str) -> None:
    assert err.count("\n") == 1
    assert err.startswith("na-lightning zoo: error: ")
    assert "Traceback" not in err
    for part in parts:
        assert part in err


def test_list(tiny_entry, mnist_entry, capsys):
    main(["list"])
    lines = capsys.readouterr().out.splitlines()

    assert lines[0].split() == ["NAME", "DATASET", "TEST", "ACC", "PARAMS", "WEIGHTS"]
    assert lines[1].split() == ["small_cnn_mnist.t1", "mnist", "10.00", "%", str(mnist_entry.num_params), "file"]
    assert lines[2].split() == ["tiny_cnn.t1", "shapes", "50.00", "%", str(tiny_entry.num_params), "file"]


def test_list_pattern(tiny_entry, mnist_entry, capsys):
    main(["list", "*mnist*"])
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["small_cnn_mnist.t1"]

    main(["list", "resnet*"])
    assert capsys.readouterr().out == "No registered model matches 'resnet*'.\n"


def test_info_human_readable(tiny_entry, capsys):
    main(["info", "tiny_cnn.t1"])
    out = capsys.readouterr().out

    assert "name         tiny_cnn.t1\n" in out
    assert "architecture 4C3-P2-16 (padding 0)" in out
    assert f"sha256       {tiny_entry.weights.sha256}" in out
    assert "metric       shapes test: 50.00 % on 100 samples (2025-01-31)" in out
    assert "torch.hub.load(REPO_DIR, 'tiny_cnn__t1', source='local')" in out


def test_info_json(tiny_entry, capsys):
    main(["info", "tiny_cnn.t1", "--json"])

    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(tiny_entry.to_dict()))


def test_unknown_model_one_line(tiny_entry, capsys):
    err = run_failing(["info", "tiny_cnn.t2"], capsys)

    assert_one_line_error(err, "Unknown model 'tiny_cnn.t2'", "Did you mean 'tiny_cnn.t1'?")


def test_eval_prints_measured_and_recorded(mnist_entry, mnist_dir, capsys):
    expected = zoo.evaluate("small_cnn_mnist.t1", data_dir=mnist_dir, limit=200)

    main(["eval", "small_cnn_mnist.t1", "--data-dir", str(mnist_dir), "--limit", "200", "--batch-size", "100"])
    out = capsys.readouterr().out

    assert "dataset     mnist test, 200 of 10000 samples (random sample, seed 0)" in out
    assert f"measured    {100 * expected.accuracy:.2f} % ({expected.num_correct} / 200)" in out
    assert "recorded    10.00 % (10000 samples, 2025-02-01)" in out
    # 3 standard errors of a 10 % accuracy on 200 of 10,000 samples: 6.30 points.
    assert f"difference  {100 * (expected.accuracy - 0.1):+.2f} percentage points (tolerance 6.30)" in out


def test_eval_record_needs_whole_split(mnist_entry, mnist_dir, capsys):
    err = run_failing(["eval", "small_cnn_mnist.t1", "--limit", "10", "--record"], capsys)

    assert_one_line_error(err, "--record needs the whole test split, so remove --limit")


def test_eval_missing_data_one_line(mnist_entry, tmp_path, capsys):
    err = run_failing(["eval", "small_cnn_mnist.t1", "--data-dir", str(tmp_path / "absent")], capsys)

    assert_one_line_error(err, "MNIST folder not found")
    assert "Check data_dir (--data-dir on the command line)" in err
    assert "download" not in err


def test_predict_prints_one_line_per_file(mnist_entry, mnist_dir, tmp_path, capsys):
    images = read_idx_images(mnist_dir / "t10k-images-idx3-ubyte.gz")[:3]
    files = []
    for index, image in enumerate(images):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(image.numpy(), mode="L").save(path)
        files.append(str(path))
    model = zoo.get_model("small_cnn_mnist.t1")
    with torch.no_grad():
        scores = model(((images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1))

    main(["predict", "small_cnn_mnist.t1", *files])
    lines = capsys.readouterr().out.splitlines()

    assert len(lines) == 3
    for line, file, row in zip(lines, files, scores):
        name, class_name, score = line.split("\t")
        assert name == file
        assert class_name == str(int(row.argmax()))
        assert float(score) == pytest.approx(float(row.max()), abs=1e-4)


@pytest.mark.parametrize(
    ("make_path", "expected"),
    [
        (lambda folder: folder / "absent.png", "not found"),
        (lambda folder: folder, "is a folder"),
        (lambda folder: folder / "corrupt.png", "Cannot read"),
        (lambda folder: folder / "recording.aedat4", "prediction from event files is not supported yet"),
    ],
)
def test_predict_bad_file_one_line(mnist_entry, tmp_path, capsys, make_path, expected):
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "recording.aedat4").write_bytes(b"#!AER-DAT4.0\r\n")
    path = make_path(tmp_path)

    err = run_failing(["predict", "small_cnn_mnist.t1", str(path)], capsys)

    assert_one_line_error(err, str(path), expected)


def test_predict_truncated_image_one_line(mnist_entry, mnist_dir, tmp_path, capsys):
    image = read_idx_images(mnist_dir / "t10k-images-idx3-ubyte.gz")[0]
    path = tmp_path / "digit.png"
    Image.fromarray(image.numpy(), mode="L").save(path)
    path.write_bytes(path.read_bytes()[:60])

    err = run_failing(["predict", "small_cnn_mnist.t1", str(path)], capsys)

    assert_one_line_error(err, f"Cannot read {path} as an image")


def test_import_command(repo, tmp_path, capsys):
    model = make_classifier(TINY_BUILDER)
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save(lightning_checkpoint(model, epoch=9), checkpoint)
    metric = {"dataset": "shapes", "split": "test", "num_samples": 30, "accuracy": 0.6,
              "date": "2025-04-01", "command": "python measure.py"}

    main([
        "import", str(checkpoint), "--name", "tiny_cnn.cli", "--dataset", "shapes",
        "--classes", "circle,square,triangle", "--input-spec", json.dumps(TINY_INPUT),
        "--license", "CC0-1.0", "--seed", "3", "--hardware", "1x NVIDIA H200", "--wall-time-s", "12.5",
        "--metric", json.dumps(metric), "--builder", "time_steps=6",
        "--builder", "architecture=4C3-P2-16",
    ])
    out = capsys.readouterr().out
    entry = zoo.model_info("tiny_cnn.cli")

    assert out.startswith("Registered tiny_cnn.cli: ")
    assert entry.builder["time_steps"] == 6
    assert entry.classes == ("circle", "square", "triangle")
    assert entry.input.std == (0.25,)
    assert entry.recipe.epochs == 10
    assert (entry.recipe.seed, entry.recipe.hardware, entry.recipe.wall_time_s) == (3, "1x NVIDIA H200", 12.5)
    assert entry.metrics[0].accuracy == 0.6


def test_import_missing_input_spec_one_line(repo, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save(lightning_checkpoint(make_classifier(TINY_BUILDER)), checkpoint)

    err = run_failing(["import", str(checkpoint), "--name", "tiny_cnn.cli", "--dataset", "shapes"], capsys)

    assert_one_line_error(err, "Pass input_spec= (--input-spec)")


def test_import_missing_checkpoint_one_line(repo, tmp_path, capsys):
    err = run_failing(["import", str(tmp_path / "absent.ckpt"), "--name", "tiny_cnn.cli"], capsys)

    assert_one_line_error(err, "absent.ckpt not found")


def test_eval_record_writes_metric(repo, tmp_path, mnist_dir, capsys, monkeypatch):
    model = make_classifier({**TINY_BUILDER, "architecture": "2C5-P2-8", "input_shape": (1, 28, 28), "num_classes": 10})
    checkpoint = tmp_path / "mnist.ckpt"
    torch.save(lightning_checkpoint(model, datamodule="na_lightning.data.MNISTDataModule"), checkpoint)
    zoo.import_checkpoint(checkpoint, "micro_cnn_mnist.t1")

    main(["eval", "micro_cnn_mnist.t1", "--data-dir", str(mnist_dir), "--batch-size", "1000", "--record"])
    out = capsys.readouterr().out
    metric = zoo.model_info("micro_cnn_mnist.t1").metric()

    assert metric.num_samples == 10000
    assert f"measured    {100 * metric.accuracy:.2f} %" in out
    assert metric.command == f"na-lightning zoo eval micro_cnn_mnist.t1 --data-dir {mnist_dir} --batch-size 1000"
    assert "recorded in" in out


def test_top_level_cli_dispatches(tiny_entry, capsys):
    top_level_main(["zoo", "list", "tiny*"])

    assert "tiny_cnn.t1" in capsys.readouterr().out
