"""Accuracy of detailed canonical meshes on the face: vertex error (mm) and vertex-normal error (degrees)."""

from __future__ import annotations

import torch
from torch import Tensor

from exphead.geometry import vertex_normals


def vertex_error_mm(pred: Tensor, target: Tensor, face_mask: Tensor) -> Tensor:
    """Mean Euclidean distance in mm between ``F x N_s x 3`` meshes (metres) over face vertices (``N_s`` mask)."""
    face = face_mask > 0
    return (pred[:, face] - target[:, face]).norm(dim=-1).mean() * 1000.0


def normal_error_deg(pred: Tensor, target: Tensor, faces: Tensor, face_mask: Tensor) -> Tensor:
    """Mean angle in degrees between the vertex normals of ``F x N_s x 3`` meshes over face vertices."""
    face = face_mask > 0
    cos = (vertex_normals(pred, faces)[:, face] * vertex_normals(target, faces)[:, face]).sum(-1)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))).mean()
