"""Training survives faults: resume after SIGKILL, atomic checkpoint files, safe loading, and a stop
on non-finite values (``na_lightning.lightning.safety``)."""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from na_lightning.lightning import safety
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.lightning.safety import (
    AtomicCheckpointIO,
    CheckpointLoadError,
    NonFiniteError,
    NonFiniteGuard,
    RandomStateCheckpoint,
    atomic_write,
)
from tests.conftest import REPO_ROOT

CHILD_TIMEOUT_S = 180

# --------------------------------------------------------------------------------------------
# Resume after SIGKILL
#
# The child trains a small network on 224 real MNIST images (7 batches of 32 per epoch, with
# augmentation) for 3 epochs and checkpoints at the end of every epoch (every 7 steps). A killed
# run stops in the middle of epoch 1, at step 10, and resumes from the checkpoint of step 7.
#
# What makes the resumed run repeat the uninterrupted one exactly:
# - Lightning restores weights, optimizer and scheduler states and the loops' progress.
# - RandomStateCheckpoint restores the global random state, which augmentation draws from.
# - The training order must depend only on the seed and the epoch. MNISTDataModule shuffles with
#   EpochRandomSampler (seed + epoch) and gives the DataLoader a generator of its own
#   (test_plain_mnist_module_resume). EpochSeededMNIST below builds the same kind of training
#   loader by hand.
# - Validation is off: a DataLoader's iter() draws its base seed from the global random state,
#   so a validation run between a checkpoint and the next epoch shifts the stream.
# A mid-epoch checkpoint cannot be resumed exactly: Lightning (2.6) restarts a plain DataLoader
# from its first batch and warns about it.

CHILD_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import Callback, ModelCheckpoint
    from torch.utils.data import DataLoader, RandomSampler

    from na_lightning.data import MNISTDataModule
    from na_lightning.lightning.classifier import NAClassifier
    from na_lightning.lightning.safety import AtomicCheckpointIO, NonFiniteGuard, RandomStateCheckpoint

    config = json.loads(sys.argv[1])
    out = Path(config["out"])
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True)


    class EpochRandomSampler(RandomSampler):
        def __init__(self, data_source, seed):
            super().__init__(data_source)
            self.seed = seed
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            yield from torch.randperm(len(self.data_source), generator=generator).tolist()


    class EpochSeededMNIST(MNISTDataModule):
        def train_dataloader(self):
            return DataLoader(
                self.train_dataset,
                batch_size=self.batch_size,
                sampler=EpochRandomSampler(self.train_dataset, self.seed),
                generator=torch.Generator().manual_seed(self.seed),
            )


    class PauseAtStep(Callback):
        # Stand still after an optimizer step, so that the parent kills the process there.
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == config["pause_step"]:
                (out / "paused").write_text(str(trainer.global_step))
                time.sleep(600)


    module = EpochSeededMNIST if config["epoch_seeded"] else MNISTDataModule
    data = module(
        data_dir=config["data_dir"], batch_size=32, val_size=32, train_subset=256,
        num_workers=0, augment=True, download=False,
    )
    model = NAClassifier(architecture="6C5-P2-12C5-P2-32", kernel="eager")
    callbacks = [
        ModelCheckpoint(dirpath=out / "checkpoints", filename="{step}", every_n_train_steps=7, save_top_k=-1),
        NonFiniteGuard(),
    ]
    if config["random_state"]:
        callbacks.append(RandomStateCheckpoint())
    if "pause_step" in config:
        callbacks.append(PauseAtStep())
    trainer = pl.Trainer(
        max_epochs=3, deterministic=True, accelerator="cpu", devices=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, gradient_clip_val=1.0, default_root_dir=out,
        plugins=[AtomicCheckpointIO()], callbacks=callbacks,
    )
    trainer.fit(model, datamodule=data, ckpt_path=config.get("ckpt_path"))
    torch.save({"state_dict": model.state_dict(), "global_step": trainer.global_step}, out / "final.pt")
    """
)


def start_child(script: Path, out: Path, mnist_dir: Path, **config) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    config = {"out": str(out), "data_dir": str(mnist_dir), "epoch_seeded": True, "random_state": True, **config}
    log = (out / "child.log").open("w")
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps(config)], stdout=log, stderr=subprocess.STDOUT, cwd=out
    )


def finish(child: subprocess.Popen, out: Path) -> dict:
    returncode = child.wait(timeout=CHILD_TIMEOUT_S)
    assert returncode == 0, (out / "child.log").read_text()[-3000:]
    return torch.load(out / "final.pt", weights_only=True)


def kill_when_paused(child: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not (out / "paused").exists():
        assert child.poll() is None, (out / "child.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the child did not reach the pause step"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def differing_tensors(first: dict, second: dict) -> list[str]:
    assert first.keys() == second.keys()
    return [name for name in first if not torch.equal(first[name], second[name])]


@pytest.mark.slow
def test_killed_run_resumes_to_same_weights(mnist_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(CHILD_SCRIPT)

    uninterrupted = start_child(script, tmp_path / "uninterrupted", mnist_dir)
    killed_out = tmp_path / "killed"
    killed = start_child(script, killed_out, mnist_dir, pause_step=10)
    kill_when_paused(killed, killed_out)
    reference = finish(uninterrupted, tmp_path / "uninterrupted")

    written = sorted(path.name for path in (killed_out / "checkpoints").iterdir())
    assert written == ["step=7.ckpt"]
    checkpoint = killed_out / "checkpoints" / "step=7.ckpt"

    resumed_out = tmp_path / "resumed"
    resumed = start_child(script, resumed_out, mnist_dir, ckpt_path=str(checkpoint))
    without_random_state_out = tmp_path / "without_random_state"
    without_random_state = start_child(
        script, without_random_state_out, mnist_dir, ckpt_path=str(checkpoint), random_state=False
    )
    result = finish(resumed, resumed_out)
    control = finish(without_random_state, without_random_state_out)

    assert reference["global_step"] == 21
    assert result["global_step"] == 21
    assert differing_tensors(reference["state_dict"], result["state_dict"]) == []
    # Without the restored random state the augmentation differs, and so do the weights.
    assert differing_tensors(reference["state_dict"], control["state_dict"]) != []


@pytest.mark.slow
def test_plain_mnist_module_resume(mnist_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(CHILD_SCRIPT)

    uninterrupted = start_child(script, tmp_path / "uninterrupted", mnist_dir, epoch_seeded=False)
    killed_out = tmp_path / "killed"
    killed = start_child(script, killed_out, mnist_dir, epoch_seeded=False, pause_step=10)
    kill_when_paused(killed, killed_out)
    reference = finish(uninterrupted, tmp_path / "uninterrupted")

    resumed_out = tmp_path / "resumed"
    checkpoint = killed_out / "checkpoints" / "step=7.ckpt"
    resumed = start_child(script, resumed_out, mnist_dir, epoch_seeded=False, ckpt_path=str(checkpoint))
    result = finish(resumed, resumed_out)

    assert differing_tensors(reference["state_dict"], result["state_dict"]) == []


# --------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"good")

    with pytest.raises(OSError, match="disk full"):
        with atomic_write(target) as handle:
            handle.write(b"partial")
            raise OSError("disk full")

    assert target.read_bytes() == b"good"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.bin"]


def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / "sub" / "data.txt"

    with atomic_write(target, "w") as handle:
        handle.write("new")

    assert target.read_text() == "new"
    assert sorted(path.name for path in target.parent.iterdir()) == ["data.txt"]


def test_atomic_write_respects_umask(tmp_path):
    target = tmp_path / "data.bin"
    previous = os.umask(0o022)
    try:
        with atomic_write(target) as handle:
            handle.write(b"x")
    finally:
        os.umask(previous)

    assert target.stat().st_mode & 0o777 == 0o644


def test_checkpoint_io_failed_save_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    plugin = AtomicCheckpointIO()
    plugin.save_checkpoint({"state_dict": {"weight": torch.ones(3)}, "step": 1}, path)
    good_bytes = path.read_bytes()

    def crash_mid_write(obj, handle, *args, **kwargs):
        handle.write(good_bytes[: len(good_bytes) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="No space left"):
        plugin.save_checkpoint({"state_dict": {"weight": torch.zeros(3)}, "step": 2}, path)
    monkeypatch.undo()

    assert path.read_bytes() == good_bytes
    loaded = plugin.load_checkpoint(path)
    assert loaded["step"] == 1
    assert torch.equal(loaded["state_dict"]["weight"], torch.ones(3))
    assert sorted(child.name for child in tmp_path.iterdir()) == ["last.ckpt"]


WRITER_SCRIPT = textwrap.dedent(
    """
    import io, sys, time
    from pathlib import Path

    import torch

    from na_lightning.lightning.safety import AtomicCheckpointIO

    target = Path(sys.argv[1])
    real_save = torch.save


    def save_slowly(obj, handle):
        # Write half of the bytes, then stand still until the parent kills the process.
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        (target.parent / "half_written").touch()
        time.sleep(600)


    plugin = AtomicCheckpointIO()
    plugin.save_checkpoint({"step": 1, "weight": torch.full((256, 256), 1.0)}, target)
    torch.save = save_slowly
    plugin.save_checkpoint({"step": 2, "weight": torch.full((256, 256), 2.0)}, target)
    """
)


def test_checkpoint_io_survives_sigkill_mid_write(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    target = folder / "last.ckpt"

    child = subprocess.Popen([sys.executable, str(script), str(target)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not (folder / "half_written").exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    loaded = AtomicCheckpointIO().load_checkpoint(target)
    assert loaded["step"] == 1
    assert torch.equal(loaded["weight"], torch.full((256, 256), 1.0))
    # The killed write leaves its hidden temporary file behind, but no other *.ckpt file.
    partial = [path.name for path in folder.iterdir() if path.name.endswith(safety.PARTIAL_SUFFIX)]
    assert len(partial) == 1
    assert partial[0].startswith(".last.ckpt.")
    assert sorted(path.name for path in folder.glob("*.ckpt")) == ["last.ckpt"]


# --------------------------------------------------------------------------------------------
# Safe loading


def save_with_namespace(path: Path) -> None:
    torch.save({"state_dict": {"weight": torch.ones(2)}, "extra": argparse.Namespace(lr=0.1)}, path)


def test_checkpoint_io_rejects_unsafe_objects(tmp_path):
    path = tmp_path / "unsafe.ckpt"
    save_with_namespace(path)

    with pytest.raises(CheckpointLoadError, match="argparse.Namespace, which weights_only loading rejects"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_checkpoint_io_ignores_force_no_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "unsafe.ckpt"
    save_with_namespace(path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    # Lightning's own plugin passes weights_only=None, which this variable turns into False.
    with pytest.warns(UserWarning, match="forcing weights_only=False"):
        loaded = TorchCheckpointIO().load_checkpoint(path)
    assert isinstance(loaded["extra"], argparse.Namespace)

    with pytest.raises(CheckpointLoadError, match="weights_only loading rejects"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_checkpoint_io_weights_only_false(tmp_path):
    path = tmp_path / "unsafe.ckpt"
    save_with_namespace(path)

    with pytest.raises(CheckpointLoadError, match="allow_unpickling=True"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)

    loaded = AtomicCheckpointIO(allow_unpickling=True).load_checkpoint(path, weights_only=False)
    assert loaded["extra"].lr == 0.1


def test_checkpoint_io_remote_uses_weights_only(monkeypatch):
    calls = []

    def record(path, map_location=None, weights_only=None):
        calls.append((path, weights_only))
        return {"state_dict": {}}

    monkeypatch.setattr(safety, "pl_load", record)
    # Lightning's loader defaults to weights_only=False for http(s) URLs.
    AtomicCheckpointIO().load_checkpoint("https://example.invalid/model.ckpt")

    assert calls == [("https://example.invalid/model.ckpt", True)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint", "not a PyTorch checkpoint, or it is corrupt"),
        (b"", "empty or truncated"),
        ("half", "truncated or corrupt"),
    ],
)
def test_checkpoint_io_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "half":
        torch.save({"weight": torch.ones(100)}, path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)

    with pytest.raises(CheckpointLoadError, match=message) as excinfo:
        AtomicCheckpointIO().load_checkpoint(path)
    assert str(path) in str(excinfo.value)


def test_checkpoint_io_folder_and_missing(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"")

    with pytest.raises(CheckpointLoadError, match="is a folder. Pass a .ckpt file. It contains last.ckpt"):
        AtomicCheckpointIO().load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "missing.ckpt")


def torch_load_calls(source: str) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Attribute) and function.attr == "load":
            if isinstance(function.value, ast.Name) and function.value.id == "torch":
                calls.append(node)
    return calls


def test_package_torch_load_uses_weights_only():
    files = sorted((REPO_ROOT / "na_lightning").rglob("*.py"))
    checked = 0
    for path in files:
        source = path.read_text()
        assert "pickle.load" not in source, f"{path} unpickles with the pickle module"
        assert "from torch import load" not in source, f"{path} imports torch.load under another name"
        for call in torch_load_calls(source):
            keywords = {keyword.arg: keyword.value for keyword in call.keywords}
            value = keywords.get("weights_only")
            where = f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
            assert isinstance(value, ast.Constant) and value.value is True, f"{where} lacks weights_only=True"
            checked += 1
    assert checked >= 2


def test_torch_load_call_finder():
    source = "torch.load(path)\ntorch.load(path, weights_only=False)\nnp.load(path)\n"

    calls = torch_load_calls(source)

    assert [call.lineno for call in calls] == [1, 2]


# --------------------------------------------------------------------------------------------
# Random state


def test_random_state_round_trip(tmp_path):
    callback = RandomStateCheckpoint()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = tmp_path / "state.pt"
    torch.save(callback.state_dict(), path)
    expected = (random.random(), np.random.rand(), torch.rand(3))

    random.seed(10)
    np.random.seed(20)
    torch.manual_seed(30)
    callback.load_state_dict(torch.load(path, weights_only=True))
    drawn = (random.random(), np.random.rand(), torch.rand(3))

    assert drawn[0] == expected[0]
    assert drawn[1] == expected[1]
    assert torch.equal(drawn[2], expected[2])


def test_random_state_skips_multi_process(caplog):
    callback = RandomStateCheckpoint()
    callback._world_size = 2

    assert callback.state_dict() == {}
    torch.manual_seed(5)
    before = torch.get_rng_state()
    callback.load_state_dict({})
    assert torch.equal(torch.get_rng_state(), before)
    assert "did not restore the random states" in caplog.text


# --------------------------------------------------------------------------------------------
# Non-finite guard


def tiny_model() -> NAClassifier:
    torch.manual_seed(0)
    return NAClassifier(
        architecture="4C3-P2-8", num_classes=3, input_shape=(1, 10, 10), time_steps=3, kernel="eager"
    )


def tiny_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 1, 10, 10, generator=generator) * 2
    labels = torch.randint(0, 3, (32,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=8)


def fit_until_error(tmp_path: Path, model: NAClassifier, *callbacks: Callback) -> NonFiniteError:
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            *callbacks,
            NonFiniteGuard(),
            ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="{step}", every_n_train_steps=1, save_top_k=-1),
        ],
    )
    with pytest.raises(NonFiniteError) as excinfo:
        trainer.fit(model, train_dataloaders=tiny_loader())
    return excinfo.value


def saved_steps(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "checkpoints").glob("*.ckpt"))


def assert_checkpoints_finite(tmp_path: Path) -> None:
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(tensor).all() for tensor in state.values()), path.name


class AtStep(Callback):
    """Run ``action(pl_module)`` in ``hook`` of the batch that starts at global step ``step``."""

    def __init__(self, step: int, hook: str, action):
        self.step = step
        self.hook = hook
        self.action = action
        self._started_at = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._started_at = trainer.global_step
        if self.hook == "on_train_batch_start" and self._started_at == self.step:
            self.action(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.hook == "on_train_batch_end" and self._started_at == self.step:
            self.action(pl_module)


def test_guard_stops_on_nan_loss(tmp_path):
    model = tiny_model()

    def poison_loss(pl_module):
        pl_module.loss_fn.register_forward_hook(lambda module, inputs, loss: loss * float("nan"))

    error = fit_until_error(tmp_path, model, AtStep(2, "on_train_batch_start", poison_loss))

    assert error.layer == "loss"
    assert error.quantity == "loss"
    assert error.step == 2
    assert "Non-finite loss at global step 2 (epoch 0, batch 2) in the loss: the loss is nan" in str(error)
    assert saved_steps(tmp_path) == ["step=1.ckpt", "step=2.ckpt"]
    assert_checkpoints_finite(tmp_path)


def test_guard_names_layer_with_nan_weights(tmp_path):
    model = tiny_model()

    def poison_weights(pl_module):
        with torch.no_grad():
            pl_module.network.layers[2].linear.weight[0, 0] = float("nan")

    error = fit_until_error(tmp_path, model, AtStep(1, "on_train_batch_end", poison_weights))

    assert error.layer == "network.layers.2"
    assert error.quantity == "weight"
    assert error.step == 1
    assert "in layer 'network.layers.2': its weights are non-finite after the optimizer step" in str(error)
    # Step 2 (the weights after batch 1) was never written.
    assert saved_steps(tmp_path) == ["step=1.ckpt"]
    assert_checkpoints_finite(tmp_path)


def test_guard_names_layer_with_inf_gradient(tmp_path):
    model = tiny_model()
    snapshot = {}

    def poison_gradient(pl_module):
        snapshot.update({name: tensor.clone() for name, tensor in pl_module.state_dict().items()})
        pl_module.network.layers[0].conv.weight.register_hook(lambda grad: grad * float("inf"))

    error = fit_until_error(tmp_path, model, AtStep(1, "on_train_batch_start", poison_gradient))

    assert error.layer == "network.layers.0"
    assert error.quantity == "gradient"
    assert error.step == 1
    assert "its gradients are non-finite" in str(error)
    # The optimizer step never ran, so the weights are those before the batch.
    assert differing_tensors(snapshot, model.state_dict()) == []
    assert saved_steps(tmp_path) == ["step=1.ckpt"]


def test_guard_names_layer_with_nan_output(tmp_path):
    model = tiny_model()
    # Registered before the guard's own hook, so the guard records the changed output.
    model.network.layers[3].register_forward_hook(lambda module, inputs, output: output * float("nan"))

    error = fit_until_error(tmp_path, model)

    assert error.layer == "network.layers.3"
    assert error.quantity == "output"
    assert error.step == 0
    assert "its output (PSC) is non-finite" in str(error)
    assert saved_steps(tmp_path) == []


def test_guard_checks_weights_at_start(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.network.layers[3].linear.weight.fill_(float("inf"))

    error = fit_until_error(tmp_path, model)

    assert error.layer == "network.layers.3"
    assert "at the start of training" in str(error)
    assert saved_steps(tmp_path) == []


def test_guard_passes_finite_training(tmp_path):
    model = tiny_model()
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[NonFiniteGuard()],
    )

    trainer.fit(model, train_dataloaders=tiny_loader())

    assert trainer.global_step == 3
    assert math.isfinite(float(trainer.callback_metrics["train_loss"]))


def test_guard_stops_every_process(tmp_path):
    # Another DDP process found a non-finite loss: this one stops too, naming that reason.
    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all: False)
    trainer = SimpleNamespace(global_step=5, current_epoch=1, world_size=2, global_rank=1, strategy=strategy)
    guard = NonFiniteGuard()
    guard.on_train_batch_start(trainer, tiny_model(), batch=None, batch_idx=2)

    with pytest.raises(NonFiniteError, match=r"another process has a non-finite loss .*rank 1") as excinfo:
        guard.on_before_backward(trainer, tiny_model(), torch.tensor(0.5))
    assert excinfo.value.step == 5
    assert excinfo.value.layer == "loss"


def test_guard_error_pickles():
    error = NonFiniteError("message", step=1, epoch=0, batch_idx=1, layer="loss", quantity="loss")

    copy = pickle.loads(pickle.dumps(error))

    assert str(copy) == "message"
    assert (copy.step, copy.epoch, copy.batch_idx, copy.layer, copy.quantity) == (1, 0, 1, "loss", "loss")
