"""Gaze from the eye images: where the iris sits in each eye opening, and the eye rotation that means.

dlib's 68 landmarks outline each eye opening (iBUG 36-41 and 42-47) but say nothing of the iris. Inside each
opening the iris is the dark part: :func:`iris_offsets` samples the opening on a grid in the eye's own frame
(``u`` along the line from the image-left corner to the image-right corner, ``v`` across it, pointing down in
the image when the eye line is level; both in eye widths, 0 at the midpoint of the corners) and takes the
darkness-weighted centroid (weight: how much darker than the opening's 70th brightness percentile a sample is).
Against mediapipe's iris points on the two real clips of the benchmarks (``benchmarks/expression_fidelity.py``,
256 px crops), the horizontal offset, averaged over both eyes, correlates at 0.84 (carphone) and 0.94 (Pexels);
the vertical one at 0.44 and 0.94 (carphone's eyes are 10 px wide in its 176 x 144 frames).

:func:`gaze_rotation` turns the offsets into the SMPL-X eye joints' rotation (``leye_pose`` / ``reye_pose``,
axis-angle in the head's frame, as the body model's: +x to the subject's left, +y up, +z out of the face): both
eyes turn together (their mean offset). The eyeball is a sphere of radius :data:`EYE_RADIUS` eye widths centred
between the corners and fixed in the head, so what the image shows depends on the head's yaw ``h`` (from the
camera, :func:`head_yaw`) as well as on the eye's own yaw ``e``: the iris sits ``u = R sin(h + e) / cos(h)`` eye
widths from the corners' midpoint (:func:`iris_u`; the eye's width shortens by ``cos(h)``). A head that turns while
its eyes hold still in it moves the iris against the corners; :func:`eye_yaw` takes that parallax out. Up and down,
the iris ``v`` eye widths below the centre is a turn by ``asin(v / R)`` about +x.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RIGHT_EYE = (36, 37, 38, 39, 40, 41)  # image-left eye: outer corner, upper lid x2, inner corner, lower lid x2
LEFT_EYE = (42, 43, 44, 45, 46, 47)  # image-right eye: inner corner, upper lid x2, outer corner, lower lid x2
EYE_RADIUS = 0.4  # eyeball radius / eye width (about 12 mm over 30 mm)
MIN_OPENNESS = 0.1  # mean lid distance / eye width below which the iris is too hidden to be read
DARK_PERCENTILE = 0.7  # samples darker than this quantile of the opening weigh in, by how much darker
GRID = (12, 32)  # samples across (v in [-0.3, 0.3]) and along (u in [-0.5, 0.5]) the eye


def eye_axes(eye: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``... x 6 x 2`` eye points (iBUG order: corner, upper lid x2, corner, lower lid x2) -> the eye's frame:
    midpoint of the corners ``... x 2``, unit ``u`` axis (image-left corner to image-right corner) ``... x 2``,
    unit ``v`` axis (``u`` turned by +90 degrees: down in the image) ``... x 2`` and the width ``...``."""
    a, b = eye[..., 0, :], eye[..., 3, :]
    swap = (a[..., :1] > b[..., :1])
    left, right = torch.where(swap, b, a), torch.where(swap, a, b)
    width = (right - left).norm(dim=-1)
    u = (right - left) / width.clamp_min(1e-9)[..., None]
    return (left + right) / 2, u, torch.stack([-u[..., 1], u[..., 0]], -1), width


def lid_curve(u_points: Tensor, v_points: Tensor, u: Tensor) -> Tensor:
    """Piecewise-linear lid ``v(u)`` through four points (``F x 4`` each: a corner, two lid points, the other corner,
    in any order) at the positions ``u`` (``U``) -> ``F x U``, held at the corners' values past them."""
    order = u_points.argsort(dim=-1)
    xs, ys = u_points.gather(-1, order), v_points.gather(-1, order)
    k = torch.searchsorted(xs.contiguous(), u.expand(len(xs), -1).contiguous()).clamp(1, 3)
    x0, x1, y0, y1 = xs.gather(-1, k - 1), xs.gather(-1, k), ys.gather(-1, k - 1), ys.gather(-1, k)
    t = ((u - x0) / (x1 - x0).clamp_min(1e-9)).clamp(0, 1)
    return y0 + t * (y1 - y0)


def iris_offsets(frames: Tensor | np.ndarray, landmarks: Tensor | np.ndarray) -> Tensor:
    """Where each iris sits in its eye opening (see the module docstring).

    Args:
        frames: ``F x H x W x 3`` uint8 or ``F x 3 x H x W`` float images in [0, 1].
        landmarks: ``F x 68 x 2`` iBUG-68 pixel points of the frames (NaN where no face).

    Returns:
        ``F x 2 x 2`` float64 (image-left eye, image-right eye; ``u``, ``v`` in eye widths); NaN where the frame
        has no face or the eye is too closed to show its iris (:data:`MIN_OPENNESS`).
    """
    images = torch.as_tensor(frames)
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2).double() / 255
    gray = images.double().mean(dim=1, keepdim=True)
    marks = torch.as_tensor(landmarks).double()
    if gray.shape[0] != marks.shape[0] or marks.shape[1:] != (68, 2):
        raise ValueError(f"need F frames and F x 68 x 2 landmarks, got {tuple(gray.shape)} and {tuple(marks.shape)}")
    h, w = gray.shape[-2:]
    rows, cols = GRID
    us = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols - 0.5
    vs = ((torch.arange(rows, dtype=torch.float64) + 0.5) / rows - 0.5) * 0.6
    out = torch.full((len(marks), 2, 2), float("nan"), dtype=torch.float64)
    finite = marks.isfinite().all(dim=2).all(dim=1)
    if not finite.any():
        return out
    for k, ids in enumerate((RIGHT_EYE, LEFT_EYE)):
        eye = marks[finite][:, list(ids)]
        mid, ax_u, ax_v, width = eye_axes(eye)
        local = eye - mid[:, None]
        pu = (local * ax_u[:, None]).sum(-1) / width[:, None]  # F x 6 in eye widths
        pv = (local * ax_v[:, None]).sum(-1) / width[:, None]
        top, bottom = lid_curve(pu[:, :4], pv[:, :4], us), lid_curve(pu[:, [0, 5, 4, 3]], pv[:, [0, 5, 4, 3]], us)
        inside = ((vs[None, :, None] > top[:, None]) & (vs[None, :, None] < bottom[:, None])
                  & (us.abs() < 0.45)).double()  # F x rows x cols
        pos = mid[:, None, None] + width[:, None, None, None] * (us[None, None, :, None] * ax_u[:, None, None]
                                                                  + vs[None, :, None, None] * ax_v[:, None, None])
        grid = torch.stack([pos[..., 0] / w * 2 - 1, pos[..., 1] / h * 2 - 1], -1)
        values = F.grid_sample(gray[finite], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
        masked = torch.where(inside > 0, values, torch.full_like(values, float("nan")))
        level = torch.nanquantile(masked.flatten(1), DARK_PERCENTILE, dim=1)
        weight = (level[:, None, None] - values).clamp_min(0) * inside
        total = weight.sum((1, 2))
        centroid = torch.stack([(weight * us).sum((1, 2)), (weight * vs[:, None]).sum((1, 2))], -1)
        centroid = centroid / total.clamp_min(1e-12)[:, None]
        openness = (bottom - top).clamp_min(0).mean(dim=1) / 0.9  # mean over |u| < 0.45 of the lid distance
        readable = (total > 0) & (inside.sum((1, 2)) >= 4) & (openness >= MIN_OPENNESS)
        centroid[~readable] = float("nan")
        out[finite.nonzero()[:, 0], k] = centroid
    return out


def fill_gaps(values: Tensor) -> Tensor:
    """``F x C`` series with NaN gaps filled by linear interpolation in time (held at the ends; all-NaN: 0)."""
    out = values.clone()
    t = torch.arange(len(values), dtype=torch.float64)
    for c in range(values.shape[1]):
        ok = values[:, c].isfinite()
        if not ok.any():
            out[:, c] = 0
        elif not ok.all():
            out[:, c] = torch.from_numpy(np.interp(t.numpy(), t[ok].numpy(), values[ok, c].double().numpy())).to(out)
    return out


def head_yaw(landmarks: Tensor) -> Tensor:
    """``... x 68 x 3`` iBUG landmarks in the camera frame (OpenCV: x right, y down, z forward) -> ``...`` the face's
    yaw (radians) from the camera: 0 facing it, positive turned towards the image's right."""
    across = landmarks[..., 42:48, :].mean(dim=-2) - landmarks[..., 36:42, :].mean(dim=-2)  # image-left to right eye
    down = landmarks[..., 8, :] - landmarks[..., 27, :]  # nose bridge to chin
    forward = torch.linalg.cross(down, across)  # out of the face: -z when it faces the camera
    return torch.atan2(forward[..., 0], -forward[..., 2])


def iris_u(eye: Tensor, head: Tensor) -> Tensor:
    """The iris's offset ``u`` (eye widths) of an eye turned by ``eye`` in a head turned by ``head`` (yaw, radians)."""
    return EYE_RADIUS * torch.sin(head + eye) / torch.cos(head).clamp_min(0.2)


def eye_yaw(u: Tensor, head: Tensor, limit: float = 0.9) -> Tensor:
    """Inverse of :func:`iris_u`: the eye's own yaw (radians) that shows its iris at ``u`` in a head turned by
    ``head``."""
    return torch.asin((u * torch.cos(head) / EYE_RADIUS).clamp(-limit, limit)) - head


def gaze_rotation(offsets: Tensor, head: Tensor | None = None) -> Tensor:
    """``F x 2 x 2`` iris offsets (:func:`iris_offsets`) and the head's ``F`` yaw (:func:`head_yaw`; None: facing
    the camera) -> ``F x 3`` axis-angle eye rotation shared by both eyes (their mean offset; frames where neither
    eye is readable are filled in from their neighbours in time)."""
    u, v = fill_gaps(offsets.nanmean(dim=1)).unbind(-1)
    yaw = eye_yaw(u, torch.zeros_like(u) if head is None else head.to(u))
    pitch = torch.asin((v / EYE_RADIUS).clamp(-0.9, 0.9))
    return torch.stack([pitch, yaw, torch.zeros_like(yaw)], -1)


__all__ = ["EYE_RADIUS", "LEFT_EYE", "RIGHT_EYE", "eye_axes", "eye_yaw", "fill_gaps", "gaze_rotation", "head_yaw",
           "iris_offsets", "iris_u", "lid_curve"]
