"""``exp-train``: one LightningCLI over the three training stages.

The stage is chosen by the config: ``model.class_path`` / ``data.class_path`` name any
LightningModule / LightningDataModule (``exphead.fitting.HeadFitModule`` +
``exphead.fitting.SubjectDataModule``, ``exptransfer.TransferModule`` + ``exptransfer.TransferDataModule``,
``expgen.DiffusionModule`` + ``expgen.VideoDataModule``)::

    exp-train fit --config configs/expgen/tiny.yaml
    exp-train fit --config configs/exphead/fit_synthetic.yaml --print_config
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningCLI


def cli(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    return LightningCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                        subclass_mode_data=True, args=args, run=run, save_config_kwargs={"overwrite": True},
                        auto_configure_optimizers=False)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
