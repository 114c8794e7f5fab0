"""Reading images, frame folders and videos, and writing images and videos atomically.

Frames are ``F x H x W x 3`` uint8 numpy arrays at the boundary; the models take ``F x 3 x H x W``
float tensors in [0, 1] (:func:`to_tensor`). Every entry point of the library reads through
:func:`read_image` and :class:`FrameSource`, so every command accepts the same inputs:

* images in any Pillow mode: EXIF orientation applied (as phones store portraits), palette, grey,
  CMYK and 16-bit images converted to 8-bit RGB, transparency composited on a neutral grey with a
  warning; Pillow's decompression-bomb guard stays on;
* a video file, a folder of images (sorted by name), a list of image files, one image, or an
  ``exp-synth`` subject folder (its ``frames/``).

Videos are decoded and encoded by ffmpeg (``imageio-ffmpeg``) as streams: :meth:`FrameSource.chunks`
and :class:`VideoWriter` hold one chunk of frames at a time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .io_utils import atomic_path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}
ALPHA_BACKGROUND = 128  # grey that transparent pixels are composited on
ENCODER_PRESET, ENCODER_CRF = "veryfast", 20  # x264: about 3x faster than its default preset, visually lossless


class MediaError(ValueError):
    """An input image or video that cannot be used (missing, unreadable, empty, wrong type)."""


def _pil_to_rgb(image, source: str) -> np.ndarray:
    """A Pillow image in any mode -> ``H x W x 3`` uint8 RGB (see the module docstring)."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" else max(1.0, float(values.max()))
        grey = np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            logger.warning("%s: transparent pixels (%.0f%%) are composited on grey", source,
                           100 * float((alpha < 255).mean()))
        background = Image.new("RGBA", image.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image as ``H x W x 3`` uint8 RGB, oriented by its EXIF tag (module docstring)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: image not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise MediaError(f"{path}: not an image file (expected one of {sorted(IMAGE_SUFFIXES)})")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            rgb = _pil_to_rgb(image, str(path))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise MediaError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise MediaError(f"{path}: image of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small")
    return rgb


def as_rgb_frame(frame: np.ndarray, source: str) -> np.ndarray:
    """An array from a decoder (grey, RGB, RGBA; any integer or float dtype) -> ``H x W x 3`` uint8."""
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise MediaError(f"{source}: expected an RGB image, got an array of shape {frame.shape}")
    frame = frame[..., :3]
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.floating):
        return (np.clip(np.nan_to_num(frame), 0, 1) * 255 + 0.5).astype(np.uint8)
    return (frame.astype(np.float64) / np.iinfo(frame.dtype).max * 255 + 0.5).astype(np.uint8)


class FrameSource:
    """The frames of a video file, a folder of images, a list of image files or one image.

    Args:
        source: the path (an ``exp-synth`` subject folder reads its ``frames/``), or a list of image files.
        stride: use every ``stride``-th frame.
        max_frames: at most this many frames (after the stride).

    Raises:
        MediaError: missing, of an unknown kind, an empty folder, or a bad stride.
    """

    def __init__(self, source: str | os.PathLike | Sequence[str | os.PathLike], stride: int = 1,
                 max_frames: int | None = None) -> None:
        if stride < 1:
            raise MediaError(f"stride must be >= 1, got {stride}")
        if max_frames is not None and max_frames < 1:
            raise MediaError(f"max_frames must be >= 1, got {max_frames}")
        self.stride, self.max_frames = stride, max_frames
        self.files: list[Path] | None = None
        self._count: int | None = None
        if isinstance(source, (list, tuple)):
            self.path, self.files = Path(str(source[0])).parent if source else Path("."), [Path(p) for p in source]
        else:
            path = Path(source)
            if path.is_dir() and (path / "frames").is_dir():
                path = path / "frames"
            self.path = path
            if path.is_dir():
                self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                self.files = [path]
            elif path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
                raise MediaError(f"{path}: not an image, video or folder of images")
            elif not path.exists():
                raise MediaError(f"{path}: input not found")
        if self.files is not None and not self.files:
            raise MediaError(f"{self.path}: no images in the folder (expected one of {sorted(IMAGE_SUFFIXES)})")
        self.is_video = self.files is None
        self.source_fps = self._video_fps() if self.is_video else 25.0

    def _video_fps(self) -> float:
        try:
            fps = iio.immeta(self.path, plugin="FFMPEG").get("fps")
        except Exception as err:  # ffmpeg's errors come as OSError, RuntimeError, StopIteration, ...
            raise MediaError(f"{self.path}: unreadable video ({type(err).__name__}: {err})") from err
        return float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0

    @property
    def fps(self) -> float:
        """Frame rate of the frames this source yields (the source's divided by the stride)."""
        return self.source_fps / self.stride

    def __len__(self) -> int:
        """Frames this source yields (a video is counted by ffmpeg once, without decoding to Python)."""
        if self._count is None:
            if self.is_video:
                import imageio_ffmpeg

                try:
                    total = imageio_ffmpeg.count_frames_and_secs(str(self.path))[0]
                except Exception as err:
                    raise MediaError(f"{self.path}: unreadable video ({type(err).__name__}: {err})") from err
            else:
                total = len(self.files)
            count = -(-total // self.stride)
            self._count = count if self.max_frames is None else min(count, self.max_frames)
        return self._count

    def _raw(self) -> Iterator[np.ndarray]:
        if not self.is_video:
            yield from (read_image(p) for p in self.files)
            return
        try:
            for frame in iio.imiter(self.path, plugin="FFMPEG"):
                yield as_rgb_frame(np.asarray(frame), str(self.path))
        except MediaError:
            raise
        except Exception as err:
            raise MediaError(f"{self.path}: unreadable video ({type(err).__name__}: {err})") from err

    def __iter__(self) -> Iterator[np.ndarray]:
        """``H x W x 3`` uint8 frames, every ``stride``-th, at most ``max_frames``."""
        if not self.is_video:  # images: read only the frames used
            files = self.files[::self.stride][:self.max_frames]
            shape = None
            for p in files:
                frame = read_image(p)
                if shape is not None and frame.shape != shape:
                    raise MediaError(f"{self.path}: frames have different sizes ({p.name} is "
                                     f"{frame.shape[1]}x{frame.shape[0]}, the first {shape[1]}x{shape[0]})")
                shape = frame.shape
                yield frame
            return
        kept = 0
        for i, frame in enumerate(self._raw()):
            if i % self.stride:
                continue
            yield frame
            kept += 1
            if self.max_frames is not None and kept >= self.max_frames:
                return

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """``F' x H x W x 3`` uint8 chunks of at most ``size`` frames, in order."""
        buffer: list[np.ndarray] = []
        for frame in self:
            buffer.append(frame)
            if len(buffer) == size:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)

    def read(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """``F x H x W x 3`` uint8: all frames, or those at ``indices`` (in the order given; a video is
        decoded only up to the last index, keeping the wanted frames alone in memory).

        Raises:
            MediaError: no frames, or an index past the end.
        """
        if indices is None:
            frames = list(self)
        else:
            wanted = list(indices)
            if not wanted:
                raise MediaError(f"{self.path}: no frame indices given")
            keep, last, found = set(wanted), max(wanted), {}
            if not self.is_video:
                files = self.files[::self.stride][:self.max_frames]
                found = {i: read_image(files[i]) for i in keep if 0 <= i < len(files)}
            else:
                for i, frame in enumerate(self):
                    if i in keep:
                        found[i] = frame
                    if i >= last:
                        break
            missing = [i for i in wanted if i not in found]
            if missing:
                raise MediaError(f"{self.path}: frame {missing[0]} asked, the source has {len(self)}")
            frames = [found[i] for i in wanted]
        if not frames:
            raise MediaError(f"{self.path}: no frames")
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise MediaError(f"{self.path}: frames have different sizes {sorted(shapes)}")
        return np.stack(frames)


def read_frames(source: str | os.PathLike, stride: int = 1, max_frames: int | None = None,
                min_frames: int = 1) -> tuple[np.ndarray, float]:
    """All frames of a :class:`FrameSource` and their frame rate (25 for folders and images).

    Raises:
        MediaError: missing, unreadable, empty, or shorter than ``min_frames`` after striding.
    """
    src = FrameSource(source, stride, max_frames)
    frames = list(src)
    if len(frames) < min_frames:
        raise MediaError(f"{src.path}: {len(frames)} usable frame(s), at least {min_frames} needed")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise MediaError(f"{src.path}: frames have different sizes {sorted(shapes)}")
    return np.stack(frames), src.fps


def to_tensor(frames: np.ndarray) -> Tensor:
    """``F x H x W x 3`` uint8 -> ``F x 3 x H x W`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(images: Tensor) -> np.ndarray:
    """``F x 3 x H x W`` float in [0, 1] -> contiguous ``F x H x W x 3`` uint8 (rounded; on the CPU)."""
    out = (images.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return np.ascontiguousarray(out)


def resize_frames(frames: Tensor, size: int | tuple[int, int]) -> Tensor:
    """``F x C x H x W`` float -> ``F x C x h x w``: bilinear, antialiased when shrinking (area-aware)."""
    h, w = (size, size) if isinstance(size, int) else size
    if frames.shape[-2:] == (h, w):
        return frames
    shrink = h < frames.shape[-2] or w < frames.shape[-1]
    return F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)


def resize_uint8(frames: np.ndarray, size: int | tuple[int, int], chunk: int = 16) -> np.ndarray:
    """``F x H x W x 3`` uint8 -> ``F x h x w x 3`` uint8 with :func:`resize_frames`, ``chunk`` frames at a time."""
    h, w = (size, size) if isinstance(size, int) else size
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((len(frames), h, w, 3), np.uint8)
    for s in range(0, len(frames), chunk):
        x = torch.from_numpy(np.ascontiguousarray(frames[s:s + chunk])).permute(0, 3, 1, 2).float()
        out[s:s + chunk] = resize_frames(x, (h, w)).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return out


def write_image(path: str | os.PathLike, image: np.ndarray | Tensor) -> Path:
    """Write ``H x W x 3`` uint8 (or ``3 x H x W`` float in [0, 1]) atomically."""
    if isinstance(image, Tensor):
        image = to_uint8(image[None])[0]
    # zlib level 1: PNGs about 20% larger, written ~5x faster than at the default level
    options = {"compress_level": 1} if Path(path).suffix.lower() == ".png" else {}
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=Path(path).suffix, **options)
    return Path(path)


class VideoWriter:
    """An H.264 mp4 written chunk by chunk, renamed onto ``path`` only when closed without error.

    Use as a context manager; :meth:`write` takes ``F x H x W x 3`` uint8 or ``F x 3 x H x W`` float
    frames (odd sizes lose their last row / column: H.264 in yuv420p needs even sizes).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0) -> None:
        self.path, self.fps = Path(path), float(fps)
        self.frames_written = 0
        self._atomic = None
        self._encoder = None

    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, frames: np.ndarray | Tensor) -> None:
        """Append frames (all of one size)."""
        import imageio_ffmpeg

        if isinstance(frames, Tensor):
            frames = to_uint8(frames)
        if len(frames) == 0:
            return
        h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        if self._encoder is None:
            self._size = (h, w)
            # No B-frames: segments of a resumed job then join frame-exactly with ffmpeg's concat demuxer.
            options = ["-preset", ENCODER_PRESET, "-crf", str(ENCODER_CRF), "-bf", "0", "-f", "mp4"]
            self._encoder = imageio_ffmpeg.write_frames(str(self._tmp), (w, h), fps=self.fps, codec="libx264",
                                                        macro_block_size=1, quality=None, output_params=options)
            self._encoder.send(None)
        elif (h, w) != self._size:
            raise ValueError(f"{self.path}: frames of {w}x{h} after frames of {self._size[1]}x{self._size[0]}")
        for frame in frames:
            self._encoder.send(np.ascontiguousarray(frame[:h, :w]))
        self.frames_written += len(frames)

    def __exit__(self, kind, error, traceback) -> None:
        if self._encoder is not None:
            self._encoder.close()
        if error is None and self.frames_written == 0:
            error = MediaError(f"{self.path}: no frames to write")
            self._atomic.__exit__(type(error), error, None)
            raise error
        self._atomic.__exit__(kind, error, traceback)


def write_video(path: str | os.PathLike, frames: np.ndarray | Tensor, fps: float = 25.0) -> Path:
    """Write ``F x H x W x 3`` uint8 (or ``F x 3 x H x W`` float) frames as an H.264 mp4, atomically."""
    with VideoWriter(path, fps) as writer:
        writer.write(frames)
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
