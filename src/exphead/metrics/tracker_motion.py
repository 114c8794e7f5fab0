"""The AED / APD motion extractor built on exphead's tracker (:class:`~exphead.tracking.VideoTracker`).

For frames ``N x 3 x H x W`` it resizes them to the tracker's size, detects the 68 landmarks of each frame
(dlib by default), fits SMPL-X to them over the whole clip (shared β, per-frame ψ, jaw, head rotation and
translation, temporally smoothed) and returns, per frame, the expression vector ψ (the ``num_expression``
tracked coefficients) followed by the jaw axis-angle, and the head rotation (neck + head, axis-angle,
radians). Frames without a detected face get the smoothed parameters of their neighbours; a clip with no
face at all raises :class:`~exphead.tracking.NoFaceError`.

It measures motion with the same eyes that drive ExpPortrait's animation, so it favours methods that
use the same tracker: use an independent extractor to compare methods.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor

from exphead.media import resize_frames, to_uint8
from exphead.metrics.motion import MotionEstimate
from exphead.tracking.video import VideoTracker


class TrackerMotionExtractor:
    """A :class:`~exphead.metrics.MotionExtractor` running a :class:`VideoTracker` on uncropped frames.

    Args:
        tracker: the tracker (its ``size``, detector, head model and config); default ``VideoTracker()``.
    """

    def __init__(self, tracker: VideoTracker | None = None) -> None:
        self.tracker = tracker or VideoTracker()

    def settings(self) -> dict:
        """What determines the parameters (part of the cache key of driving motion)."""
        t = self.tracker
        return {"extractor": "tracker", "tracker": {k: v for k, v in asdict(t.config).items() if k != "show_progress"},
                "size": t.size, "num_expression": t.head_model().num_expression,
                "detector": type(t.landmark_detector()).__name__}

    def __call__(self, frames: Tensor) -> MotionEstimate:
        """Expression ``N x (E + 3)`` and head pose ``N x 3`` of frames ``N x 3 x H x W`` in [0, 1]."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be N x 3 x H x W, got {tuple(frames.shape)}")
        size = self.tracker.size
        tracked = self.tracker.track(to_uint8(resize_frames(frames.float().cpu(), size).clamp(0, 1)), crop=False)
        num = min(self.tracker.config.num_expression, self.tracker.head_model().num_expression)
        params = tracked.result.params
        expression = torch.cat([params.expression[:, :num], params.jaw_pose], dim=1)
        return MotionEstimate(expression.detach(), tracked.result.head_rotation.detach(), params.transl.detach())


__all__ = ["TrackerMotionExtractor"]
