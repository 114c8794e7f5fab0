"""Ground-truth detail fields of synthetic subjects.

* :func:`static_offsets` — Δg: hair volume on the cranium and clothing folds on the shoulders,
  outside the face (what Sec. 3.1.3 expects the static field to hold).
* :func:`expression_details` — Δf(i): wrinkles that appear with the expression and whose depth,
  width and placement depend on the identity (an age-like parameter and the subject's own
  landmarks). A child's smile makes shallow folds, an elderly subject's deep ones in other
  places: the identity-expression coupling the transfer module of Sec. 3.2 must learn.

All inputs are the subject's neutral dense mesh (world frame, metres) and its iBUG-68 landmarks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Expression coefficients of the procedural model that drive the wrinkles.
SMILE, BROW_RAISE, BROW_FURROW = 0, 3, 4


def _segment_distance(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of ``N x 2`` points to the segment ``a``-``b`` (2-vectors)."""
    ab = b - a
    t = ((p - a) @ ab / ab.dot(ab)).clamp(0, 1)
    return (p - (a + t[:, None] * ab)).norm(dim=-1)


def _grooves(phase: Tensor, sharpness: float = 4.0) -> Tensor:
    """Narrow periodic grooves in [0, 1] (1 at the groove centre)."""
    return (0.5 + 0.5 * torch.cos(2 * math.pi * phase)) ** sharpness


def wrinkle_bases(neutral: Tensor, landmarks: Tensor, face_mask: Tensor, age: float) -> Tensor:
    """``3 x N_s`` inward depths (metres) of the forehead lines, smile folds + crow's feet, and frown lines
    at full activation, for one identity."""
    x, y = neutral[:, 0], neutral[:, 1]
    lm = landmarks
    brow_y = lm[17:27, 1].mean()
    face_h = brow_y - lm[8, 1]
    depth = 0.0004 + 0.0026 * age

    # Forehead lines: horizontal grooves above the brows; spacing scales with the face height.
    spacing = face_h * (0.07 + 0.03 * (1 - age))
    half_w = 0.9 * (lm[26, 0] - lm[17, 0]) / 2
    region = torch.sigmoid((y - brow_y - 0.008) / 0.002) * torch.sigmoid((brow_y + 0.055 - y) / 0.004)
    region = region * torch.sigmoid((half_w - x.abs()) / 0.004)
    forehead = depth * region * _grooves((y - brow_y) / spacing)

    # Smile folds (nose wing -> beyond the mouth corner) and crow's feet at the outer eye corners.
    p = neutral[:, :2]
    width = 0.0018 + 0.0025 * age
    folds = torch.zeros_like(x)
    for wing, corner in ((31, 48), (35, 54)):
        a = lm[wing, :2] + (lm[wing, :2] - lm[30, :2]) * torch.tensor([0.6, 0.0])
        b = lm[corner, :2] + (lm[corner, :2] - lm[wing, :2]) * 0.25 + torch.tensor([0.0, -0.004])
        folds = folds + torch.exp(-0.5 * (_segment_distance(p, a, b) / width) ** 2)
    crows = torch.zeros_like(x)
    rays = 4 + round(3 * age)
    for corner, sign in ((36, -1.0), (45, 1.0)):
        d = p - lm[corner, :2]
        r = d.norm(dim=-1)
        theta = torch.atan2(d[:, 1], sign * d[:, 0])
        fan = torch.sigmoid((sign * d[:, 0]) / 0.002) * torch.exp(-0.5 * ((r - 0.012) / 0.006) ** 2)
        crows = crows + fan * _grooves(theta * rays / math.pi, 6.0)
    smile = depth * (folds + 0.6 * crows)

    # Frown lines: two vertical grooves between the inner brows.
    gap = (lm[22, 0] - lm[21, 0]) * (0.25 + 0.1 * age)
    cy = brow_y - 0.002
    frown = sum(torch.exp(-0.5 * (((x - s * gap) / (0.0012 + 0.001 * age)) ** 2 + ((y - cy) / 0.008) ** 2))
                for s in (-1.0, 1.0))
    frown = depth * frown
    return torch.stack([forehead, smile, frown]) * face_mask


def expression_details(neutral: Tensor, normals: Tensor, landmarks: Tensor, face_mask: Tensor, age: float,
                       expression: Tensor) -> Tensor:
    """Δf(i) for ``F x E`` expression coefficients: ``F x N_s x 3`` (inward along the neutral normals).

    A wrinkle family deepens with the positive part of its driving coefficient (brow raise ->
    forehead lines, smile -> folds and crow's feet, brow furrow -> frown lines), saturating at 2.
    """
    bases = wrinkle_bases(neutral, landmarks, face_mask, age)  # 3 x N_s
    act = expression[:, [BROW_RAISE, SMILE, BROW_FURROW]].clamp(0, 2) / 2  # F x 3
    depth = act @ bases  # F x N_s
    return -depth[..., None] * normals[None]


def _smooth_noise(points: Tensor, generator: torch.Generator, count: int = 24, scale: float = 0.035) -> Tensor:
    centers = points[torch.randint(0, points.shape[0], (count,), generator=generator)]
    weights = torch.rand(count, generator=generator) * 2 - 1
    g = torch.exp(-0.5 * torch.cdist(points, centers) ** 2 / scale**2)
    return g @ weights


def static_offsets(neutral: Tensor, normals: Tensor, landmarks: Tensor, face_mask: Tensor,
                   generator: torch.Generator, hair: float = 0.018, clothing: float = 0.004) -> Tensor:
    """Δg: ``N_s x 3`` hair volume on the cranium (thicker on top, none on the face) and clothing folds."""
    x, y, z = neutral.unbind(-1)
    brow_y = landmarks[17:27, 1].mean()
    cranium = torch.sigmoid((y - brow_y - 0.035) / 0.006) + torch.sigmoid(-z / 0.01) * torch.sigmoid(
        (y - brow_y + 0.03) / 0.008)
    cranium = cranium.clamp(0, 1) * (1 - face_mask)
    thickness = hair * (0.75 + 0.25 * torch.tanh(_smooth_noise(neutral, generator)))
    collar = torch.exp(-0.5 * ((y + 0.035) / 0.008) ** 2) * (1 - face_mask)
    folds = torch.sin(x * 90 + 2 * z * 40) * torch.sigmoid((-0.06 - y) / 0.01)
    amount = cranium * thickness + clothing * (collar + 0.6 * folds)
    return amount[:, None] * normals
