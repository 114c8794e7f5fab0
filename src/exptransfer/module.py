"""``TransferModule``: Lightning training of the expression transfer module (paper Sec. 3.2) on fitted heads.

Loss (on face vertices, millimetres): ``loss = vertex + edge_weight * edge`` where

* ``vertex`` is the mean Euclidean error of Δf (``"l1"``) or its mean squared norm (``"l2"``, mm²);
* ``edge`` is the same error on the differences of Δf across sampled mesh edges (the data module draws
  vertices as edge pairs). It constrains the local shape of the offsets, hence the normals.

``"l2"`` is the default: the targets are sparse (most face vertices have no wrinkle in most frames), and
the constant-magnitude gradient of ``"l1"`` drove the prediction to zero in our synthetic runs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from typing_extensions import override

from .identity import IdentityGeometry
from .network import ExpressionTransfer


def _error(diff_mm: Tensor, loss: str) -> Tensor:
    return diff_mm.norm(dim=-1).mean() if loss == "l1" else diff_mm.pow(2).sum(-1).mean()


class TransferModule(L.LightningModule):
    """The transfer module as a LightningModule; ``net`` is the :class:`ExpressionTransfer` that is exported.

    Args:
        num_expression, code_dim, encoder_hidden, temporal_kernel, encoder_blocks, jaw_scale, hidden_dim,
            num_layers, num_frequencies, anchor_neutral, chunk_points: see :class:`ExpressionTransfer`.
        loss: ``"l1"`` (mean Euclidean error, mm) or ``"l2"`` (mean squared error, mm²).
        edge_weight: weight of the edge-difference term.
        lr: AdamW learning rate (peak; linear warm-up then cosine decay to 5 %).
        weight_decay: AdamW weight decay.
        warmup_steps: warm-up optimizer steps.
    """

    def __init__(self, num_expression: int = 100, code_dim: int = 64, encoder_hidden: int = 128,
                 temporal_kernel: int = 3, encoder_blocks: int = 2, jaw_scale: float = 5.0, hidden_dim: int = 96,
                 num_layers: int = 3, num_frequencies: int = 8, anchor_neutral: bool = True,
                 chunk_points: int = 1 << 18, loss: Literal["l1", "l2"] = "l2", edge_weight: float = 1.0,
                 lr: float = 2e-3, weight_decay: float = 1e-4, warmup_steps: int = 50) -> None:
        super().__init__()
        self.save_hyperparameters()
        if loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {loss!r}")
        self.net = ExpressionTransfer(num_expression, code_dim, encoder_hidden, temporal_kernel, encoder_blocks,
                                      jaw_scale, hidden_dim, num_layers, num_frequencies, anchor_neutral,
                                      chunk_points=chunk_points)

    @override
    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """``B x F x S x 3`` predicted Δf (metres) for a data-module batch."""
        return self.net(IdentityGeometry.from_dict(batch), batch["expression"], batch["jaw_pose"])

    def _common_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        pred, target = self(batch), batch["target"]
        diff = (pred - target) * 1000.0  # mm
        vertex = _error(diff, self.hparams.loss)
        loss = vertex
        if self.hparams.edge_weight > 0 and bool(batch["edge_pairs"].all()):
            edge = _error(diff[:, :, 0::2] - diff[:, :, 1::2], self.hparams.loss)
            loss = loss + self.hparams.edge_weight * edge
            self.log(f"{stage}_edge_loss", edge, batch_size=pred.shape[0])
        self.log(f"{stage}_vertex_error_mm", diff.norm(dim=-1).mean(), batch_size=pred.shape[0])
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

    @override
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    @override
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._common_step(batch, "val")

    @override
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._common_step(batch, "test")

    @override
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self(batch)

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warmup = min(hp.warmup_steps, max(0, total - 1))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def export(self, directory: str | os.PathLike) -> Path:
        """Save ``net`` as ``transfer.safetensors`` + ``transfer.json`` (load with ``load_transfer``)."""
        return self.net.save_pretrained(directory)
