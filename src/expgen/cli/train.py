"""``exp-train``: one LightningCLI over the three training stages.

The stage is chosen by the config: ``model.class_path`` / ``data.class_path`` name any
LightningModule / LightningDataModule (``exphead.fitting.HeadFitModule`` +
``exphead.fitting.SubjectDataModule``, ``exptransfer.TransferModule`` + ``exptransfer.TransferDataModule``,
``expgen.DiffusionModule`` + ``expgen.VideoDataModule``)::

    exp-train fit --config configs/expgen/tiny.yaml
    exp-train fit --config configs/exphead/fit_synthetic.yaml --print_config
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI

from exphead.cli.common import run_command


def cli(args: Sequence[str] | None = None, run: bool = True) -> LightningCLI:
    """The LightningCLI over every LightningModule / LightningDataModule (``args`` None: ``sys.argv``)."""
    return LightningCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                        subclass_mode_data=True, args=None if args is None else list(args), run=run,
                        save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-train", lambda a: cli(a) and 0, argv)


if __name__ == "__main__":
    sys.exit(main())
