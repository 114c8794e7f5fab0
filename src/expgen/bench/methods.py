"""The methods ``exp-bench`` runs itself: ``ours`` (the expgen animator) and the baselines, by name.

``ours`` holds one :class:`~expgen.animator.Animator` for the whole run (models and weights load once),
built from exactly the :class:`~expgen.animator.AnimateConfig` that ``exp-animate`` takes (the same
options, ``--ours.*``), and runs it on each item's cropped inputs. The animator crops its input again
around the face; its frames are mapped back into the benchmark crop with the crop boxes it returns
(:func:`uncrop`) so that they align with the ground truth, the uncovered margin (if any) filled with the
reference image, the method's own input. In self-reenactment the reference frame is prepended to the
driving frames (``mode="self"``, the reference is frame 0 of the clip it animates) and its reconstruction
dropped from the output.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from torch import Tensor

from exphead.media import resize_frames, to_uint8
from exphead.tracking import CropBox

from ..animator import Animator
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
    scaled = resize_frames(frames, box.side).clamp(0, 1)
    y0, x0 = max(box.top, 0), max(box.left, 0)
    y1, x1 = min(box.top + box.side, size), min(box.left + box.side, size)
    if y1 > y0 and x1 > x0:
        out[:, :, y0:y1, x0:x1] = scaled[:, :, y0 - box.top:y1 - box.top, x0 - box.left:x1 - box.left]
    return out


class Ours:
    """ExpPortrait through one :class:`~expgen.animator.Animator` (see the module docstring).

    Its output size is the manifest's: build the animator with ``AnimateConfig(size=manifest.size, ...)``.
    """

    name = "ours"

    def __init__(self, animator: Animator) -> None:
        if animator.config.stride != 1 or animator.config.max_frames is not None:
            raise ValueError("the benchmark's items are already sampled: build the animator with stride=1 and "
                             "max_frames=None (expgen.bench.cli.ours_config)")
        self.animator = animator
        self.last_generator: str | None = None
        self.last_components: dict | None = None

    def settings(self) -> dict:
        """What changes the output: the configuration (not its progress display) and what runs."""
        config = {k: v for k, v in asdict(self.animator.config).items() if k != "show_progress"}
        config["tracker"].pop("show_progress", None)
        return {"config": config, "components": self.animator.components()}

    def __call__(self, item: PreparedItem) -> Tensor:
        """Generated frames ``F x 3 x S x S`` in the benchmark crop."""
        size = item.driving.shape[-1]
        if size != self.animator.config.size:
            raise ValueError(f"item {item.item.id} is {size} px, the animator renders {self.animator.config.size}: "
                             "build it with AnimateConfig(size=manifest.size)")
        reference, driving = to_uint8(item.reference[None]), to_uint8(item.driving)
        if item.protocol == "self":
            result = self.animator.animate(None, np.concatenate([reference, driving]), item.fps, "self", 0)
            box, generated = result.driving_box, result.frames[1:]
        else:
            result = self.animator.animate(reference[0], driving, item.fps, mode="cross")
            box, generated = result.reference_box, result.frames
        self.last_generator, self.last_components = result.generator, result.components
        return uncrop(generated.float().cpu(), box, size, item.reference)


def make_method(name: str, animator: Animator | None = None) -> Method:
    """A method by name: ``ours`` (needs the ``animator``), ``reference_copy`` or ``driving_copy``."""
    if name == "ours":
        if animator is None:
            raise ValueError("the method 'ours' needs an Animator")
        return Ours(animator)
    if name == "reference_copy":
        return ReferenceCopy()
    if name == "driving_copy":
        return DrivingCopy()
    raise ValueError(f"unknown method {name!r}: use one of {list(METHODS)}, or score videos made elsewhere "
                     "with `exp-bench score --generated DIR`")


__all__ = ["METHODS", "GeneratedVideos", "Ours", "make_method", "uncrop"]
