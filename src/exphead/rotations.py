"""Axis-angle <-> rotation matrix conversions (axis-angle -> matrix is ``smplx.lbs.batch_rodrigues``), head angles
(yaw, pitch, roll) and relative head motion."""

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


def matrix_to_euler(R: Tensor) -> Tensor:
    """``... x 3 x 3`` rotations -> ``... x 3`` angles ``(yaw, pitch, roll)`` (radians) with
    ``R = R_y(yaw) R_x(pitch) R_z(roll)``: in the world frame of :mod:`exphead.camera` (y up, z to the camera) a
    head's heading, nod and tilt; the face's normal ``R e_z`` has azimuth ``yaw`` and elevation ``-pitch``."""
    yaw = torch.atan2(R[..., 0, 2], R[..., 2, 2])
    pitch = torch.asin((-R[..., 1, 2]).clamp(-1.0, 1.0))
    roll = torch.atan2(R[..., 1, 0], R[..., 1, 1])
    return torch.stack([yaw, pitch, roll], dim=-1)


def euler_to_matrix(angles: Tensor) -> Tensor:
    """``... x 3`` ``(yaw, pitch, roll)`` -> ``... x 3 x 3`` ``R_y(yaw) R_x(pitch) R_z(roll)`` (see
    :func:`matrix_to_euler`)."""
    axes = torch.eye(3, dtype=angles.dtype, device=angles.device)
    turn = [axis_angle_to_matrix(angles[..., k, None] * axes[i]) for k, i in enumerate((1, 0, 2))]
    return turn[0] @ turn[1] @ turn[2]


def compose_relative(base: Tensor, drive: Tensor, drive_ref: Tensor) -> Tensor:
    """Relative head motion (axis-angle ``F x 3`` each): the base rotation's yaw, pitch and roll
    (:func:`matrix_to_euler`) change by the driver's change of the same angles from ``drive_ref``.

    Composing the matrices instead (``R_drive R_drive_ref^T R_base``) turns the base about the driver's own axes:
    when the driver starts nodding 13 degrees further down than the base, its pitch changes leak into the base's
    yaw (a driver's 10 degree turn read as 14 on the portrait in the Pexels clip)."""
    angles = [matrix_to_euler(axis_angle_to_matrix(r)) for r in (base, drive, drive_ref)]
    return matrix_to_axis_angle(euler_to_matrix(angles[0] + angles[1] - angles[2]))
