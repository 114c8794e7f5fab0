"""What the main job writes: the video, a side-by-side preview video and a contact sheet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from exphead.media import contact_sheet, to_uint8, write_image, write_video

from .animator import AnimateResult


def preview_panels(result: AnimateResult) -> Tensor:
    """``F x 3 x S x 4S`` frames: reference | driving | condition normal map | result."""
    n = result.frames.shape[0]
    ref = result.reference[None].expand(n, -1, -1, -1)
    return torch.cat([ref, result.driving, result.driving_normals, result.frames], dim=-1)


def preview_sheet(result: AnimateResult, rows: int = 4) -> np.ndarray:
    """A PNG-ready contact sheet: ``rows`` evenly spaced frames, each reference | driving | condition | result."""
    n = result.frames.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    panels = to_uint8(preview_panels(result)[idx])
    s = result.frames.shape[-1]
    return contact_sheet([[p[:, k * s:(k + 1) * s] for k in range(4)] for p in panels])


def write_outputs(result: AnimateResult, out_path: str | Path) -> dict[str, Path]:
    """Write OUT.mp4, OUT_preview.mp4 and OUT_preview.png (each atomically)."""
    out_path = Path(out_path)
    stem = out_path.with_suffix("")
    return {"video": write_video(out_path, result.frames, result.fps),
            "preview_video": write_video(f"{stem}_preview.mp4", preview_panels(result), result.fps),
            "preview_sheet": write_image(f"{stem}_preview.png", preview_sheet(result))}


__all__ = ["preview_panels", "preview_sheet", "write_outputs"]
