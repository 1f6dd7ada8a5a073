"""Data-parallel training on CPU: two DDP processes (gloo) must train like one process.

The DDP run uses ``strategy="ddp_fork"``. Plain ``strategy="ddp"`` starts each extra rank by
running ``sys.argv`` again, which under pytest is the whole pytest command. ``"ddp_spawn"``
also passes, but it imports torch and Lightning again in every rank. Its fixture took 34 s,
against 8 to 13 s with ``"ddp_fork"``, on 2 CPU cores shared with other jobs.

Why the weights must match: Lightning replaces the training sampler by a
``DistributedSampler(shuffle=True)`` seeded with ``$PL_GLOBAL_SEED``. Rank ``r`` reads entries
``r, r + 2, r + 4, ...`` of one permutation, so step ``k`` on both ranks together reads entries
``2kB .. 2kB + 2B - 1`` for a per-rank batch ``B``. These are batch ``k`` of a single-process
loader with batch ``2B`` that reads the whole permutation in order. The loss is a mean over
the batch and DDP averages the gradients of the ranks, so both runs take the same gradient,
clip it to the same norm and make the same AdamW step.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy
from torch.distributed.fsdp import ShardingStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from na_lightning.cli import build_cli
from na_lightning.data.mnist import MNISTDataModule
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.losses import predict_classes
from tests.conftest import REPO_ROOT

WORLD_SIZE = 2
PER_RANK_BATCH = 8
GLOBAL_BATCH = WORLD_SIZE * PER_RANK_BATCH
TRAIN_STEPS = 3
TRAIN_IMAGES = GLOBAL_BATCH * TRAIN_STEPS
VAL_IMAGES = 64
ARCHITECTURE = "15C5-P2-40C5-P2-300"
SAMPLER_SEED = 7

STRATEGY_DIR = REPO_ROOT / "configs" / "strategies"
MNIST_CONFIG = str(REPO_ROOT / "configs" / "mnist_cnn.yaml")
ALEXNET = "96C3-D0.2-256C3-D0.2-P2-384C3-D0.2-P2-384C3-D0.2-256C3-D0.2-1024-D0.2-1024-D0.2"


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class RankRecorder(Callback):
    """Save, on every rank, the sampler indices, the final weights and the logged metrics."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.train_indices: list[int] = []
        self.val_indices: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.train_indices = list(trainer.train_dataloader.sampler)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.val_indices = list(trainer.val_dataloaders.sampler)

    def on_train_end(self, trainer, pl_module) -> None:
        record = {
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "train_indices": self.train_indices,
            "val_indices": self.val_indices,
            "state_dict": {name: value.detach().clone() for name, value in pl_module.state_dict().items()},
            "metrics": {name: value.detach().clone() for name, value in trainer.callback_metrics.items()},
        }
        torch.save(record, self.folder / f"rank{trainer.global_rank}.pt")


class RecordingCheckpointIO(TorchCheckpointIO):
    """Append ``<rank> <path>`` to ``saves-rank<rank>.txt`` for every checkpoint written."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        rank = _rank()
        with (self.folder / f"saves-rank{rank}.txt").open("a") as handle:
            handle.write(f"{rank} {path}\n")
        super().save_checkpoint(checkpoint, path, storage_options)


def build_datamodule(mnist_dir: Path, batch_size: int) -> MNISTDataModule:
    """Return an MNIST data module over the first training images, without augmentation."""
    return MNISTDataModule(
        data_dir=str(mnist_dir),
        batch_size=batch_size,
        val_size=VAL_IMAGES,
        train_subset=TRAIN_IMAGES + VAL_IMAGES,
        augment=False,
        num_workers=0,
    )


def build_trainer(root: Path, **options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        precision="64-true",
        max_epochs=1,
        gradient_clip_val=1.0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **options,
    )


def shuffled_order(dataset: Dataset) -> list[int]:
    """Return the order in which Lightning's ``DistributedSampler`` shuffles ``dataset`` in epoch 0.

    A sampler with one replica yields the whole permutation. With ``WORLD_SIZE`` replicas, rank
    ``r`` reads every ``WORLD_SIZE``-th entry of it, starting at entry ``r``.
    """
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=SAMPLER_SEED)
    return list(sampler)


def evaluate(model: NAClassifier, dataset: Dataset, indices: list[int]) -> tuple[float, float]:
    """Return the accuracy and the mean loss per sample of ``model`` on ``dataset[indices]``."""
    inputs = torch.stack([dataset[index][0] for index in indices]).double()
    labels = torch.tensor([dataset[index][1] for index in indices])
    model.eval()
    with torch.no_grad():
        output_psc = model.network(inputs)
        loss = model.loss_fn(output_psc, labels)
        accuracy = (predict_classes(output_psc) == labels).double().mean()
    return accuracy.item(), loss.item()


@pytest.fixture(scope="module")
def ddp_run(mnist_dir, tmp_path_factory):
    """Train once with 2 DDP processes and once in a single process from the same weights."""
    root = tmp_path_factory.mktemp("ddp")
    records = root / "records"
    records.mkdir()

    torch.manual_seed(0)
    # Per-layer rescaling divides by the mean gradient of each rank's own batch, so only a
    # network without it trains exactly as one process on the global batch.
    model = NAClassifier(ARCHITECTURE, kernel="eager", rescale=False)
    initial = copy.deepcopy(model.state_dict())
    reference = copy.deepcopy(model)

    trainer = build_trainer(
        root / "ddp",
        devices=WORLD_SIZE,
        strategy="ddp_fork",
        logger=TensorBoardLogger(root / "ddp", name="lightning_logs"),
        callbacks=[RankRecorder(records)],
        plugins=[RecordingCheckpointIO(records)],
    )
    # Lightning seeds the DistributedSampler that it puts in place of the training sampler
    # with $PL_GLOBAL_SEED, which seed_everything sets.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PL_GLOBAL_SEED", str(SAMPLER_SEED))
        trainer.fit(model, datamodule=build_datamodule(mnist_dir, PER_RANK_BATCH))

    datamodule = build_datamodule(mnist_dir, GLOBAL_BATCH)
    datamodule.setup("fit")
    train_order = shuffled_order(datamodule.train_dataset)
    reference_loader = DataLoader(
        datamodule.train_dataset, batch_size=GLOBAL_BATCH, sampler=train_order
    )
    reference_trainer = build_trainer(
        root / "single", devices=1, logger=False, enable_checkpointing=False, limit_val_batches=0
    )
    reference_trainer.fit(reference, train_dataloaders=reference_loader)

    ranks = [torch.load(records / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]
    return SimpleNamespace(
        root=root / "ddp",
        records=records,
        ranks=ranks,
        initial=initial,
        reference=reference,
        train_order=train_order,
        val=datamodule.val_dataset,
    )


def test_ddp_ranks_hold_identical_weights(ddp_run):
    rank0, rank1 = ddp_run.ranks

    assert rank0["world_size"] == WORLD_SIZE
    for name, value in rank0["state_dict"].items():
        assert torch.equal(value, rank1["state_dict"][name]), name


def test_ddp_sampler_interleaves_ranks(ddp_run):
    order = ddp_run.train_order
    assert sorted(order) == list(range(TRAIN_IMAGES))
    assert order != sorted(order)
    for rank, record in enumerate(ddp_run.ranks):
        assert record["train_indices"] == order[rank::WORLD_SIZE]
        assert record["val_indices"] == list(range(rank, VAL_IMAGES, WORLD_SIZE))

    for step in range(TRAIN_STEPS):
        window = slice(step * PER_RANK_BATCH, (step + 1) * PER_RANK_BATCH)
        global_batch = {index for record in ddp_run.ranks for index in record["train_indices"][window]}
        assert global_batch == set(order[step * GLOBAL_BATCH : (step + 1) * GLOBAL_BATCH])


def test_ddp_weights_match_single_process(ddp_run):
    ddp_weights = ddp_run.ranks[0]["state_dict"]
    reference_weights = ddp_run.reference.state_dict()

    parameter_names = [name for name, _ in ddp_run.reference.named_parameters()]
    assert parameter_names
    for name in parameter_names:
        change = (ddp_weights[name] - ddp_run.initial[name].double()).abs().max().item()
        assert change > 1e-6, f"{name} did not change during training"
        torch.testing.assert_close(ddp_weights[name], reference_weights[name], rtol=1e-9, atol=1e-12)


def test_val_acc_reduced_over_ranks(ddp_run):
    model = copy.deepcopy(ddp_run.reference)
    model.load_state_dict(ddp_run.ranks[0]["state_dict"])
    union_accuracy, _ = evaluate(model, ddp_run.val, list(range(VAL_IMAGES)))
    rank0_accuracy, _ = evaluate(model, ddp_run.val, ddp_run.ranks[0]["val_indices"])

    # The check below can only tell a reduced metric from rank 0's own one if they differ.
    assert rank0_accuracy != pytest.approx(union_accuracy)
    for record in ddp_run.ranks:
        assert record["metrics"]["val_acc"].item() == pytest.approx(union_accuracy, abs=1e-12)


def test_val_loss_reduced_over_ranks(ddp_run):
    model = copy.deepcopy(ddp_run.reference)
    model.load_state_dict(ddp_run.ranks[0]["state_dict"])
    _, union_loss = evaluate(model, ddp_run.val, list(range(VAL_IMAGES)))

    for record in ddp_run.ranks:
        assert record["metrics"]["val_loss"].item() == pytest.approx(union_loss, rel=1e-9)


def test_only_rank_zero_writes_files(ddp_run):
    checkpoints = sorted(ddp_run.root.rglob("*.ckpt"))
    event_files = sorted(ddp_run.root.rglob("events.out.tfevents.*"))

    assert [path.name for path in checkpoints] == ["epoch=0-step=3.ckpt"]
    assert len(event_files) == 1
    assert not (ddp_run.records / "saves-rank1.txt").exists()
    saves = (ddp_run.records / "saves-rank0.txt").read_text().splitlines()
    assert f"0 {checkpoints[0]}" in saves


def parse_trainer_options(monkeypatch, mnist_dir, *args: str) -> dict:
    """Parse the CLI arguments and return the instantiated Trainer arguments, without a Trainer.

    The GPU presets cannot build a Trainer on a machine without CUDA, so the Trainer
    constructor is replaced by a function that records its arguments.
    """
    options: dict = {}

    def record_options(cli, **kwargs):
        options.update(cli._get(cli.config_init, "trainer", default={}))

    monkeypatch.setattr(LightningCLI, "instantiate_trainer", record_options)
    build_cli(
        ["--config", MNIST_CONFIG, *args, "--data.init_args.data_dir", str(mnist_dir)], run=False
    )
    return options


def test_ddp_preset_selects_nccl(monkeypatch, mnist_dir):
    options = parse_trainer_options(monkeypatch, mnist_dir, "--config", str(STRATEGY_DIR / "ddp.yaml"))

    assert options["accelerator"] == "gpu"
    assert options["devices"] == "auto"
    assert options["num_nodes"] == 1
    assert options["gradient_clip_val"] == 1.0
    assert isinstance(options["strategy"], DDPStrategy)
    assert options["strategy"].process_group_backend == "nccl"


def test_plain_strategy_flags(monkeypatch, mnist_dir):
    flags = ["--trainer.strategy", "ddp", "--trainer.devices", "4", "--trainer.num_nodes", "2"]
    options = parse_trainer_options(monkeypatch, mnist_dir, *flags)

    assert options["strategy"] == "ddp"
    # Trainer(devices=...) also takes strings, so the parser keeps "4", which Lightning reads as 4.
    assert options["devices"] == "4"
    assert options["num_nodes"] == 2


def test_ddp_cpu_preset_builds_trainer(mnist_dir):
    cli = build_cli(
        [
            "--config", MNIST_CONFIG,
            "--config", str(STRATEGY_DIR / "ddp_cpu.yaml"),
            "--data.init_args.data_dir", str(mnist_dir),
        ],
        run=False,
    )

    assert isinstance(cli.trainer.strategy, DDPStrategy)
    assert cli.trainer.strategy.process_group_backend == "gloo"
    assert cli.trainer.num_devices == 2
    assert cli.trainer.gradient_clip_val == 1.0


def test_fsdp_preset_wraps_each_spiking_layer(monkeypatch, mnist_dir):
    options = parse_trainer_options(monkeypatch, mnist_dir, "--config", str(STRATEGY_DIR / "fsdp.yaml"))
    strategy = options["strategy"]
    policy = strategy.kwargs["auto_wrap_policy"]

    assert isinstance(strategy, FSDPStrategy)
    assert options["accelerator"] == "gpu"
    assert options["gradient_clip_val"] is None
    assert strategy.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert strategy.kwargs["use_orig_params"] is True
    assert isinstance(policy, ModuleWrapPolicy)

    model = NAClassifier(ALEXNET, input_shape=(3, 32, 32), padding=1)
    wrapped = [
        module for module in model.modules() if policy(module=module, recurse=False, nonwrapped_numel=0)
    ]
    spiking_layers = list(model.network.spiking_layers.values())
    assert wrapped == spiking_layers
    assert [type(layer).__name__ for layer in wrapped] == ["SpikingConv2d"] * 5 + ["SpikingLinear"] * 3
    wrapped_count = sum(parameter.numel() for layer in wrapped for parameter in layer.parameters())
    assert wrapped_count == sum(parameter.numel() for parameter in model.parameters())


def test_fsdp_rejected_without_gpu():
    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        pl.Trainer(accelerator="cpu", devices=1, strategy=FSDPStrategy())


@pytest.mark.slow
def test_cli_fit_with_ddp_cpu_preset(mnist_dir, tmp_path):
    train_images, val_images, batch_size = 256, 64, 16
    command = [
        sys.executable, "-m", "na_lightning.cli", "fit",
        "--config", MNIST_CONFIG,
        "--config", str(STRATEGY_DIR / "ddp_cpu.yaml"),
        "--model.kernel", "eager",
        "--data.init_args.data_dir", str(mnist_dir),
        "--data.init_args.download", "false",
        "--data.init_args.train_subset", str(train_images + val_images),
        "--data.init_args.val_size", str(val_images),
        "--data.init_args.batch_size", str(batch_size),
        "--data.init_args.num_workers", "0",
        "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "distributed_backend=gloo" in output
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output

    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert len(list(tmp_path.rglob("events.out.tfevents.*"))) == 1
    assert len(list(tmp_path.rglob("config.yaml"))) == 1
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    # Each optimizer step reads one batch on each of the 2 ranks.
    assert checkpoint["global_step"] == train_images // (2 * batch_size)
