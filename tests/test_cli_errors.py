"""Every ``na-lightning`` command ends a user error with one clear line (``na_lightning.cli_errors``)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._utils import ExceptionWrapper

import na_lightning.cli as cli_module
from na_lightning.cli import build_cli, main
from na_lightning.cli_errors import DEBUG_VARIABLE, describe_error, one_line, report_errors, run_cli
from na_lightning.data import EventFileError, MNISTNotFoundError
from na_lightning.data.events import read_nmnist_bin
from na_lightning.data.mnist import MNISTTensorDataset
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.lightning.safety import NonFiniteError
from tests.conftest import DATA_ROOT, REPO_ROOT

CONFIG = str(REPO_ROOT / "configs" / "mnist_cnn.yaml")
WRAPPED_MAIN = "from na_lightning.cli_errors import run_cli; from na_lightning.cli import main; run_cli(main)"


def quick_args(data_dir, root) -> list[str]:
    """The MNIST recipe config, offline, on one batch of a small subset."""
    return [
        "--config", CONFIG,
        "--data.init_args.data_dir", str(data_dir),
        "--data.init_args.download", "false",
        "--data.init_args.train_subset", "256",
        "--data.init_args.val_size", "64",
        "--data.init_args.test_subset", "64",
        "--data.init_args.num_workers", "0",
        "--trainer.fast_dev_run", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]


def run_failing(argv, capsys) -> tuple[int, str]:
    """Run the wrapped ``main`` and return its exit status and its ``error:`` line."""
    with pytest.raises(SystemExit) as excinfo:
        run_cli(main, argv)
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == error_lines[0]
    return excinfo.value.code, error_lines[0]


@pytest.fixture
def exit_on_error_off(monkeypatch):
    """Build the CLI with ``parser_kwargs={"exit_on_error": False}``, so jsonargparse raises instead of exiting."""
    original = cli_module.LightningCLI

    def build(*args, **kwargs):
        kwargs["parser_kwargs"] = {**(kwargs.get("parser_kwargs") or {}), "exit_on_error": False}
        return original(*args, **kwargs)

    monkeypatch.setattr(cli_module, "LightningCLI", build)


def save_checkpoint(path: Path, architecture: str, hyperparameters: bool) -> None:
    model = NAClassifier(architecture=architecture, kernel="eager")
    checkpoint = {"state_dict": model.state_dict(), "pytorch-lightning_version": "2.6.0", "epoch": 0, "global_step": 0}
    if hyperparameters:
        checkpoint["hyper_parameters"] = dict(model.hparams)
    torch.save(checkpoint, path)


# --------------------------------------------------------------------------------------------
# Data files


def test_missing_data_folder(tmp_path, capsys):
    status, line = run_failing(["fit", *quick_args(tmp_path / "missing", tmp_path)], capsys)

    assert status == 1
    assert line.startswith("error: MNIST ")
    assert str(tmp_path / "missing") in line


def test_data_folder_is_file(tmp_path, capsys):
    not_a_folder = tmp_path / "mnist.txt"
    not_a_folder.write_text("x")

    status, line = run_failing(["fit", *quick_args(not_a_folder, tmp_path)], capsys)

    assert status == 1
    assert "t10k-images-idx3-ubyte.gz" in line


def test_corrupt_mnist_file(mnist_dir, tmp_path, capsys):
    data = tmp_path / "mnist"
    data.mkdir()
    for source in mnist_dir.glob("*.gz"):
        shutil.copy(source, data / source.name)
    images = data / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:5000]))

    status, line = run_failing(["fit", *quick_args(data, tmp_path)], capsys)

    assert status == 1
    assert line.startswith(f"error: Invalid MNIST file {images}: truncated")


@pytest.fixture(scope="module")
def event_folder(tmp_path_factory) -> Path:
    """Four real N-MNIST recordings per split in the ``<split>/<class>/<file>`` layout."""
    source = DATA_ROOT / "nmnist" / "Train"
    if not source.is_dir():
        pytest.skip(f"real N-MNIST files not found in {source}; set NA_LIGHTNING_DATA")
    root = tmp_path_factory.mktemp("events")
    for split in ("train", "test"):
        for label in ("0", "1"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for recording in sorted((source / label).glob("*.bin"))[:2]:
                shutil.copy(recording, folder / recording.name)
    return root


def event_args(data_dir, root, time_steps=30) -> list[str]:
    return [
        "--model.architecture", "4C5-P2-8",
        "--model.num_classes", "2",
        "--model.input_shape", "[2, 34, 34]",
        "--model.encoding", "events",
        "--model.time_steps", str(time_steps),
        "--model.kernel", "eager",
        "--data", "na_lightning.data.EventDataModule",
        "--data.data_dir", str(data_dir),
        "--data.sensor_size", "[34, 34, 2]",
        "--data.val_size", "1",
        "--data.batch_size", "8",
        "--data.cache", "false",
        "--trainer.fast_dev_run", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]


def test_corrupt_event_file(event_folder, tmp_path, capsys):
    data = tmp_path / "events"
    shutil.copytree(event_folder, data)
    recording = next((data / "train" / "1").glob("*.bin"))
    recording.write_bytes(recording.read_bytes()[:7])

    status, line = run_failing(["fit", *event_args(data, tmp_path)], capsys)

    assert status == 1
    assert line.startswith(f"error: Invalid N-MNIST file {recording}: its length of 7 bytes")


def test_model_and_data_time_steps_differ(event_folder, tmp_path, capsys):
    status, line = run_failing(["fit", *event_args(event_folder, tmp_path, time_steps=5)], capsys)

    assert status == 1
    assert "['time_steps']" in line
    assert "--model.time_steps and --data.time_steps" in line


# --------------------------------------------------------------------------------------------
# Configuration


def test_wrong_config_key_usage_error(mnist_dir, tmp_path, capsys):
    # Without exit_on_error=False, jsonargparse prints its usage block, then the error, and exits.
    with pytest.raises(SystemExit) as excinfo:
        run_cli(main, ["fit", *quick_args(mnist_dir, tmp_path), "--model.tau_q", "3"])

    assert excinfo.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert "Option 'tau_q' is not accepted" in stderr


def test_wrong_config_key_one_line(mnist_dir, tmp_path, capsys, exit_on_error_off):
    status, line = run_failing(["fit", *quick_args(mnist_dir, tmp_path), "--model.tau_q", "3"], capsys)

    assert status == 2
    assert line.startswith('error: Parser key "model": Option \'tau_q\' is not accepted')
    assert line.endswith("Run `na-lightning fit --help` for the accepted options.")


def test_wrong_key_in_config_file(mnist_dir, tmp_path, capsys, exit_on_error_off):
    extra = tmp_path / "extra.yaml"
    extra.write_text("trainer:\n  max_epoch: 3\n")

    status, line = run_failing(["fit", *quick_args(mnist_dir, tmp_path), "--config", str(extra)], capsys)

    assert status == 2
    assert "does not accept option 'trainer.max_epoch'" in line


def test_wrong_value_type(mnist_dir, tmp_path, capsys, exit_on_error_off):
    status, line = run_failing(["fit", *quick_args(mnist_dir, tmp_path), "--trainer.max_epochs", "abc"], capsys)

    assert status == 2
    assert line.startswith('error: Parser key "trainer.max_epochs": expected int, got \'abc\'.')


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_bad_config_path(tmp_path, capsys, exit_on_error_off, kind):
    path = tmp_path / "missing.yaml" if kind == "missing" else tmp_path

    status, line = run_failing(["fit", "--config", str(path)], capsys)

    assert status == 2
    expected = "File does not exist" if kind == "missing" else "Path is not a file"
    assert expected in line
    assert str(path) in line


# --------------------------------------------------------------------------------------------
# Checkpoints


def test_missing_checkpoint(mnist_dir, tmp_path, capsys):
    missing = tmp_path / "missing.ckpt"

    status, line = run_failing(["validate", *quick_args(mnist_dir, tmp_path), "--ckpt_path", str(missing)], capsys)

    assert status == 1
    assert line == f"error: Checkpoint file not found: {missing}"


def test_checkpoint_path_is_folder(mnist_dir, tmp_path, capsys):
    status, line = run_failing(["validate", *quick_args(mnist_dir, tmp_path), "--ckpt_path", str(tmp_path)], capsys)

    assert status == 1
    # Lightning's checkpoint IO and AtomicCheckpointIO word it differently.
    assert str(tmp_path) in line
    assert "is a folder" in line


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("text", "it is not a PyTorch checkpoint, or it is corrupt (Unsupported operand"),
        ("truncated", "the file is truncated or corrupt (PytorchStreamReader failed"),
        ("empty", "the file is empty or truncated."),
    ],
)
def test_corrupt_checkpoint(mnist_dir, tmp_path, capsys, kind, reason):
    path = tmp_path / "model.ckpt"
    if kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "truncated":
        save_checkpoint(path, "8C5-P2-32", hyperparameters=True)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_bytes(b"")

    status, line = run_failing(["validate", *quick_args(mnist_dir, tmp_path), "--ckpt_path", str(path)], capsys)

    assert status == 1
    assert line.startswith(f"error: Cannot load {path}: {reason}")


def test_checkpoint_of_other_architecture(mnist_dir, tmp_path, capsys):
    path = tmp_path / "other.ckpt"
    save_checkpoint(path, "8C5-P2-32", hyperparameters=False)

    status, line = run_failing(["test", *quick_args(mnist_dir, tmp_path), "--ckpt_path", str(path)], capsys)

    assert status == 1
    assert line.startswith(f"error: {path} does not fit NAClassifier: missing keys network.layers.2.conv.weight")
    assert "network.layers.0.conv.weight [8, 1, 5, 5] in the checkpoint, [15, 1, 5, 5] in the model" in line


def test_weights_only_false_rejected(mnist_dir, tmp_path, capsys):
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, "15C5-P2-40C5-P2-300", hyperparameters=True)
    plugin = ["--trainer.plugins", "na_lightning.lightning.safety.AtomicCheckpointIO"]
    argv = ["validate", *quick_args(mnist_dir, tmp_path), *plugin, "--ckpt_path", str(path), "--weights_only", "false"]

    status, line = run_failing(argv, capsys)

    assert status == 1
    assert line.startswith(f"error: Loading checkpoint {path} with weights_only=False was requested")


def test_checkpoint_hyperparameters_replace_config(mnist_dir, tmp_path):
    # LightningCLI (2.6) reads the model arguments saved in the checkpoint and builds that model.
    path = tmp_path / "other.ckpt"
    save_checkpoint(path, "8C5-P2-32", hyperparameters=True)

    cli = build_cli(["validate", *quick_args(mnist_dir, tmp_path), "--ckpt_path", str(path)])

    assert cli.model.hparams.architecture == "8C5-P2-32"
    assert 0.0 <= float(cli.trainer.callback_metrics["val_acc"]) <= 1.0


# --------------------------------------------------------------------------------------------
# Zoo


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    """A registry with one model, imported from a checkpoint with the real zoo command."""
    root = tmp_path_factory.mktemp("zoo")
    checkpoint = root / "model.ckpt"
    save_checkpoint(checkpoint, "8C5-P2-32", hyperparameters=True)
    registry = root / "zoo"
    registry.mkdir()
    main(["zoo", "--zoo-dir", str(registry), "import", str(checkpoint), "--name", "tiny_cnn.test", "--dataset", "mnist"])
    return registry


@pytest.mark.parametrize("kind", ["missing", "folder", "corrupt"])
def test_zoo_predict_bad_input(zoo_dir, tmp_path, capsys, kind):
    path = {"missing": tmp_path / "missing.png", "folder": tmp_path, "corrupt": tmp_path / "corrupt.png"}[kind]
    if kind == "corrupt":
        path.write_bytes(b"\x89PNG not really")

    with pytest.raises(SystemExit) as excinfo:
        run_cli(main, ["zoo", "--zoo-dir", str(zoo_dir), "predict", "tiny_cnn.test", str(path)])

    assert excinfo.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    assert stderr.startswith("na-lightning zoo: error: ")
    assert str(path) in stderr


def test_zoo_unknown_model(zoo_dir, capsys):
    with pytest.raises(SystemExit) as excinfo:
        run_cli(main, ["zoo", "--zoo-dir", str(zoo_dir), "info", "nosuch.model"])

    assert excinfo.value.code == 1
    assert capsys.readouterr().err.startswith("na-lightning zoo: error: Unknown model 'nosuch.model'")


@pytest.mark.parametrize("kind", ["missing", "folder", "other_architecture"])
def test_zoo_import_bad_checkpoint(zoo_dir, tmp_path, capsys, kind):
    path = {"missing": tmp_path / "missing.ckpt", "folder": tmp_path, "other_architecture": tmp_path / "o.ckpt"}[kind]
    if kind == "other_architecture":
        save_checkpoint(path, "8C5-P2-32", hyperparameters=False)

    with pytest.raises(SystemExit) as excinfo:
        run_cli(main, ["zoo", "--zoo-dir", str(zoo_dir), "import", str(path), "--name", "bad.ckpt", "--dataset", "mnist"])

    assert excinfo.value.code == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    assert stderr.startswith("na-lightning zoo: error: ")


def test_zoo_import_corrupt_checkpoint_one_line(zoo_dir, tmp_path, capsys):
    path = tmp_path / "corrupt.ckpt"
    path.write_text("not a checkpoint")

    with pytest.raises(SystemExit):
        run_cli(main, ["zoo", "--zoo-dir", str(zoo_dir), "import", str(path), "--name", "bad.ckpt", "--dataset", "mnist"])

    assert capsys.readouterr().err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# The handler itself


def test_debug_variable_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv(DEBUG_VARIABLE, "1")

    with pytest.raises(MNISTNotFoundError):
        run_cli(main, ["fit", *quick_args(tmp_path / "missing", tmp_path)])


def test_bugs_keep_traceback():
    def broken(argv):
        raise ZeroDivisionError("division by zero")

    def bad_value_elsewhere(argv):
        raise ValueError("raised outside the library")

    with pytest.raises(ZeroDivisionError):
        run_cli(broken, [])
    with pytest.raises(ValueError, match="outside the library"):
        run_cli(bad_value_elsewhere, [])


def test_library_value_error_one_line(capsys):
    def command(argv):
        MNISTTensorDataset(torch.zeros(2, 28, 28), torch.zeros(3), transform=None)

    with pytest.raises(SystemExit) as excinfo:
        run_cli(command, [])

    assert excinfo.value.code == 1
    assert capsys.readouterr().err == "error: got 2 images but 3 labels\n"


def test_non_finite_error_one_line(capsys):
    error = NonFiniteError("Non-finite loss at global step 3", step=3, epoch=0, batch_idx=3, layer="loss", quantity="loss")

    with pytest.raises(SystemExit) as excinfo:
        with report_errors([]):
            raise error

    assert excinfo.value.code == 1
    assert capsys.readouterr().err == "error: Non-finite loss at global step 3\n"


def reraised_from_worker(raise_original) -> Exception:
    """Return ``raise_original``'s exception as a DataLoader worker re-raises it in the main process."""
    try:
        raise_original()
    except Exception:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    try:
        wrapper.reraise()
    except Exception as error:
        return error
    raise AssertionError("reraise() did not raise")


def test_worker_errors_reduced_to_original_message(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"1234567")

    library_error = reraised_from_worker(lambda: read_nmnist_bin(bad))
    plain_error = reraised_from_worker(lambda: MNISTTensorDataset(torch.zeros(1, 28, 28), torch.zeros(2), None))
    outside_error = reraised_from_worker(lambda: int("x"))

    assert isinstance(library_error, EventFileError)
    assert describe_error(library_error)[0].startswith(f"Invalid N-MNIST file {bad}: its length of 7 bytes")
    assert describe_error(plain_error) == ("got 1 images but 2 labels", 1)
    assert describe_error(outside_error) is None


def test_one_line_joins_lines():
    assert one_line("first\n  second\n\nthird ") == "first second third"


def test_os_errors_without_errno():
    missing = describe_error(FileNotFoundError(2, "No such file or directory", "/data/x.png"))
    folder = describe_error(IsADirectoryError(21, "Is a directory", "/data"))

    assert missing == ("No such file or directory: /data/x.png", 1)
    assert folder == ("/data is a folder, expected a file.", 1)


# --------------------------------------------------------------------------------------------
# The real command line, in a subprocess


def run_command(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)


def console_script() -> str:
    path = shutil.which("na-lightning") or str(Path(sys.executable).parent / "na-lightning")
    if not Path(path).is_file():
        pytest.skip("the na-lightning console script is not installed")
    return path


def test_console_script_wrong_key(mnist_dir, tmp_path):
    result = run_command([console_script(), "fit", *quick_args(mnist_dir, tmp_path), "--model.tau_q", "3"], tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Option 'tau_q' is not accepted" in result.stderr


def test_console_script_zoo_error(tmp_path):
    result = run_command([console_script(), "zoo", "--zoo-dir", str(tmp_path), "info", "nosuch.model"], tmp_path)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("na-lightning zoo: error: Unknown model 'nosuch.model'")


def test_wrapped_main_missing_data(tmp_path):
    args = ["fit", *quick_args(tmp_path / "missing", tmp_path)]

    result = run_command([sys.executable, "-c", WRAPPED_MAIN, *args], tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: MNIST ")


def test_console_script_missing_data(tmp_path):
    result = run_command([console_script(), "fit", *quick_args(tmp_path / "missing", tmp_path)], tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_missing_accelerator_package_one_line():
    pytest.importorskip("lightning_fabric.accelerators.xla")
    from lightning_fabric.accelerators.xla import _XLA_AVAILABLE, XLAAccelerator

    if _XLA_AVAILABLE:
        pytest.skip("torch_xla is installed, so the TPU accelerator does not raise")
    try:
        XLAAccelerator()
    except ModuleNotFoundError as error:
        described = describe_error(error)

    assert described is not None
    message, status = described
    assert status == 1
    assert message.startswith("Requirement 'torch_xla")
    assert message.endswith("Alternatively, choose another accelerator or strategy.")


def test_import_error_elsewhere_is_a_bug():
    try:
        import na_lightning_absent_module  # noqa: F401
    except ModuleNotFoundError as error:
        assert describe_error(error) is None


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--model.architecture", "15C5-P2-40X5-P2-300", "error: Unknown token '40X5' at position 2 of architecture"),
        ("--model.time_steps", "0", "error: time_steps=0 is invalid; expected an integer >= 1."),
        ("--model.grad", "nah", "error: grad='nah' is not supported; expected one of ('na', 'stbp')."),
    ],
)
def test_invalid_model_value_one_line(option, value, expected, tmp_path, capsys):
    status, line = run_failing(["fit", *quick_args(tmp_path / "absent", tmp_path), option, value], capsys)

    assert status == 1
    assert line.startswith(expected)
    assert "Union subtypes" not in line
