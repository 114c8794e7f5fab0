"""Linear blend skinning of the dense head (Eq. 4), built from ``smplx.lbs``'s pure functions.

Joints and pose correctives are computed on the coarse body model (so the skeleton depends on
β and ψ only, never on the detail fields); the transforms are then applied to any set of
canonical vertices with their own skinning weights — the dense detailed mesh in our case.
"""

from __future__ import annotations

import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues
from torch import Tensor


def pose_to_rotations(full_pose: Tensor) -> Tensor:
    """``B x J x 3`` axis-angle -> ``B x J x 3 x 3`` rotation matrices."""
    b, j, _ = full_pose.shape
    return batch_rodrigues(full_pose.reshape(-1, 3)).reshape(b, j, 3, 3)


def pose_feature(rotations: Tensor) -> Tensor:
    """SMPL-X pose-corrective feature ``B x 9(J-1)``: ``R_j - I`` of every joint but the root."""
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, 1:] - eye).flatten(1)


def joint_transforms(rotations: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """World transforms of each joint relative to its rest position.

    Args:
        rotations: ``B x J x 3 x 3`` local joint rotations.
        joints: ``B x J x 3`` rest joint locations.
        parents: ``J`` int64 kinematic tree (root = -1).

    Returns:
        posed joint locations ``B x J x 3`` and relative transforms ``B x J x 4 x 4``.
    """
    return batch_rigid_transform(rotations, joints, parents, dtype=rotations.dtype)


def skin(vertices: Tensor, weights: Tensor, transforms: Tensor) -> Tensor:
    """Blend ``B x J x 4 x 4`` transforms with ``N x J`` weights and apply to ``B x N x 3`` vertices."""
    b = vertices.shape[0]
    T = torch.matmul(weights, transforms.reshape(b, -1, 16)).reshape(b, -1, 4, 4)
    return torch.einsum("bnij,bnj->bni", T[..., :3, :3], vertices) + T[..., :3, 3]
