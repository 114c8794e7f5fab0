"""The head-and-shoulders subset P (Eq. 1) and the face / non-face region labels (Sec. 3.1.1).

Both are derived from data every SMPL-X file carries (skinning weights, joints, geometry and
the landmark embedding), so they work on the real model and the procedural one alike with no
extra licensed file.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.measure import points_in_poly
from torch import Tensor

# SMPL-X joint indices.
HEAD_AND_SHOULDER_JOINTS = (9, 12, 13, 14, 15, 16, 17, 22, 23, 24)
LOWER_ARM_AND_HAND_JOINTS = (18, 19, 20, 21, *range(25, 55))
SPINE3, L_SHOULDER, R_SHOULDER = 9, 16, 17


def head_and_shoulders_subset(vertices: Tensor, faces: Tensor, weights: Tensor, joints: Tensor,
                              margin: float = 0.06) -> tuple[Tensor, Tensor]:
    """Select P: vertices skinned mostly to the upper spine, neck, head and shoulder joints,
    above the upper spine and inside the shoulders, with no lower-arm or hand influence.

    Args:
        vertices: ``N_full x 3`` rest-pose vertices; faces: ``M x 3``; weights: ``N_full x 55``;
        joints: ``55 x 3`` rest joints.

    Returns:
        ``index`` (``N`` int64, sorted ids of P in the full mesh) and the sub-mesh faces ``M_P x 3``
        re-indexed into P (faces with all three corners in P).
    """
    hs = weights[:, list(HEAD_AND_SHOULDER_JOINTS)].sum(1)
    arm = weights[:, list(LOWER_ARM_AND_HAND_JOINTS)].sum(1)
    half_width = joints[[L_SHOULDER, R_SHOULDER], 0].abs().max() + margin
    keep = (hs > 0.5) & (arm < 0.05) & (vertices[:, 1] > joints[SPINE3, 1] - 0.1) \
        & (vertices[:, 0].abs() < half_width)
    face_keep = keep[faces].all(1)
    used = torch.zeros_like(keep)
    used[faces[face_keep].reshape(-1)] = True
    index = torch.nonzero(used).squeeze(1)
    remap = torch.full((vertices.shape[0],), -1, dtype=torch.long)
    remap[index] = torch.arange(index.shape[0])
    return index, remap[faces[face_keep]]


def face_region(vertices: Tensor, normals: Tensor, landmarks: Tensor, head_joint: Tensor,
                forehead: float = 0.45) -> Tensor:
    """Label the facial region of a neutral mesh: ``N`` float mask (1 = face).

    A vertex is facial when, seen from the front (x, y), it lies inside the polygon of the jaw
    contour (iBUG landmarks 0-16) closed over the eyebrows (26..17) raised by ``forehead`` times
    the brow-to-nose-tip height, faces forward (normal z > 0.2) and lies in front of the head joint.

    Args:
        vertices, normals: ``N x 3`` neutral rest-pose vertices and unit normals (world frame).
        landmarks: ``68 x 3`` iBUG-68 landmarks on that mesh.
        head_joint: ``3`` location of the head joint.
    """
    lm = landmarks.detach().cpu().numpy()
    lift = forehead * (lm[17:27, 1].mean() - lm[33, 1])
    brows = lm[26:16:-1, :2] + np.array([0.0, lift])
    polygon = np.concatenate([lm[0:17, :2], brows])
    inside = torch.from_numpy(points_in_poly(vertices[:, :2].detach().cpu().numpy(), polygon))
    front = (normals[:, 2] > 0.2) & (vertices[:, 2] > head_joint[2])
    return (inside.to(vertices.device) & front).to(vertices.dtype)


# iBUG-68 landmark groups of the regions an animation can be limited to.
FEATURE_LANDMARKS = {"lips": tuple(range(48, 68)), "eyes": tuple(range(36, 48)), "brows": tuple(range(17, 27))}


def feature_region(vertices: Tensor, landmarks: Tensor, face_mask: Tensor, ids: tuple[int, ...],
                   radius: float) -> Tensor:
    """``N`` soft weight in [0, 1] of the neighbourhood of landmarks ``ids`` on a neutral mesh: 1 within the
    landmarks' frontal (x, y) bounding ellipse grown by ``radius`` / 2 (metres), falling smoothly to 0 at
    ``radius`` beyond it, and 0 off the face."""
    pts = landmarks[list(ids), :2]
    centre = (pts.max(0).values + pts.min(0).values) / 2
    half = (pts.max(0).values - pts.min(0).values) / 2 + radius / 2
    d = (((vertices[:, :2] - centre) / half) ** 2).sum(1).sqrt()  # 1 on the grown ellipse
    reach = 1 + radius / half.min()
    t = ((reach - d) / (reach - 1)).clamp(0, 1)
    return t * t * (3 - 2 * t) * face_mask
