"""Cropping a portrait video around the face: one fixed square box for the whole clip, found from the
face's landmarks, so the camera model of the tracker stays a fixed pinhole."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from exphead.media import resize_frames, resize_uint8

from .landmarks import NoFaceError

SCALE = 2.4  # crop side / landmark extent: head and shoulders, like the paper's 512 x 512 portrait crops
SHIFT_UP = 0.12  # the crop's centre sits this many crop sides above the landmarks' centre (room for the hair)


@dataclass
class CropBox:
    """A square crop ``(left, top, side)`` in pixels of frames of ``height x width``; parts outside the
    frame are filled with the frame's mean border colour."""

    left: int
    top: int
    side: int
    height: int
    width: int

    def apply(self, frames: np.ndarray, size: int) -> np.ndarray:
        """``F x H x W x 3`` uint8 -> ``F x size x size x 3`` uint8 (antialiased when shrinking)."""
        f, h, w, _ = frames.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"the crop box was found on {self.width}x{self.height} frames, these are {w}x{h}")
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        crop = np.empty((f, self.side, self.side, 3), np.uint8)
        crop[:] = border.mean(1).round().astype(np.uint8)[:, None, None, :]
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + self.side, h), min(self.left + self.side, w)
        if y1 > y0 and x1 > x0:
            crop[:, y0 - self.top:y1 - self.top, x0 - self.left:x1 - self.left] = frames[:, y0:y1, x0:x1]
        return resize_uint8(crop, size)

    def inside(self, size: int) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)``: the part of a crop of ``size x size`` pixels that shows the frame (the rest is
        padding), in that crop's pixels."""
        scale = size / self.side
        x0, y0 = max(-self.left, 0) * scale, max(-self.top, 0) * scale
        x1 = (min(self.left + self.side, self.width) - self.left) * scale
        y1 = (min(self.top + self.side, self.height) - self.top) * scale
        return (x0, y0, max(x0, x1), max(y0, y1))

    def paste(self, crops: Tensor, image: np.ndarray, feather: float = 0.06) -> np.ndarray:
        """The inverse of :meth:`apply`: ``F x 3 x S x S`` crops in [0, 1] put back into copies of the
        ``H x W x 3`` uint8 ``image`` they were cut from -> ``F x H x W x 3`` uint8.

        The crop is blended in over ``feather`` x its side at each edge that lies inside the image (no visible box
        edge), after shifting its colours by the mean difference to the image in that band (no colour step
        where a generator drifted; about zero for crops made by warping the image itself).
        """
        h, w = image.shape[:2]
        if (h, w) != (self.height, self.width):
            raise ValueError(f"the crop box was found on {self.width}x{self.height} frames, the image is {w}x{h}")
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + self.side, h), min(self.left + self.side, w)
        out = np.repeat(image[None], crops.shape[0], 0)
        if y1 <= y0 or x1 <= x0:
            return out
        region = resize_frames(crops.float(), self.side)
        region = region[:, :, y0 - self.top:y1 - self.top, x0 - self.left:x1 - self.left]
        ramp = max(1.0, feather * self.side)

        def edge_weight(first: int, size: int, extent: int) -> Tensor:
            at = torch.arange(max(first, 0), min(first + size, extent)) + 0.5
            rise = torch.ones_like(at) if first < 0 else ((at - first) / ramp).clamp(0, 1)
            fall = torch.ones_like(at) if first + size > extent else ((first + size - at) / ramp).clamp(0, 1)
            return rise * fall

        wy, wx = edge_weight(self.top, self.side, h), edge_weight(self.left, self.side, w)
        t = wy[:, None] * wx[None]
        alpha = t * t * (3 - 2 * t)  # smoothstep: 1 inside, 0 at the box edges inside the image
        below = torch.from_numpy(image[y0:y1, x0:x1]).permute(2, 0, 1).float()[None] / 255
        band = (alpha > 0) & (alpha < 1)
        if band.any():  # colour match in the feather band
            shift = (below - region)[..., band].mean(-1).clamp(-0.1, 0.1)
            region = region + shift[..., None, None]
        blended = alpha * region + (1 - alpha) * below
        out[:, y0:y1, x0:x1] = (blended.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return out

    def scaled(self, factor: float) -> CropBox:
        """The box in the frames resized by ``factor``."""
        return CropBox(round(self.left * factor), round(self.top * factor), max(1, round(self.side * factor)),
                       round(self.height * factor), round(self.width * factor))

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map ``... x 2`` full-frame pixel coordinates into the ``size``-pixel crop."""
        return (points - np.array([self.left, self.top])) * (size / self.side)

    def to_list(self) -> list[int]:
        """``[left, top, side, height, width]`` (JSON-ready)."""
        return [self.left, self.top, self.side, self.height, self.width]

    @classmethod
    def from_list(cls, values: list[int]) -> CropBox:
        """Inverse of :meth:`to_list`."""
        return cls(*(int(v) for v in values))


def face_crop_box(landmarks: np.ndarray, valid: np.ndarray, height: int, width: int, scale: float = SCALE,
                  shift_up: float = SHIFT_UP) -> CropBox:
    """A square box around the face of a whole clip, from ``F x 68 x 2`` landmarks in ``height x width`` frames.

    The box is centred on the median landmark centre (moved up by ``shift_up`` box sides to
    include hair) and is ``scale`` times the median landmark extent: head and shoulders framed
    like the portrait videos of the paper (512 x 512 crops).
    """
    if not valid.any():
        raise NoFaceError("no face found to crop around")
    lm = landmarks[valid]
    centre = np.median(lm.mean(1), axis=0)
    extent = np.median((lm.max(1) - lm.min(1)).max(1))
    side = max(int(round(scale * extent)), 2)
    cx, cy = centre[0], centre[1] - shift_up * side
    return CropBox(int(round(cx - side / 2)), int(round(cy - side / 2)), side, height, width)


__all__ = ["CropBox", "face_crop_box"]
