"""Command line: ``na-lightning fit|validate|test|predict`` through LightningCLI,
``na-lightning zoo`` for the model zoo and ``na-lightning inspect`` for spike pictures."""

from __future__ import annotations

import sys

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from na_lightning.cli_errors import report_errors
from na_lightning.lightning.callbacks import EpochTimer, PredictionWriter
from na_lightning.lightning.classifier import NAClassifier
from na_lightning.lightning.monitor import SpikeMonitor
from na_lightning.lightning.safety import AtomicCheckpointIO, NonFiniteGuard, RandomStateCheckpoint


def best_checkpoint_callback() -> ModelCheckpoint:
    """Keep the checkpoint of the epoch with the best validation accuracy."""
    return ModelCheckpoint(
        monitor="val_acc",
        mode="max",
        filename="best-{epoch:03d}-{val_acc:.4f}",
        auto_insert_metric_name=False,
    )


def last_checkpoint_callback() -> ModelCheckpoint:
    """Overwrite ``last.ckpt`` at the end of every epoch, for resuming with ``--ckpt_path last``.

    ``save_last=True`` on the monitored callback does not do this: since pytorch-lightning 2.6 it
    writes ``last.ckpt`` only in epochs that also save a top-k checkpoint, so a run whose
    validation accuracy stops improving would resume from an old epoch.
    """
    return ModelCheckpoint(
        filename=ModelCheckpoint.CHECKPOINT_NAME_LAST, save_top_k=1, enable_version_counter=False
    )


class NACLI(LightningCLI):
    """LightningCLI that writes checkpoints atomically unless the config sets ``trainer.plugins``.

    The plugin is added when the Trainer is created rather than as a Trainer default, so the
    ``config.yaml`` saved with each run stays loadable.
    """

    def instantiate_trainer(self, **kwargs):
        trainer_config = self._get(self.config_init, "trainer", default={})
        if not trainer_config.get("plugins") and "plugins" not in kwargs:
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)


def build_cli(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Create the LightningCLI; ``args`` replaces ``sys.argv[1:]`` (for tests).

    The model is :class:`NAClassifier` or a subclass named by ``model.class_path``
    (e.g. :class:`~na_lightning.lightning.finetune.FineTuneClassifier`); a config
    may also give ``NAClassifier``'s arguments directly under ``model``.
    """
    return NACLI(
        NAClassifier,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={
            "callbacks": [
                best_checkpoint_callback(),
                last_checkpoint_callback(),
                LearningRateMonitor(logging_interval="epoch"),
                EpochTimer(),
                PredictionWriter(),
                SpikeMonitor(),
                RandomStateCheckpoint(),
                NonFiniteGuard(),
            ],
            "gradient_clip_val": 1.0,
        },
        # Invalid arguments raise ArgumentError, which main() reports on one line.
        parser_kwargs={"exit_on_error": False},
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


OTHER_COMMANDS = (
    "Commands besides fit, validate, test and predict (each takes --help):\n"
    "  na-lightning zoo {list,info,eval,predict,import}  pretrained models\n"
    "  na-lightning inspect NAME_OR_CKPT INPUT_FILE      spike rasters and membrane traces as PNG\n\n"
)
"""Lines printed before LightningCLI's help, which does not know these commands."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``na-lightning`` console script."""
    args = sys.argv[1:] if argv is None else argv
    with report_errors(args):
        if args and args[0] == "zoo":
            from na_lightning.zoo.cli import main as zoo_main

            zoo_main(args[1:])
            return
        if args and args[0] == "inspect":
            from na_lightning.inspect import main as inspect_main

            inspect_main(args[1:])
            return
        if not args or args[0] in ("-h", "--help"):
            # LightningCLI's help lists only its own subcommands.
            sys.stdout.write(OTHER_COMMANDS)
        # With argv None, LightningCLI parses sys.argv itself.
        build_cli(argv)


if __name__ == "__main__":
    main()
