"""The motion extractor of AED / APD: exphead's SMPL-X tracker run on a clip's frames.

For frames ``N x 3 x H x W`` it detects the 68 landmarks of each frame (dlib by default), fits SMPL-X
to them over the whole clip (:func:`exphead.tracking.tracker.track_landmarks`: shared β, per-frame ψ,
jaw, head rotation and translation, temporally smoothed) and returns, per frame, the expression
vector ψ (the ``num_expression`` tracked coefficients) followed by the jaw axis-angle, and the head
rotation (neck + head, axis-angle, radians). Frames without a detected face get the smoothed
parameters of their neighbours; a clip with no face at all raises :class:`NoFaceError`.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor

from exphead.head_model import HeadModel
from exphead.media import to_uint8
from exphead.metrics import MotionEstimate
from exphead.tracking.landmarks import LandmarkDetector, detect_landmarks
from exphead.tracking.tracker import TrackerConfig, track_landmarks

from .protocols import frames_to_size


class TrackerMotionExtractor:
    """A :class:`exphead.metrics.MotionExtractor` built on exphead's landmark tracker.

    Args:
        model: the head model to fit (default: SMPL-X or the embedded procedural model).
        detector: the 68-point landmark detector (default: dlib's).
        config: tracker settings; its ``num_expression`` sets the length of ψ in the expression vector.
        size: frames are resized to ``size x size`` before detection and fitting.
    """

    def __init__(self, model: HeadModel | None = None, detector: LandmarkDetector | None = None,
                 config: TrackerConfig | None = None, size: int = 256) -> None:
        if detector is None:
            from exphead.tracking.landmarks import DlibLandmarkDetector

            detector = DlibLandmarkDetector()
        self.model = model or HeadModel()
        self.detector = detector
        self.config = config or TrackerConfig()
        self.size = size

    def settings(self) -> dict:
        """What determines the parameters (part of the cache key of driving motion)."""
        return {"tracker": asdict(self.config), "size": self.size, "num_expression": self.model.num_expression,
                "detector": type(self.detector).__name__}

    def __call__(self, frames: Tensor) -> MotionEstimate:
        """Expression ``N x (E + 3)`` and head pose ``N x 3`` of frames ``N x 3 x H x W`` in [0, 1]."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be N x 3 x H x W, got {tuple(frames.shape)}")
        frames = frames_to_size(frames.float().cpu(), self.size)
        landmarks, valid = detect_landmarks(to_uint8(frames), self.detector, on_missing="skip")
        with torch.enable_grad():
            result = track_landmarks(self.model, torch.from_numpy(landmarks), self.size, self.size, self.config,
                                     torch.from_numpy(valid))
        num = min(self.config.num_expression, self.model.num_expression)
        params = result.params
        expression = torch.cat([params.expression[:, :num], params.jaw_pose], dim=1)
        return MotionEstimate(expression.detach(), result.head_rotation.detach(), params.transl.detach())


__all__ = ["TrackerMotionExtractor"]
