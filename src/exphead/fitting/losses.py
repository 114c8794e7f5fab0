"""Loss terms of the detail fit (Sec. 3.1.2): Eqs. (5)-(7), L_dis and L_lap."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from exphead.geometry import SparseOperator


@dataclass
class DetailLossWeights:
    """Weights of the detail-stage loss terms (Sec. 3.1.2; units: mm for offsets and depth).

    Attributes:
        landmark: L_ldmk (Eq. 5).
        normal: L_normal (Eq. 6).
        depth: L_depth per mm of absolute depth error (Eq. 6).
        depth_clamp_mm: truncation of the depth L1 (silhouette misalignment).
        expression: L_exp (Eq. 7).
        static_magnitude: L_dis on Δg.
        static_in_face: Δg inside the face (Δg is mainly non-facial, Sec. 3.1.3).
        dynamic_magnitude: L_dis on Δf(i): minimal, zero-mean deviations.
        laplacian_static: L_lap on Δg.
        laplacian_dynamic: L_lap on Δf(i) (wrinkles are sharp).
        smooth: temporal smoothness of per-frame parameters.
        depth_anchor: per mm^2: relative depth (shift / scale_shift alignment) cannot fix the head's distance,
            so its camera-space z stays near the tracker's (without it the fit drifts ~10 cm).
    """

    landmark: float = 1.0
    normal: float = 1.0
    depth: float = 0.05
    depth_clamp_mm: float = 30.0
    expression: float = 5e-4
    static_magnitude: float = 1e-4
    static_in_face: float = 2e-2
    dynamic_magnitude: float = 2e-3
    laplacian_static: float = 30.0
    laplacian_dynamic: float = 3.0
    smooth: float = 0.1
    depth_anchor: float = 1e-2


def landmark_loss(pred: Tensor, target: Tensor, valid: Tensor, contour_weight: float = 0.3) -> Tensor:
    """L_ldmk (Eq. 5): squared pixel error of ``B x 68 x 2`` projections, relative to the face size."""
    scale = (target - target.mean(1, keepdim=True)).norm(dim=-1).mean(1).clamp_min(1.0)
    err = ((pred - target).norm(dim=-1) / scale[:, None]) ** 2
    w = torch.ones(68, dtype=err.dtype, device=err.device)
    w[:17] = contour_weight
    v = valid.to(err.dtype)
    return (v[:, None] * w * err).sum() / (v.sum() * w.sum()).clamp_min(1e-8)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor, clamp: float | None = None) -> Tensor:
    """Mean over masked pixels of the channel-summed absolute error (optionally truncated at ``clamp``)."""
    err = (pred - target).abs().sum(1, keepdim=True)
    if clamp is not None:
        err = err.clamp_max(clamp)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def laplacian_loss(laplacian: SparseOperator, field: Tensor) -> Tensor:
    """L_lap: mean squared uniform-Laplacian of a ``B x N x 3`` (or ``N x 3``) displacement field."""
    f = field if field.dim() == 3 else field[None]
    return laplacian(f).pow(2).sum(-1).mean()


def align_depth(pred: Tensor, target: Tensor, mask: Tensor, mode: str) -> Tensor:
    """Align relative ``target`` depth to ``pred`` per frame: ``none``, ``shift`` or ``scale_shift``
    (least squares over the mask; for estimators such as DAViD that predict depth up to scale/shift)."""
    if mode == "none":
        return target
    m = mask.flatten(1)
    p, t = pred.detach().flatten(1), target.flatten(1)
    n = m.sum(1).clamp_min(1)
    mp, mt = (p * m).sum(1) / n, (t * m).sum(1) / n
    if mode == "shift":
        out = t + (mp - mt)[:, None]
    elif mode == "scale_shift":
        cov = ((p - mp[:, None]) * (t - mt[:, None]) * m).sum(1)
        var = ((t - mt[:, None]) ** 2 * m).sum(1).clamp_min(1e-12)
        s = cov / var
        out = s[:, None] * (t - mt[:, None]) + mp[:, None]
    else:
        raise ValueError(f"depth alignment must be none, shift or scale_shift, got {mode!r}")
    return out.view_as(target) * mask
