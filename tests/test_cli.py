"""The ``na-lightning`` command line on the MNIST recipe config."""

from __future__ import annotations

import pytest

from na_lightning.cli import build_cli, main
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
