"""The ``na-lightning`` command line on the MNIST recipe config."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from na_lightning.cli import best_checkpoint_callback, build_cli, last_checkpoint_callback, main
from tests.conftest import REPO_ROOT

CONFIG = str(REPO_ROOT / "configs" / "mnist_cnn.yaml")


def small_run_args(mnist_dir, root) -> list[str]:
    return [
        "--config", CONFIG,
        "--data.init_args.data_dir", str(mnist_dir),
        "--data.init_args.download", "false",
        "--data.init_args.train_subset", "640",
        "--data.init_args.val_size", "128",
        "--data.init_args.test_subset", "128",
        "--data.init_args.num_workers", "0",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "4",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]


def test_config_builds_recipe_model(mnist_dir, tmp_path):
    cli = build_cli(["--config", CONFIG, "--data.init_args.data_dir", str(mnist_dir)], run=False)

    assert cli.model.hparams.architecture == "15C5-P2-40C5-P2-300"
    assert cli.model.hparams.time_steps == 5
    assert cli.trainer.gradient_clip_val == 1.0
    assert cli.trainer.checkpoint_callback.monitor == "val_acc"


def test_fit_then_test_from_best_checkpoint(mnist_dir, tmp_path):
    main(["fit", *small_run_args(mnist_dir, tmp_path)])

    checkpoints = sorted((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))
    names = [path.name for path in checkpoints]
    assert "last.ckpt" in names
    best = [path for path in checkpoints if path.name.startswith("best-000-")]
    assert len(best) == 1

    cli = build_cli(["test", *small_run_args(mnist_dir, tmp_path / "test"), "--ckpt_path", str(best[0])])
    assert 0.0 <= cli.trainer.callback_metrics["test_acc"] <= 1.0

    # The config saved with the run must load again, with the atomic checkpoint plugin.
    saved_config = tmp_path / "lightning_logs" / "version_0" / "config.yaml"
    assert "Unable to serialize" not in saved_config.read_text()
    rebuilt = build_cli(
        ["validate", "--config", str(saved_config), "--trainer.limit_val_batches", "1",
         "--trainer.default_root_dir", str(tmp_path / "validate")]
    )
    assert type(rebuilt.trainer.strategy.checkpoint_io).__name__ == "AtomicCheckpointIO"


class WorseningModel(pl.LightningModule):
    """Logs a validation accuracy that falls every epoch, so only epoch 0 is the best."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", 0.9 - 0.1 * self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_last_checkpoint_every_epoch(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[best_checkpoint_callback(), last_checkpoint_callback()],
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(WorseningModel(), train_dataloaders=loader, val_dataloaders=loader)

    names = sorted(path.name for path in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names == ["best-000-0.9000.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2
    assert last["global_step"] == 6


def test_unknown_config_key_exits(mnist_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["fit", *small_run_args(mnist_dir, tmp_path), "--model.tau_q", "3"])

    assert excinfo.value.code != 0
    assert "tau_q" in capsys.readouterr().err


def test_predict_writes_csv(mnist_dir, tmp_path):
    main(["predict", *small_run_args(mnist_dir, tmp_path), "--trainer.limit_predict_batches", "2"])

    csv_files = list(tmp_path.rglob("predictions.csv"))
    assert len(csv_files) == 1
    lines = csv_files[0].read_text().splitlines()
    assert lines[0].split(",")[:3] == ["index", "predicted_class", "score_0"]
    assert len(lines) == 1 + 2 * 64
    assert all(0 <= int(line.split(",")[1]) <= 9 for line in lines[1:])


def test_help_lists_zoo_and_inspect(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])

    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "na-lightning zoo {list,info,eval,predict,import}" in out
    assert "na-lightning inspect NAME_OR_CKPT INPUT_FILE" in out
    assert "{fit,validate,test,predict}" in out
