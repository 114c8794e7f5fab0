"""Interpolation of vertex attributes over rasterized fragments (nvdiffrast's ``interpolate``)."""

from __future__ import annotations

import torch
from torch import Tensor

from exphead.render.rasterize import Fragments, face_vertex_ids


def interpolate(attr: Tensor, frags: Fragments, faces: Tensor) -> Tensor:
    """Barycentric interpolation of per-vertex attributes at every pixel.

    Args:
        attr: ``B x N x C`` (or ``1 x N x C``, broadcast over the batch) vertex attributes.
        frags: the :class:`Fragments` of a rasterizer, ``B x H x W``.
        faces: ``M x 3`` int64 faces used to rasterize.

    Returns:
        ``B x H x W x C`` interpolated attributes, zero where empty. Differentiable w.r.t. ``attr``
        and ``frags.bary`` (only covered pixels are computed).
    """
    b, h, w = frags.face_id.shape
    if attr.dim() != 3 or attr.shape[0] not in (1, b):
        raise ValueError(f"attr must be {b} x N x C or 1 x N x C, got {tuple(attr.shape)}")
    n, c = attr.shape[1], attr.shape[2]
    pix = frags.covered()
    vid = face_vertex_ids(frags.face_id, faces.to(device=attr.device, dtype=torch.int64), pix, n)
    if attr.shape[0] == 1:
        vid = vid % n
    values = attr.reshape(-1, c).index_select(0, vid.reshape(-1)).view(3, -1, c)  # corner x P x C
    weights = frags.bary.reshape(-1, 3).index_select(0, pix).to(values.dtype)
    out_p = weights[:, 0:1] * values[0] + weights[:, 1:2] * values[1] + weights[:, 2:3] * values[2]
    return values.new_zeros(b * h * w, c).index_copy(0, pix, out_p).view(b, h, w, c)
