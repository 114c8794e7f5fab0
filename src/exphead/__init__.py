"""exphead: the personalized head representation of ExpPortrait (paper Sec. 3.1).

SMPL-X base (through the ``smplx`` package) -> head-and-shoulders subset P -> fixed barycentric
up-sampling B to a dense mesh -> static identity offsets Δg and per-frame expression offsets
Δf(i) -> LBS posing -> differentiable normal / depth rendering -> fitting against landmarks,
normals and depth (:func:`fit_subject`).

Conventions, shared by the whole library:

* World space is the body model's: y up, +z out of the face, +x to the subject's left,
  right-handed, metres.
* Camera space is OpenCV's: x right, y down, z forward (visible points have z > 0),
  right-handed; ``X_cam = R @ X_world + t`` (:class:`exphead.camera.Camera`).
* Pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` with its centre at ``(j + 0.5, i + 0.5)``;
  ``u = fx * x / z + cx``, ``v = fy * y / z + cy``. Every renderer backend obeys this.
* Tensors are batch first: images ``B x 3 x H x W`` in [0, 1]; normal maps are camera-space unit
  vectors (0 where empty), encoded ``(n + 1) / 2`` only at the image boundary; depth is camera
  ``z`` in scene units with 0 = empty. Meshes are ``B x N x 3`` vertices and ``M x 3`` int64
  faces, counter-clockwise seen from outside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .camera import Camera, project_points
from .head_model import HeadModel, HeadOutput, HeadParams
from .personalized import PersonalizedHead
from .tracking import TrackerConfig, VideoTracker, track

if TYPE_CHECKING:
    from .fitting import FitConfig, fit_subject

__all__ = ["Camera", "FitConfig", "HeadModel", "HeadOutput", "HeadParams", "PersonalizedHead", "TrackerConfig",
           "VideoTracker", "fit_subject", "project_points", "track"]


def __getattr__(name: str):
    # The fitting stack imports Lightning; load it on first use only.
    if name in ("fit_subject", "FitConfig"):
        from . import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'exphead' has no attribute {name!r}")
