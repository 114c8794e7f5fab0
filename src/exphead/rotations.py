"""Axis-angle <-> rotation matrix conversions (axis-angle -> matrix is ``smplx.lbs.batch_rodrigues``)."""

from __future__ import annotations

import torch
from smplx.lbs import batch_rodrigues
from torch import Tensor


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """``... x 3`` axis-angle -> ``... x 3 x 3``."""
    return batch_rodrigues(aa.reshape(-1, 3)).reshape(*aa.shape[:-1], 3, 3)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """``... x 3 x 3`` rotation matrices -> ``... x 3`` axis-angle (angle in [0, pi])."""
    # Quaternion from the matrix (Shepperd's method, branch-free via the largest diagonal term).
    m = R.reshape(-1, 3, 3)
    t = torch.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], 1)
    k = t.argmax(1)
    s = torch.sqrt(t.gather(1, k[:, None]).clamp_min(1e-12)).squeeze(1) * 2  # 4 * |q_k|
    a, b, c = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]  # antisymmetric part
    d, e, f = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]  # symmetric part
    w = torch.stack([s / 4, a / s, b / s, c / s], 1)
    x = torch.stack([a / s, s / 4, d / s, e / s], 1)
    y = torch.stack([b / s, d / s, s / 4, f / s], 1)
    z = torch.stack([c / s, e / s, f / s, s / 4], 1)
    q = torch.stack([w, x, y, z], 1)[torch.arange(m.shape[0]), k]  # (w, x, y, z)
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
    vec = q[:, 1:]
    sin_half = vec.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, q[:, :1])
    aa = torch.where(sin_half > 1e-8, vec / sin_half.clamp_min(1e-12) * angle, 2 * vec)
    return aa.reshape(*R.shape[:-2], 3)


def compose_relative(base: Tensor, drive: Tensor, drive_ref: Tensor) -> Tensor:
    """Apply the driver's rotation relative to its reference frame to a base rotation (axis-angle ``F x 3``):
    ``R_out = R_drive R_drive_ref^T R_base``."""
    Rb, Rd, Rr = axis_angle_to_matrix(base), axis_angle_to_matrix(drive), axis_angle_to_matrix(drive_ref)
    return matrix_to_axis_angle(Rd @ Rr.transpose(-1, -2) @ Rb)
