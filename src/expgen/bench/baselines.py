"""Reference methods with known behaviour, and the reader of videos generated elsewhere.

* ``reference_copy`` — every output frame is the reference image: no motion at all. Its CSIM is the
  identity ceiling of a method that does nothing; its AED / APD the motion floor to beat; in
  self-reenactment its PSNR / SSIM / LPIPS / L1 measure how much the driving frames differ from the
  reference.
* ``driving_copy`` — the output is the driving frames. Self-reenactment: the ground truth itself
  (PSNR ``inf``, AED = APD = 0: a check of the metrics, not a method). Cross-reenactment: perfect
  motion and the driver's identity, i.e. the CSIM floor of a method that ignores the reference.
* :class:`GeneratedVideos` — videos made by another tool (LivePortrait, X-NeMo, ...) from the inputs
  that ``exp-bench prepare`` writes, one per item named after the item id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from torch import Tensor

from exphead.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_frames, resize_frames, to_tensor

from .protocols import PreparedItem


class Method(Protocol):
    """A method under test: prepared inputs -> generated frames ``F x 3 x S x S`` in [0, 1]."""

    name: str

    def settings(self) -> dict:
        """What determines the output (part of the cache key)."""
        ...

    def __call__(self, item: PreparedItem) -> Tensor: ...


class ReferenceCopy:
    """Every frame is the reference image (no motion)."""

    name = "reference_copy"

    def settings(self) -> dict:
        """What it is (a bound, no model)."""
        return {"bound": "every frame is the reference image (no motion)"}

    def __call__(self, item: PreparedItem) -> Tensor:
        """``F x 3 x S x S``: the reference repeated."""
        return item.reference[None].expand_as(item.driving).clone()


class DrivingCopy:
    """The output is the driving frames (an oracle in self-reenactment, the identity floor in cross)."""

    name = "driving_copy"

    def settings(self) -> dict:
        """What it is (a bound, no model)."""
        return {"bound": "the driving frames (self: the ground truth; cross: the driver's identity)"}

    def __call__(self, item: PreparedItem) -> Tensor:
        """``F x 3 x S x S``: the driving frames."""
        return item.driving.clone()


class GeneratedVideos:
    """Videos of another method in ``folder``: ``<item id>.mp4`` (any video suffix) or ``<item id>/`` frames.

    Frames of another size are resized to the manifest's size; the frame count must equal the item's
    driving frames. ``description`` says how the videos were made (tool, version, settings) for the report.
    """

    def __init__(self, folder: str | os.PathLike, name: str | None = None, description: str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"generated-video folder not found: {self.folder}")
        self.name = name or self.folder.name
        self.description = description

    def settings(self) -> dict:
        """The folder and the description (a video generated again is re-scored with ``--force``)."""
        return {"folder": str(self.folder.resolve()), "description": self.description or "videos made elsewhere"}

    def path_of(self, item_id: str) -> Path:
        """The video file or frame folder of an item."""
        for suffix in sorted(VIDEO_SUFFIXES):
            if (self.folder / f"{item_id}{suffix}").is_file():
                return self.folder / f"{item_id}{suffix}"
        folder = self.folder / item_id
        if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
        raise FileNotFoundError(f"no generated video for item {item_id!r} in {self.folder}: expected "
                                f"{item_id}.mp4 or a folder {item_id}/ of frames")

    def __call__(self, item: PreparedItem) -> Tensor:
        """The item's generated frames ``F x 3 x S x S``."""
        path = self.path_of(item.item.id)
        frames, _ = read_frames(path)
        expected = item.driving.shape[0]
        if len(frames) != expected:
            raise ValueError(f"{path}: {len(frames)} frames, the item has {expected} driving frames; generate "
                             "one frame per driving frame (exp-bench prepare writes the driving video)")
        return resize_frames(to_tensor(frames), item.driving.shape[-1]).clamp(0, 1)


__all__ = ["DrivingCopy", "GeneratedVideos", "Method", "ReferenceCopy"]
