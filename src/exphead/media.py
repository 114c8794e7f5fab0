"""Reading images, image folders and videos into frames, and writing images and videos atomically.

Frames are ``F x H x W x 3`` uint8 numpy arrays at the boundary; the models take
``F x 3 x H x W`` float tensors in [0, 1] (:func:`to_tensor`).
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

from .io_utils import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}


class MediaError(ValueError):
    """An input image or video that cannot be used (missing, unreadable, empty, wrong type)."""


def _as_rgb(img: np.ndarray, source: str) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise MediaError(f"{source}: expected an RGB image, got an array of shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        else:
            img = (img.astype(np.float64) / np.iinfo(img.dtype).max * 255 + 0.5).astype(np.uint8)
    return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One RGB image as ``H x W x 3`` uint8."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image not found: {path}")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise MediaError(f"{path}: not an image file (expected one of {sorted(IMAGE_SUFFIXES)})")
    try:
        img = iio.imread(path)
    except Exception as err:
        raise MediaError(f"{path}: unreadable image ({err})") from err
    return _as_rgb(np.asarray(img), str(path))


def read_frames(source: str | os.PathLike, stride: int = 1, max_frames: int | None = None,
                min_frames: int = 1) -> tuple[np.ndarray, float]:
    """Frames of a video file, a folder of images (sorted by name) or a single image.

    Returns:
        ``F x H x W x 3`` uint8 frames and the frame rate (25 for folders and images).

    Raises:
        MediaError: missing, unreadable, empty, or shorter than ``min_frames`` after striding.
    """
    path = Path(source)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    fps = 25.0
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files = files[::stride][:max_frames]
        frames = [read_image(p) for p in files]
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        frames = [read_image(path)]
    elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        frames = []
        try:
            meta = iio.immeta(path)
            fps = float(meta.get("fps", fps) or fps)
            for i, frame in enumerate(iio.imiter(path)):
                if i % stride == 0:
                    frames.append(_as_rgb(np.asarray(frame), str(path)))
                    if max_frames is not None and len(frames) >= max_frames:
                        break
        except Exception as err:
            raise MediaError(f"{path}: unreadable video ({type(err).__name__}: {err})") from err
        fps /= stride
    elif path.exists():
        raise MediaError(f"{path}: not an image, video or folder of images")
    else:
        raise MediaError(f"input not found: {path}")
    if len(frames) < min_frames:
        raise MediaError(f"{path}: {len(frames)} usable frame(s), at least {min_frames} needed")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise MediaError(f"{path}: frames have different sizes {sorted(shapes)}")
    return np.stack(frames), fps


def to_tensor(frames: np.ndarray) -> Tensor:
    """``F x H x W x 3`` uint8 -> ``F x 3 x H x W`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(images: Tensor) -> np.ndarray:
    """``F x 3 x H x W`` float in [0, 1] -> ``F x H x W x 3`` uint8."""
    return (images.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_image(path: str | os.PathLike, image: np.ndarray | Tensor) -> Path:
    """Write ``H x W x 3`` uint8 (or ``3 x H x W`` float in [0, 1]) atomically."""
    if isinstance(image, Tensor):
        image = to_uint8(image[None])[0]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image)
    return Path(path)


def write_video(path: str | os.PathLike, frames: np.ndarray | Tensor, fps: float = 25.0) -> Path:
    """Write ``F x H x W x 3`` uint8 (or ``F x 3 x H x W`` float) frames as an H.264 mp4, atomically."""
    if isinstance(frames, Tensor):
        frames = to_uint8(frames)
    if len(frames) == 0:
        raise MediaError(f"{path}: no frames to write")
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, frames, fps=fps, codec="libx264", macro_block_size=1, plugin="FFMPEG")
    return Path(path)


def contact_sheet(rows: list[list[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Tile ``H x W x 3`` uint8 images (all the same size) into one sheet, ``rows`` of columns."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            sheet[y:y + h, x:x + w] = img
    return sheet
