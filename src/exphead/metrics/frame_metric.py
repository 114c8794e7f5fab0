"""Input checks and the frame-averaged `Metric` base shared by every metric of this package.

All metrics of the paper's Table 1 are means over frames of a per-frame value. Frames are
``N x 3 x H x W`` float tensors in ``[0, 1]``; videos ``B x F x 3 x H x W`` are flattened to
``(B * F) x 3 x H x W``. Each video frame weighs the same, whatever clip it comes from.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric

Reduction = Literal["mean", "none"]


def reduce_frames(values: Tensor, reduction: Reduction) -> Tensor:
    """Per-frame values ``N`` -> their mean (``"mean"``) or themselves (``"none"``)."""
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def as_frames(x: Tensor, name: str = "frames") -> Tensor:
    """Flatten images ``N x 3 x H x W`` or videos ``B x F x 3 x H x W`` to frames ``N x 3 x H x W``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim == 5:
        x = x.flatten(0, 1)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{name} must be N x 3 x H x W frames or B x F x 3 x H x W videos, got shape {tuple(x.shape)}; "
            "put the RGB channel axis right before H and W."
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}; divide uint8 by 255.")
    return x


def frame_pair(preds: Tensor, target: Tensor, broadcast_target: bool = False) -> tuple[Tensor, Tensor]:
    """Check and flatten a (generated, reference) pair of frame batches.

    Args:
        preds: generated frames ``N x 3 x H x W`` or videos ``B x F x 3 x H x W``.
        target: reference frames of the same shape (or, with ``broadcast_target``, one frame
            ``1 x 3 x H' x W'`` used for every generated frame).
        broadcast_target: allow a single target frame.

    Returns:
        ``(preds, target)`` as ``N x 3 x H x W`` (target possibly ``1 x 3 x H' x W'``).
    """
    preds, target = as_frames(preds, "preds"), as_frames(target, "target")
    if broadcast_target and target.shape[0] == 1:
        return preds, target
    if preds.shape != target.shape:
        raise ValueError(
            f"preds and target must have the same shape, got {tuple(preds.shape)} and {tuple(target.shape)}."
        )
    return preds, target


class FrameAveragedMetric(Metric):
    """A metric whose value is the mean over frames of a per-frame value.

    Subclasses implement :meth:`per_frame` (usually a call to their functional twin); the class only
    accumulates the sum of per-frame values and the number of frames, reduced by summation across
    processes.
    """

    full_state_update = False
    broadcast_target = False
    sum_value: Tensor
    num_frames: Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("sum_value", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("num_frames", default=torch.tensor(0), dist_reduce_fx="sum")

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-frame values ``N`` of frames ``N x 3 x H x W``."""
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add frames ``N x 3 x H x W`` (or videos ``B x F x 3 x H x W``) and their references."""
        preds, target = frame_pair(preds, target, self.broadcast_target)
        values = self.per_frame(preds, target)
        self.sum_value = self.sum_value + values.sum().to(self.sum_value.dtype)
        self.num_frames = self.num_frames + values.numel()

    def compute(self) -> Tensor:
        """Mean of the per-frame values over all frames seen (NaN before any update)."""
        return self.sum_value / self.num_frames
