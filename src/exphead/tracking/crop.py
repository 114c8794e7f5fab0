"""Cropping a portrait video around the face: one fixed square box for the whole clip, found from
the face detections, so the camera model of the tracker stays a fixed pinhole."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .landmarks import LandmarkDetector, NoFaceError


@dataclass
class CropBox:
    """A square crop ``(left, top, side)`` of frames of ``height x width``; parts outside the frame are
    filled with the frame's mean border colour."""

    left: int
    top: int
    side: int
    height: int
    width: int

    def apply(self, frames: np.ndarray, size: int) -> np.ndarray:
        """``F x H x W x 3`` uint8 -> ``F x size x size x 3`` uint8."""
        f, h, w, _ = frames.shape
        border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], axis=1)
        crop = np.empty((f, self.side, self.side, 3), np.uint8)
        crop[:] = border.mean(1).round().astype(np.uint8)[:, None, None, :]
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + self.side, h), min(self.left + self.side, w)
        if y1 > y0 and x1 > x0:
            crop[:, y0 - self.top:y1 - self.top, x0 - self.left:x1 - self.left] = frames[:, y0:y1, x0:x1]
        if self.side == size:
            return crop
        # bilinear with an antialiasing (area-aware) filter when shrinking, 16 frames at a time
        out = np.empty((f, size, size, 3), np.uint8)
        for s in range(0, f, 16):
            x = torch.from_numpy(crop[s:s + 16]).permute(0, 3, 1, 2).float()
            y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=self.side > size)
            out[s:s + 16] = y.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        return out

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Map ``... x 2`` full-frame pixel coordinates into the ``size``-pixel crop."""
        return (points - np.array([self.left, self.top])) * (size / self.side)


def face_crop_box(frames: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, scale: float = 2.4,
                  shift_up: float = 0.12) -> CropBox:
    """A square box around the face of a whole clip, from ``F x 68 x 2`` landmarks.

    The box is centred on the median landmark centre (moved up by ``shift_up`` box sides to
    include hair) and is ``scale`` times the median landmark extent: head and shoulders framed
    like the portrait videos of the paper (512 x 512 crops).
    """
    if not valid.any():
        raise NoFaceError("no face found to crop around")
    lm = landmarks[valid]
    centre = np.median(lm.mean(1), axis=0)
    extent = np.median((lm.max(1) - lm.min(1)).max(1))
    side = int(round(scale * extent))
    cx, cy = centre[0], centre[1] - shift_up * side
    return CropBox(int(round(cx - side / 2)), int(round(cy - side / 2)), side, frames.shape[1], frames.shape[2])


def detect_and_crop(frames: np.ndarray, detector: LandmarkDetector, size: int, on_missing: str = "skip",
                    sample: int = 8) -> CropBox:
    """Find the crop box from up to ``sample`` evenly spaced frames (cheap for long videos)."""
    from .landmarks import detect_landmarks

    idx = np.unique(np.linspace(0, len(frames) - 1, min(sample, len(frames))).round().astype(int))
    lm, valid = detect_landmarks(frames[idx], detector, on_missing="skip")
    if on_missing == "fail" and not valid.all():
        raise NoFaceError(f"no face found in frame {idx[~valid][0]}")
    return face_crop_box(frames, lm, valid)
