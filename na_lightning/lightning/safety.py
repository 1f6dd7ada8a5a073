"""Fault tolerance for training: atomic checkpoint files, safe checkpoint loading, resumable random
state, and a stop on non-finite values.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the target folder,
  fsyncs it and renames it over the target, so a crash during a write leaves the previous file
  intact. It loads checkpoints with ``torch.load(weights_only=True)`` only.
- :class:`RandomStateCheckpoint` stores the global random states (Python, NumPy, torch) in each
  checkpoint and restores them when training resumes.
- :class:`NonFiniteGuard` stops training with :class:`NonFiniteError` as soon as the loss, a
  spiking layer's output, a gradient or a weight is NaN or infinite.

Use them with a Trainer::

    trainer = pl.Trainer(
        plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(), RandomStateCheckpoint(), NonFiniteGuard()],
    )
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import _load as pl_load
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn

from na_lightning.nn.layers import SpikingLayer

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
"""Suffix of the temporary file that :func:`atomic_write` renames over the target."""


class CheckpointLoadError(ValueError):
    """Raised when a checkpoint file cannot be read: corrupt, truncated, a folder, or not safe to load."""


class NonFiniteError(FloatingPointError):
    """Raised by :class:`NonFiniteGuard` when training produces a NaN or infinite value.

    Attributes:
        step: ``trainer.global_step`` when the batch started, i.e. the number of optimizer steps
            completed before it.
        epoch: the training epoch, counted from 0.
        batch_idx: the batch index within the epoch.
        layer: qualified module name of the first spiking layer with a non-finite value
            (e.g. ``"network.layers.2"``), a parameter name outside the spiking layers, or
            ``"loss"`` when only the loss is non-finite.
        quantity: ``"loss"``, ``"output"``, ``"gradient"`` or ``"weight"``.
    """

    def __init__(self, message: str, *, step: int, epoch: int, batch_idx: int, layer: str, quantity: str):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.batch_idx = batch_idx
        self.layer = layer
        self.quantity = quantity

    def __reduce__(self):
        # The keyword-only arguments need this to survive pickling (DDP and worker processes).
        fields = (self.step, self.epoch, self.batch_idx, self.layer, self.quantity)
        return (_rebuild_non_finite_error, (str(self), *fields))


def _rebuild_non_finite_error(
    message: str, step: int, epoch: int, batch_idx: int, layer: str, quantity: str
) -> NonFiniteError:
    return NonFiniteError(message, step=step, epoch=epoch, batch_idx=batch_idx, layer=layer, quantity=quantity)


# --------------------------------------------------------------------------------------------
# Atomic files


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` only once it is completely written.

    The temporary file ``.<name>.<random>.partial`` lies in the folder of ``path``, so the final
    :func:`os.replace` is an atomic rename on POSIX and Windows. The data is fsynced before the
    rename and the folder after it, so the new file also survives a power loss once the block
    exits. If the block raises, the temporary file is deleted and ``path`` keeps its old content.

    Note:
        A process killed with SIGKILL (or a power loss) during the write cannot delete its
        temporary file: a stale ``.<name>.*.partial`` file stays next to ``path``. Nothing
        reads it, and it can be deleted.

    Args:
        path: the file to write; missing parent folders are created.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r} is not supported; expected 'wb' or 'w'.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")

    # O_EXCL never follows a link planted under the temporary name. The mode 0o666 lets the
    # umask decide the permissions, as for a file opened with open().
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder``. Does nothing where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _local_path(path: str | os.PathLike[str]) -> Path | None:
    """Return ``path`` as a local path, or None for a remote URL such as ``s3://`` or ``https://``."""
    text = os.fspath(path)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if "://" in text:
        return None
    return Path(text)


# --------------------------------------------------------------------------------------------
# Checkpoint IO


def describe_load_failure(error: BaseException) -> str | None:
    """Return a one-line reason why ``torch.load`` failed on a file, or None for another error.

    Recognizes the errors of a file that is not a PyTorch checkpoint, is truncated, or contains
    objects that ``weights_only=True`` rejects.
    """
    message = str(error).strip()
    if isinstance(error, pickle.UnpicklingError):
        # torch (2.6 to 2.14) puts the reason after "WeightsUnpickler error:", up to a blank line.
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", message, re.DOTALL)
        if detail is None:
            first_line = message.splitlines()[0] if message else "unpickling failed"
            return f"it is not a PyTorch checkpoint ({first_line})"
        reason = detail.group(1).strip()
        if reason.startswith("Unsupported global"):
            found = re.match(r"Unsupported global: GLOBAL (\S+)", reason)
            name = found.group(1) if found else reason
            return (
                f"it contains an object of type {name}, which weights_only loading rejects "
                "because unpickling it could run code from the file"
            )
        return f"it is not a PyTorch checkpoint, or it is corrupt ({reason})"
    if isinstance(error, EOFError):
        return "the file is empty or truncated"
    if isinstance(error, RuntimeError) and "PytorchStreamReader" in message:
        return f"the file is truncated or corrupt ({message.split('. ')[0]})"
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoint IO that writes files atomically and loads them with ``weights_only=True``.

    Saving: the checkpoint is written with :func:`atomic_write`, so an interrupted save (an
    exception, SIGKILL, a full disk) never replaces a good checkpoint with a partial file.
    Lightning's own ``TorchCheckpointIO`` (2.6) writes through an fsspec transaction whose
    temporary file lies in the system temporary folder, which is not atomic when that folder is
    on another file system, and it does not fsync. Remote paths (``s3://`` and the like) are
    saved by ``TorchCheckpointIO``.

    Loading: ``weights_only=None`` (Lightning's default) is turned into ``True``, so only tensors
    and plain Python values are unpickled, also where Lightning or the environment would choose
    ``False`` (a ``https://`` checkpoint, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``). A request for
    ``weights_only=False`` raises :class:`CheckpointLoadError` unless ``allow_unpickling`` is set.

    Args:
        allow_unpickling: honor ``weights_only=False``, which runs arbitrary code from the file.
            Set it only for checkpoints from a trusted source.

    Example:
        >>> trainer = pl.Trainer(plugins=[AtomicCheckpointIO()], logger=False)  # doctest: +SKIP
    """

    def __init__(self, allow_unpickling: bool = False) -> None:
        super().__init__()
        self.allow_unpickling = allow_unpickling

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (see the class docstring)."""
        local = _local_path(path)
        if local is None or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_write(local) as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(
        self,
        path,
        map_location: Callable | str | torch.device | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint with ``weights_only=True``.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            CheckpointLoadError: ``path`` is a folder, the file is not a readable checkpoint,
                it contains objects that ``weights_only`` loading rejects, or
                ``weights_only=False`` was requested without ``allow_unpickling``.
        """
        if weights_only is False and not self.allow_unpickling:
            raise CheckpointLoadError(
                f"Loading checkpoint {path} with weights_only=False was requested, which can run "
                "arbitrary code from the file. Remove that request (e.g. --weights_only false), or "
                "for a checkpoint from a trusted source pass AtomicCheckpointIO(allow_unpickling=True)."
            )
        if weights_only is None:
            weights_only = True

        local = _local_path(path)
        if local is not None:
            _check_checkpoint_file(local)
        try:
            return pl_load(path, map_location=map_location, weights_only=weights_only)
        except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
            reason = describe_load_failure(error)
            if reason is None:
                raise
            raise CheckpointLoadError(f"Cannot load checkpoint {path}: {reason}.") from error


def _check_checkpoint_file(path: Path) -> None:
    if path.is_dir():
        found = sorted(child.name for child in path.glob("*.ckpt"))
        hint = f" It contains {', '.join(found[:3])}{', ...' if len(found) > 3 else ''}." if found else ""
        raise CheckpointLoadError(f"Checkpoint path {path} is a folder. Pass a .ckpt file.{hint}")
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")


# --------------------------------------------------------------------------------------------
# Random state


class RandomStateCheckpoint(Callback):
    """Store the global random states in each checkpoint and restore them on resume.

    Lightning (2.6) saves the loops' progress, the weights and the optimizer and scheduler
    states, but not the random states. Data augmentation and dropout draw from the global torch
    random state, so a resumed run draws other augmentations than the uninterrupted one. This
    callback saves the Python, NumPy, torch CPU and CUDA random states when a checkpoint is
    written and restores them when ``Trainer.fit(ckpt_path=...)`` loads it.

    Note:
        The restored states are those at the moment the checkpoint was written. They continue
        the uninterrupted run's random stream exactly only for a checkpoint written at the end
        of an epoch, with ``num_workers=0``, by a single process. A mid-epoch resume restarts the
        data loader, and data loader workers draw from their own generators. With more than one
        process the states are neither saved nor restored, and a warning is logged, because the
        checkpoint contains the callback state of rank 0 only.
    """

    def __init__(self) -> None:
        super().__init__()
        self._world_size = 1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._world_size = trainer.world_size

    def state_dict(self) -> dict[str, Any]:
        if self._world_size > 1:
            return {}
        numpy_state = np.random.get_state()
        state = {
            "python": list(random.getstate()),
            "numpy": {
                "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
                "position": int(numpy_state[2]),
                "has_gauss": int(numpy_state[3]),
                "cached_gaussian": float(numpy_state[4]),
            },
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._world_size > 1 or not state_dict:
            log.warning(
                "RandomStateCheckpoint did not restore the random states: the checkpoint contains "
                "none, or training runs in %d processes. Augmentation after the resume differs "
                "from an uninterrupted run.",
                self._world_size,
            )
            return
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy_state = state_dict["numpy"]
        np.random.set_state((
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        ))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


# --------------------------------------------------------------------------------------------
# Non-finite guard


class NonFiniteGuard(Callback):
    """Stop training with :class:`NonFiniteError` when a NaN or infinite value appears.

    The checks, in the order in which a training step meets them:

    - before the backward pass: the loss and the output of every spiking layer
      (:class:`~na_lightning.nn.layers.SpikingLayer`) in this step's forward pass;
    - before the optimizer step: every gradient, so the step never applies a non-finite update;
    - after the optimizer step: every weight, before any callback (such as ``ModelCheckpoint``)
      can save it, and before the next forward pass;
    - at the start of training: every weight, e.g. after resuming from a checkpoint.

    The error names the step and the first spiking layer, in network order, whose weights,
    gradients or output are non-finite, or ``"loss"`` when only the loss is. The exception ends
    ``Trainer.fit`` before ``ModelCheckpoint`` saves the step. Each check costs one reduction per
    tensor and one device synchronization per check. Under DDP the loss check also takes one
    all-reduce per step, so that every process stops when one of them finds a non-finite value.

    With 16-bit mixed precision (``precision="16-mixed"``) infinite gradients are expected: the
    gradient scaler skips those steps and lowers the scale. The gradient check is then skipped,
    and the weight check still runs.

    Args:
        check_outputs: record whether each spiking layer's output is finite (a forward hook).
    """

    def __init__(self, check_outputs: bool = True) -> None:
        super().__init__()
        self.check_outputs = check_outputs
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._output_finite: dict[str, Tensor] = {}
        self._position = (0, 0, 0)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.check_outputs:
            return
        for name, module in pl_module.named_modules():
            if isinstance(module, SpikingLayer):
                self._hooks.append(module.register_forward_hook(self._record_output(name)))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self._output_finite.clear()

    def _record_output(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if module.training:
                self._output_finite[name] = torch.isfinite(output.detach()).all()

        return hook

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._position = (trainer.global_step, trainer.current_epoch, 0)
        self._check_weights(pl_module, "at the start of training")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._position = (trainer.global_step, trainer.current_epoch, batch_idx)
        self._output_finite.clear()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        flags = [torch.isfinite(loss.detach()).all(), *self._output_finite.values()]
        finite_here = bool(torch.stack(flags).all())

        # Under DDP every process must stop, or the others wait in the next collective for ever.
        finite = finite_here
        if trainer.world_size > 1:
            finite = trainer.strategy.reduce_boolean_decision(finite_here, all=True)
        if finite:
            return
        if finite_here:
            detail = f"another process has a non-finite loss or layer output (this is rank {trainer.global_rank})"
            self._raise("loss", "loss", detail)

        for name, layer in _spiking_layers(pl_module):
            output_finite = self._output_finite.get(name)
            if not _all_finite(layer.parameters()):
                self._raise(name, "weight", "its weights are non-finite")
            if output_finite is not None and not bool(output_finite):
                self._raise(name, "output", "its output (PSC) is non-finite")
        self._raise("loss", "loss", f"the loss is {loss.detach().float().flatten()[0].item()}")

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        gradients = [parameter.grad for parameter in pl_module.parameters() if parameter.grad is not None]
        if not gradients or bool(torch.stack([torch.isfinite(grad).all() for grad in gradients]).all()):
            return

        def has_bad_gradient(parameter: Tensor) -> bool:
            return parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all())

        self._locate_and_raise(pl_module, "gradient", has_bad_gradient)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._check_weights(pl_module, "after the optimizer step")

    def _check_weights(self, pl_module: pl.LightningModule, when: str) -> None:
        if _all_finite(pl_module.parameters()):
            return
        self._locate_and_raise(
            pl_module, "weight", lambda p: not bool(torch.isfinite(p.detach()).all()), when=when
        )

    def _locate_and_raise(
        self, pl_module: nn.Module, quantity: str, is_bad: Callable[[Tensor], bool], when: str = ""
    ) -> None:
        """Raise naming the first spiking layer, else the first parameter, for which ``is_bad`` holds."""
        suffix = f" {when}" if when else ""
        for name, layer in _spiking_layers(pl_module):
            if any(is_bad(parameter) for parameter in layer.parameters()):
                self._raise(name, quantity, f"its {quantity}s are non-finite{suffix}")
        for name, parameter in pl_module.named_parameters():
            if is_bad(parameter):
                self._raise(name, quantity, f"parameter {name} has a non-finite {quantity}{suffix}")
        raise AssertionError(f"NonFiniteGuard found a non-finite {quantity} but no parameter that has one")

    def _raise(self, layer: str, quantity: str, detail: str) -> None:
        step, epoch, batch_idx = self._position
        where = "in the loss" if layer == "loss" else f"in layer {layer!r}"
        message = (
            f"Non-finite {quantity} at global step {step} (epoch {epoch}, batch {batch_idx}) {where}: "
            f"{detail}. Training stopped, and no checkpoint was written for this step. "
            f"{_FIXES[quantity]}"
        )
        raise NonFiniteError(
            message, step=step, epoch=epoch, batch_idx=batch_idx, layer=layer, quantity=quantity
        )


_FIXES = {
    "loss": "Check the loss function, its targets and the labels of this batch.",
    "output": "Check this layer's input and weights, and the data of this batch for NaN or infinite values.",
    "gradient": "Check the data and the loss of this batch. Gradient clipping cannot repair a NaN gradient.",
    "weight": "Resume from the last checkpoint with a lower learning rate.",
}


def _spiking_layers(module: nn.Module) -> Iterator[tuple[str, SpikingLayer]]:
    for name, child in module.named_modules():
        if isinstance(child, SpikingLayer):
            yield name, child


def _all_finite(parameters) -> bool:
    flags = [torch.isfinite(parameter.detach()).all() for parameter in parameters]
    return not flags or bool(torch.stack(flags).all())
