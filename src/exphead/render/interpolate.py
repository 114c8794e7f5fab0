"""Interpolation of vertex attributes over rasterized fragments (nvdiffrast's ``interpolate``)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from exphead.render.rasterize import Fragments, fragment_pixels, pixel_columns, pixel_vertex_ids


def interpolate(attr: Tensor, frags: Fragments, faces: Tensor, normalize: bool = False) -> Tensor:
    """Barycentric interpolation of per-vertex attributes at every pixel.

    Args:
        attr: ``B x N x C`` (or ``1 x N x C``, broadcast over the batch) finite vertex attributes.
        frags: the :class:`Fragments` of a rasterizer, ``B x H x W``.
        faces: ``M x 3`` int64 faces used to rasterize.
        normalize: renormalise the interpolated vectors to unit length (as ``F.normalize`` with
            ``eps=1e-12``), computed on the fragment pixels only.

    Returns:
        ``B x H x W x C`` interpolated attributes, zero where empty. Differentiable w.r.t. ``attr``
        and ``frags.bary``. Computes the :func:`~exphead.render.rasterize.fragment_pixels` (every
        pixel off CPU, empty ones with zero weights on the corners of face 0: no host synchronisation).
    """
    b, h, w = frags.face_id.shape
    if attr.dim() != 3 or attr.shape[0] not in (1, b):
        raise ValueError(f"attr must be {b} x N x C or 1 x N x C, got {tuple(attr.shape)}")
    n, c = attr.shape[1], attr.shape[2]
    faces = faces.to(device=attr.device, dtype=torch.int64)
    if faces.shape[0] == 0:
        return attr.new_zeros(b, h, w, c)
    pix = fragment_pixels(frags.face_id)
    vid = pixel_vertex_ids(frags.face_id, faces, pix, 0 if attr.shape[0] == 1 else n)
    weights = pixel_columns(frags.bary, pix).to(attr.dtype)  # 3 x P
    values = _Interpolate.apply(attr.reshape(-1, c), vid, weights)  # C x P
    if normalize:
        values = values * (values * values).sum(0).clamp_min(1e-24).rsqrt()
    return _ScatterPixels.apply(values, pix, (b, h, w))


class _Interpolate(torch.autograd.Function):
    """``V x C`` vertex ``table``, ``3 x P`` corner ids, ``3 x P`` weights -> ``C x P`` weighted sums.

    Hand-written backward: the table's gradient is a column ``scatter_add`` (on CPU ~5x faster
    than ``index_select``'s row-wise ``index_add``) returned contiguous, for the backward of
    whatever produced the table.
    """

    @staticmethod
    def forward(ctx, table: Tensor, vid: Tensor, weights: Tensor) -> Tensor:
        c = table.shape[1]
        values = table.t().gather(1, vid.reshape(1, -1).expand(c, -1)).view(c, 3, -1)  # C x corner x P
        ctx.save_for_backward(vid, weights, values)
        ctx.rows = table.shape[0]
        return weights[0] * values[:, 0] + weights[1] * values[:, 1] + weights[2] * values[:, 2]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None]:
        vid, weights, values = ctx.saved_tensors
        grad, c = grad.contiguous(), grad.shape[0]
        table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_values = (grad[:, None] * weights).reshape(c, -1)  # C x corner*P
            table = grad.new_zeros(c, ctx.rows).scatter_add_(1, vid.reshape(1, -1).expand(c, -1), grad_values)
            table = table.t().contiguous()
        if ctx.needs_input_grad[2]:
            grad_weights = (grad[:, None] * values).sum(0)
        return table, None, grad_weights


class _ScatterPixels(torch.autograd.Function):
    """``C x P`` values of the flat pixels ``pix`` -> ``B x H x W x C`` image, zero elsewhere; the
    backward reads the gradient in whichever layout it arrives (:func:`pixel_columns`)."""

    @staticmethod
    def forward(ctx, values: Tensor, pix: Tensor, size: tuple[int, int, int]) -> Tensor:
        ctx.save_for_backward(pix)
        image = values.new_zeros(size[0] * size[1] * size[2], values.shape[0]).index_copy_(0, pix, values.t())
        return image.view(*size, values.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (pix,) = ctx.saved_tensors
        return pixel_columns(grad, pix), None, None
