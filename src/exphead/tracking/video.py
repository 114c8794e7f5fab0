"""The one tracking entry of the library: frames -> face crop -> landmarks -> SMPL-X parameters.

:class:`VideoTracker` holds the detector, the head model and a :class:`TrackerConfig`; the reference fit
(:func:`exphead.fitting.load_targets`), the driving video of ``exp-animate``, the clip builder and the
AED / APD motion extractor all run it, so a setting means the same everywhere:

1. :meth:`VideoTracker.locate` — one square crop box for the whole clip (:class:`CropBox`), from the
   landmarks of up to ``sample`` evenly spaced frames;
2. :meth:`VideoTracker.detect` — the frames cropped to ``size x size`` and their 68 landmarks
   (:class:`FaceTrack`);
3. :meth:`VideoTracker.fit` — SMPL-X parameters of every frame (:func:`track_landmarks`);

:meth:`VideoTracker.track` runs all three.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from exphead.head_model import HeadModel, HeadParams

from .crop import SHIFT_UP, CropBox, face_crop_box
from .gaze import gaze_rotation, head_yaw, iris_offsets
from .landmarks import LandmarkDetector, NoFaceError, detect_landmarks
from .tracker import TrackerConfig, TrackingResult, track_landmarks

logger = logging.getLogger(__name__)
OnMissing = Literal["skip", "fail"]


@dataclass
class FaceTrack:
    """Frames cropped around the face and their landmarks.

    Attributes:
        frames: ``F x S x S x 3`` uint8 crops (or the frames themselves when not cropped: ``F x H x W x 3``).
        landmarks: ``F x 68 x 2`` pixels in ``frames`` (NaN where no face was found).
        valid: ``F`` bool, a face was found.
        box: the crop box in the source frames (None: not cropped).
    """

    frames: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    box: CropBox | None = None

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]


@dataclass
class TrackedVideo:
    """What :meth:`VideoTracker.track` found: the face track and the SMPL-X tracking of its frames."""

    face: FaceTrack
    result: TrackingResult

    @property
    def box(self) -> CropBox | None:
        return self.face.box


@dataclass
class VideoTracker:
    """Detect, crop and track faces with one detector, head model and :class:`TrackerConfig`.

    Args:
        config: the SMPL-X tracker's settings.
        size: side of the square crops landmarks are detected and tracked at.
        detector: 68-point landmark detector (default: :class:`~exphead.tracking.faces.DlibFaceDetector`,
            built on first use).
        model: the head model fitted (default: ``HeadModel()``, built on first use).
        sample: frames used to find the crop box (evenly spaced; cheap for long videos).
        face_index: which face is the subject when several are seen: 0 the largest in the first frame with a
            face, 1 the next largest, ...; the subject is then followed from frame to frame.
    """

    config: TrackerConfig = field(default_factory=TrackerConfig)
    size: int = 256
    detector: LandmarkDetector | None = None
    model: HeadModel | None = None
    sample: int = 8
    face_index: int = 0

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"tracking size must be >= 16 pixels, got {self.size}")

    def landmark_detector(self) -> LandmarkDetector:
        """The detector (built on first use)."""
        if self.detector is None:
            from .faces import DlibFaceDetector

            self.detector = DlibFaceDetector()
        return self.detector

    def head_model(self) -> HeadModel:
        """The head model (built on first use)."""
        if self.model is None:
            self.model = HeadModel()
        return self.model

    def locate(self, frames: np.ndarray, on_missing: OnMissing = "skip", source: str = "input") -> CropBox:
        """One crop box for ``F x H x W x 3`` uint8 frames, from up to ``sample`` evenly spaced frames.

        Raises:
            NoFaceError: no face in the sampled frames (or in one of them, with ``on_missing="fail"``).
        """
        idx = np.unique(np.linspace(0, len(frames) - 1, min(self.sample, len(frames))).round().astype(int))
        detector = self.landmark_detector()
        follow = self._subject(frames[idx], source) if hasattr(detector, "detect") else None
        lm, valid = detect_landmarks(frames[idx], detector, "skip", source, follow)
        if on_missing == "fail" and not valid.all():
            raise NoFaceError(f"{source}: no face found in frame {idx[~valid][0]}")
        return face_crop_box(lm, valid, frames.shape[1], frames.shape[2])

    def _subject(self, frames: np.ndarray, source: str) -> np.ndarray | None:
        """``(x, y)`` centre of the subject's face in the first of ``frames`` that shows a face (None: none)."""
        for frame in frames:
            faces = sorted(self.landmark_detector().detect(frame), key=lambda f: -f.side)
            if not faces:
                continue
            if self.face_index >= len(faces):
                raise NoFaceError(f"{source}: face_index {self.face_index} asked, {len(faces)} face(s) found")
            if sum(f.side > 0.5 * faces[0].side for f in faces) > 1:
                logger.warning("%s: %d faces; the subject is face %d (the %s; choose another with face_index)",
                               source, len(faces), self.face_index, "largest" if self.face_index == 0 else
                               f"{self.face_index + 1}th largest")
            return faces[self.face_index].center
        return None

    def detect(self, frames: np.ndarray, crop: bool = True, box: CropBox | None = None,
               on_missing: OnMissing = "skip", source: str = "input", follow: np.ndarray | None = None
               ) -> FaceTrack:
        """Crop ``F x H x W x 3`` uint8 frames (with ``box``, else :meth:`locate`'s) to ``size`` and detect
        their landmarks, following the subject's face (``follow``: its ``(x, y)`` centre in the first crop;
        default where :func:`face_crop_box` puts it); ``crop=False`` keeps the frames as they are."""
        if crop:
            box = box or self.locate(frames, on_missing, source)
            frames = box.apply(frames, self.size)
            if follow is None:
                follow = np.array([0.5, 0.5 + SHIFT_UP]) * self.size
        landmarks, valid = detect_landmarks(frames, self.landmark_detector(), on_missing, source, follow)
        return FaceTrack(frames, landmarks, valid, box if crop else None)

    def fit(self, landmarks: np.ndarray | Tensor, valid: np.ndarray | Tensor, height: int, width: int,
            prefix: HeadParams | None = None, frames: np.ndarray | None = None) -> TrackingResult:
        """SMPL-X parameters of ``F`` frames of ``height x width`` pixels from their ``F x 68 x 2`` landmarks
        (frames not ``valid`` are filled in by the temporal smoothness; ``prefix``: the tracked parameters of the
        frames just before, for a video tracked in chunks, see :func:`track_landmarks`). Given the ``F x H x W x 3``
        uint8 ``frames`` the landmarks were found in, the eye poses hold the gaze read from their irises
        (:mod:`exphead.tracking.gaze`); otherwise they stay 0."""
        with torch.enable_grad():
            result = track_landmarks(self.head_model(), torch.as_tensor(landmarks), height, width, self.config,
                                     torch.as_tensor(valid), prefix)
        if frames is not None:
            p = result.params
            with torch.no_grad():
                head = head_yaw(result.camera.world_to_camera(self.head_model().posed_landmarks(p)))
            eyes = gaze_rotation(iris_offsets(frames, landmarks), head).to(p.leye_pose)
            p.leye_pose, p.reye_pose = eyes, eyes.clone()
        return result

    def track(self, frames: np.ndarray, crop: bool = True, box: CropBox | None = None,
              on_missing: OnMissing = "skip", source: str = "input") -> TrackedVideo:
        """:meth:`detect` then :meth:`fit`."""
        face = self.detect(frames, crop, box, on_missing, source)
        return TrackedVideo(face, self.fit(face.landmarks, face.valid, face.height, face.width))


def track(source: str | os.PathLike | np.ndarray, config: TrackerConfig | None = None, size: int = 256,
          stride: int = 1, max_frames: int | None = None, detector: LandmarkDetector | None = None,
          model: HeadModel | None = None) -> TrackedVideo:
    """Track a video, a frame folder, an image (paths are read by :class:`~exphead.media.FrameSource`) or
    ``F x H x W x 3`` uint8 frames with a :class:`VideoTracker`."""
    from exphead.media import FrameSource

    frames = source if isinstance(source, np.ndarray) else FrameSource(source, stride, max_frames).read()
    tracker = VideoTracker(config or TrackerConfig(), size, detector, model)
    return tracker.track(frames, source=str(source) if not isinstance(source, np.ndarray) else "frames")


__all__ = ["FaceTrack", "TrackedVideo", "VideoTracker", "track"]
