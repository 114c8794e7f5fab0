"""Image filters of the generators: separable Gaussian blur, its low-resolution variant for wide smooth fields,
and a separable max filter (all ``B x C x H x W``, same size out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``B x C x H x W`` (reflect padding), radius 3 sigma."""
    radius = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad_h = min(radius, x.shape[-2] - 1)
    pad_w = min(radius, x.shape[-1] - 1)
    x = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1)[..., radius - pad_w:radius + pad_w + 1], groups=c)
    x = F.pad(x, (0, 0, pad_h, pad_h), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1)[:, :, radius - pad_h:radius + pad_h + 1], groups=c)


def smooth(x: Tensor, sigma: float) -> Tensor:
    """:func:`gaussian_blur` of a smooth field, computed at a lower resolution when ``sigma`` is wide.

    The field is area-downsampled by ``f = sigma // 8``, blurred with ``sigma / f`` and upsampled
    bilinearly: the same low-pass result up to interpolation error, ``f^2`` times fewer taps.
    """
    f = max(1, int(sigma // 8))
    if f == 1:
        return gaussian_blur(x, sigma)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, round(h / f)), max(1, round(w / f))), mode="area")
    small = gaussian_blur(small, sigma * small.shape[-1] / w)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def max_pool(x: Tensor, radius: int) -> Tensor:
    """Square ``(2 radius + 1)`` max filter of ``B x C x H x W`` (stride 1, same size) as two 1-D passes:
    O(radius) per pixel instead of O(radius^2)."""
    k = 2 * radius + 1
    x = F.max_pool2d(x, (1, k), 1, (0, radius))
    return F.max_pool2d(x, (k, 1), 1, (radius, 0))


__all__ = ["gaussian_blur", "max_pool", "smooth"]
