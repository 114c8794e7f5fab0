"""Image encodings of geometric buffers for previews and contact sheets."""

from __future__ import annotations

import torch
from torch import Tensor


def depth_to_image(depth: Tensor) -> Tensor:
    """``B x 1 x H x W`` depth (0 = empty) -> ``B x 3 x H x W`` in [0, 1], near = bright, per-image range."""
    out = torch.zeros_like(depth)
    for i, d in enumerate(depth):
        valid = d > 0
        if valid.any():
            lo, hi = d[valid].min(), d[valid].max()
            out[i] = torch.where(valid, 1 - 0.8 * (d - lo) / (hi - lo).clamp_min(1e-9), 0.0)
    return out.expand(-1, 3, -1, -1)
