"""What a fit is fitted to: per-frame landmarks and, when available, normal and depth maps (:class:`FitTargets`).

Conventions: normals in camera space (OpenCV axes, unit length, 0 where empty); depth from files in
scene units with 0 = empty, depth from a model relative (larger = farther, unknown scale and shift).
Maps come from a folder (:mod:`~exphead.fitting.map_files`), from DAViD ONNX models
(:mod:`~exphead.fitting.map_models`), or are absent (landmarks only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from exphead.tracking.crop import CropBox

logger = logging.getLogger(__name__)


@dataclass
class FitTargets:
    """Targets of ``F`` frames of ``H x W`` pixels.

    Attributes:
        landmarks: ``F x 68 x 2`` pixels (NaN where missing); valid: ``F`` bool.
        normal: ``F x 3 x H x W`` camera-space unit normals (0 where empty) or None.
        depth: ``F x 1 x H x W`` scene units (0 = empty), or relative depth from a model, or None.
        mask: ``F x 1 x H x W`` float foreground or None (derived from the maps when absent); pixels
            where it is 0 take no part in the normal and depth losses.
        frames: ``F x 3 x H x W`` RGB in [0, 1] or None (kept for previews and texture).
        map_source: where each map (and a model's foreground) came from, e.g.
            ``{"normal": "onnx:/m/normal.onnx", "foreground": "onnx:/m/foreground.onnx"}``.
        crop_box: the square box the frames were cut from the source's frames with (None: not cropped), so
            the same frames can be cropped again at another size without detecting faces again.
    """

    landmarks: Tensor
    valid: Tensor
    height: int
    width: int
    normal: Tensor | None = None
    depth: Tensor | None = None
    mask: Tensor | None = None
    frames: Tensor | None = None
    map_source: dict[str, str] = field(default_factory=dict)
    crop_box: CropBox | None = None

    def __post_init__(self) -> None:
        f = self.landmarks.shape[0]
        for name in ("normal", "depth", "mask", "frames"):
            t = getattr(self, name)
            if t is None:
                continue
            if t.shape[0] != f or t.shape[-2:] != (self.height, self.width):
                raise ValueError(f"{name} must be {f} x C x {self.height} x {self.width}, got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} targets contain NaN or inf")
        if self.mask is None and (self.normal is not None or self.depth is not None):
            src = self.depth if self.depth is not None else self.normal.abs().sum(1, keepdim=True)
            self.mask = (src > 0).float()

    @property
    def num_frames(self) -> int:
        return self.landmarks.shape[0]

    @property
    def has_maps(self) -> bool:
        return self.normal is not None or self.depth is not None


def resolve_depth_alignment(mode: str, targets: FitTargets) -> str:
    """``"auto"`` -> ``"scale_shift"`` for depth from an ONNX model (relative), else ``"none"``."""
    source = targets.map_source.get("depth", "")
    relative = source.startswith("onnx:")
    if mode == "auto":
        mode = "scale_shift" if relative else "none"
        if relative:
            logger.info("depth from %s is relative: depth_alignment=scale_shift (per-frame least-squares scale and "
                        "shift onto the rendered depth)", source.removeprefix("onnx:"))
    elif relative and mode != "scale_shift":
        logger.warning("depth from %s is relative (unknown scale and shift) but depth_alignment=%r; "
                       "'scale_shift' or 'auto' fits it", source.removeprefix("onnx:"), mode)
    return mode
