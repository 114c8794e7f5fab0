"""Linear blend skinning of the dense head (Eq. 4), built from ``smplx.lbs``'s pure functions.

Joints and pose correctives are computed on the coarse body model (so the skeleton depends on
β and ψ only, never on the detail fields); the transforms are then applied to any set of
canonical vertices with their own skinning weights — the dense detailed mesh in our case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from smplx.lbs import batch_rodrigues, transform_mat
from torch import Tensor


def pose_to_rotations(full_pose: Tensor) -> Tensor:
    """``B x J x 3`` axis-angle -> ``B x J x 3 x 3`` rotation matrices."""
    b, j, _ = full_pose.shape
    return batch_rodrigues(full_pose.reshape(-1, 3)).reshape(b, j, 3, 3)


def pose_feature(rotations: Tensor) -> Tensor:
    """SMPL-X pose-corrective feature ``B x 9(J-1)``: ``R_j - I`` of every joint but the root."""
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, 1:] - eye).flatten(1)


def skeleton_levels(parents: list[int]) -> list[tuple[Tensor, Tensor]]:
    """The joints of a kinematic tree (``parents[j] < j``, root ``-1``) grouped by depth, for
    :func:`joint_transforms`: per level, the joints' indices and their parents' positions among the joints of
    all earlier levels concatenated in level order."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= j and p != -1:
            raise ValueError(f"joint {j} has parent {p}: parents must come before their children")
        depth[j] = 0 if p < 0 else depth[p] + 1
    levels, position = [], {}
    for d in range(max(depth) + 1):
        joints = [j for j in range(len(parents)) if depth[j] == d]
        levels.append((torch.tensor(joints), torch.tensor([position.get(parents[j], -1) for j in joints])))
        offset = len(position)
        position.update({j: offset + k for k, j in enumerate(joints)})
    return levels


def joint_transforms(rotations: Tensor, joints: Tensor, parents: Tensor,
                     levels: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
    """World transforms of each joint relative to its rest position (``smplx.lbs.batch_rigid_transform``'s
    result, composed one tree level at a time instead of one joint at a time).

    Args:
        rotations: ``B x J x 3 x 3`` local joint rotations.
        joints: ``B x J x 3`` rest joint locations.
        parents: ``J`` int64 kinematic tree (root = -1, parents before children).
        levels: :func:`skeleton_levels` of ``parents`` (computed here when None).

    Returns:
        posed joint locations ``B x J x 3`` and relative transforms ``B x J x 4 x 4``.
    """
    levels = levels if levels is not None else skeleton_levels(parents.tolist())
    b, j = joints.shape[:2]
    rel = joints - torch.where(parents[:, None] >= 0, joints[:, parents.clamp_min(0)], torch.zeros_like(joints))
    local = transform_mat(rotations.reshape(-1, 3, 3), rel.reshape(-1, 3, 1)).reshape(b, j, 4, 4)
    done: list[Tensor] = []
    order = []
    for index, parent in levels:
        index, parent = index.to(joints.device), parent.to(joints.device)
        mats = local[:, index]
        if done:
            mats = torch.cat(done, 1)[:, parent] @ mats
        done.append(mats)
        order.append(index)
    world = torch.cat(done, 1)[:, torch.argsort(torch.cat(order))]
    posed = world[..., :3, 3]
    rest = F.pad(joints[..., None], (0, 0, 0, 1))  # B x J x 4 x 1, homogeneous 0
    return posed, world - F.pad(world @ rest, (3, 0))


def skin(vertices: Tensor, weights: Tensor, transforms: Tensor) -> Tensor:
    """Blend ``B x J x 4 x 4`` transforms with ``N x J`` weights and apply to ``B x N x 3`` vertices."""
    b = vertices.shape[0]
    T = torch.matmul(weights, transforms.reshape(b, -1, 16)).reshape(b, -1, 4, 4)
    return torch.einsum("bnij,bnj->bni", T[..., :3, :3], vertices) + T[..., :3, 3]
