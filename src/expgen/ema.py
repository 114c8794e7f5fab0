"""``DelayedEMA``: an exponential moving average of the weights that starts at a given step.

Lightning's ``EMAWeightAveraging`` keeps an ``AveragedModel`` of the whole LightningModule and copies it into the
module when training ends. Starting it late (``update_starting_at_step``) suits the tiny configuration, whose VAE
trains for the first ``vae_train_steps`` steps only: begun when the VAE freezes, the average holds that frozen VAE
exactly and averages the DiT alone, so the averaged DiT reads latents of the VAE it is saved with. Until the first
update the average is the initial model, and Lightning would validate with it, save it as the checkpoint's weights
and copy it into the module at the end of a run that stopped early; ``DelayedEMA`` uses the live weights until
then.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from typing_extensions import override


class DelayedEMA(EMAWeightAveraging):
    """``EMAWeightAveraging`` (same arguments) that swaps in, saves and keeps the average only once it has been
    updated."""

    _swapped = False  # whether the running validation swapped the average in

    def _averaging(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    @override
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swapped = self._averaging()
        if self._swapped:
            self._swap_models(pl_module)

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swapped:
            self._swap_models(pl_module)
        self._swapped = False

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaging():
            super().on_train_end(trainer, pl_module)

    @override
    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._averaging():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
