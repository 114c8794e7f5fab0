"""The methods ``exp-bench`` runs itself: ``ours`` (the expgen pipeline) and the baselines, by name.

``ours`` runs :func:`expgen.pipeline.animate` on an item's cropped inputs: the geometric generator
unless diffusion weights are given. The pipeline crops its input again around the face; its frames
are mapped back into the benchmark crop (:func:`uncrop`) so that they align with the ground truth,
the uncovered margin (if any) filled with the reference image, the method's own input. In
self-reenactment the reference frame is prepended to the driving frames (``mode="self"``, the
reference is frame 0 of the clip it animates) and its reconstruction dropped from the output.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import torch
from torch import Tensor

from exphead.head_model import HeadModel
from exphead.media import to_uint8
from exphead.tracking.crop import CropBox, detect_and_crop
from exphead.tracking.landmarks import LandmarkDetector

from ..pipeline import AnimateConfig, animate
from .baselines import DrivingCopy, GeneratedVideos, Method, ReferenceCopy
from .protocols import PreparedItem

METHODS = ("ours", "reference_copy", "driving_copy")


def uncrop(frames: Tensor, box: CropBox, size: int, fill: Tensor) -> Tensor:
    """Place frames generated in the crop ``box`` back into the ``size x size`` image they were cropped from.

    Args:
        frames: ``F x 3 x s x s`` frames showing the square ``box`` (left, top, side in pixels of the
            ``size x size`` image; it may reach outside it).
        size: side of the image.
        fill: ``3 x size x size`` image for the pixels the box does not cover.

    Returns:
        ``F x 3 x size x size`` frames.
    """
    out = fill[None].expand(frames.shape[0], -1, -1, -1).clone()
    scaled = torch.nn.functional.interpolate(frames, (box.side, box.side), mode="bilinear", antialias=True,
                                             align_corners=False).clamp(0, 1)
    y0, x0 = max(box.top, 0), max(box.left, 0)
    y1, x1 = min(box.top + box.side, size), min(box.left + box.side, size)
    if y1 > y0 and x1 > x0:
        out[:, :, y0:y1, x0:x1] = scaled[:, :, y0 - box.top:y1 - box.top, x0 - box.left:x1 - box.left]
    return out


class Ours:
    """ExpPortrait through :func:`expgen.pipeline.animate`.

    Args:
        config: pipeline settings (``size``, ``stride``, ``max_frames`` and ``mode`` are set per item).
        model: head model (default: SMPL-X or the embedded procedural model).
        detector: landmark detector (default: dlib's); it also finds the pipeline's crop for :func:`uncrop`.
    """

    name = "ours"

    def __init__(self, config: AnimateConfig | None = None, model: HeadModel | None = None,
                 detector: LandmarkDetector | None = None) -> None:
        if detector is None:
            from exphead.tracking.landmarks import DlibLandmarkDetector

            detector = DlibLandmarkDetector()
        self.config = replace(config or AnimateConfig(), show_progress=False)
        self.model = model or HeadModel()
        self.detector = detector
        self.last_generator: str | None = None

    def settings(self) -> dict:
        """The pipeline settings that change the output."""
        skip = ("size", "stride", "max_frames", "mode", "reference_frame", "show_progress", "device")
        return {k: v for k, v in asdict(self.config).items() if k not in skip}

    def __call__(self, item: PreparedItem) -> Tensor:
        """Generated frames ``F x 3 x S x S`` in the benchmark crop."""
        size = item.driving.shape[-1]
        cfg = replace(self.config, size=size, stride=1, max_frames=None)
        reference = to_uint8(item.reference[None])
        driving = to_uint8(item.driving)
        if item.protocol == "self":
            frames = np.concatenate([reference, driving])
            result = animate(None, frames, replace(cfg, mode="self", reference_frame=0), self.model, self.detector,
                             driving_fps=item.fps)
            box = detect_and_crop(frames, self.detector, cfg.fit_size)
            generated = result.frames[1:]
        else:
            result = animate(reference[0], driving, replace(cfg, mode="cross"), self.model, self.detector,
                             driving_fps=item.fps)
            box = detect_and_crop(reference, self.detector, cfg.fit_size, "fail")
            generated = result.frames
        self.last_generator = result.generator
        return uncrop(generated.float().cpu(), box, size, item.reference)


def make_method(name: str, ours_config: AnimateConfig | None = None, model: HeadModel | None = None,
                detector: LandmarkDetector | None = None) -> Method:
    """A method by name: ``ours``, ``reference_copy`` or ``driving_copy``."""
    if name == "ours":
        return Ours(ours_config, model, detector)
    if name == "reference_copy":
        return ReferenceCopy()
    if name == "driving_copy":
        return DrivingCopy()
    raise ValueError(f"unknown method {name!r}: use one of {list(METHODS)}, or score videos made elsewhere "
                     "with `exp-bench score --generated DIR`")


__all__ = ["METHODS", "GeneratedVideos", "Ours", "make_method", "uncrop"]
