"""The precomputed-clip format of the video generator, and a dataset over a list of clip files.

One ``.safetensors`` file per clip, holding four uint8 tensors

==================== ================ ====================================================
``frames``           ``F x 3 x H x W`` the video (RGB)
``driving_normals``  ``F x 3 x H x W`` N^D_{1:F}, camera-space unit normals as ``round(255 (n + 1) / 2)``;
                                      background pixels are ``(0, 0, 0)``
``reference_image``  ``3 x H x W``     I_R (RGB)
``reference_normal`` ``3 x H x W``     N^R, encoded like ``driving_normals``
==================== ================ ====================================================

and, in the safetensors header metadata under the key ``"expportrait_clip"``, a JSON object with at
least ``subject_id`` (str), ``fps`` (float) and ``format_version`` (1). Camera space is the library's
(``exphead.camera``: x right, y down, z forward; visible surfaces have ``n_z < 0``).
Items of ``ClipDataset`` are float tensors in ``[0, 1]`` under the same names plus ``subject_id``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

METADATA_KEY = "expportrait_clip"
FORMAT_VERSION = 1
VIDEO_KEYS = ("frames", "driving_normals")
IMAGE_KEYS = ("reference_image", "reference_normal")


@dataclass
class Clip:
    """One clip as stored: uint8 tensors (shapes in the module docstring) and its metadata."""

    frames: Tensor
    driving_normals: Tensor
    reference_image: Tensor
    reference_normal: Tensor
    subject_id: str
    fps: float
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` on wrong dtypes or shapes."""
        tensors = {k: getattr(self, k) for k in VIDEO_KEYS + IMAGE_KEYS}
        for name, t in tensors.items():
            if t.dtype != torch.uint8:
                raise ValueError(f"clip tensor {name} must be uint8, got {t.dtype}")
        f, c, h, w = self.frames.shape
        if c != 3 or self.driving_normals.shape != self.frames.shape:
            raise ValueError(f"frames {tuple(self.frames.shape)} and driving_normals "
                             f"{tuple(self.driving_normals.shape)} must both be F x 3 x H x W")
        for name in IMAGE_KEYS:
            if tensors[name].shape != (3, h, w):
                raise ValueError(f"{name} must be 3 x {h} x {w}, got {tuple(tensors[name].shape)}")


def write_clip(path: str | os.PathLike, clip: Clip) -> Path:
    """Save ``clip`` to ``path`` (written to a temporary file in the same folder, then renamed)."""
    clip.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**clip.extra, "subject_id": clip.subject_id, "fps": float(clip.fps), "format_version": FORMAT_VERSION}
    tensors = {k: getattr(clip, k).contiguous() for k in VIDEO_KEYS + IMAGE_KEYS}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a clip file (header only, tensors are not read)."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    if METADATA_KEY not in header:
        raise ValueError(f"{path} is not an ExpPortrait clip: no '{METADATA_KEY}' metadata in its header")
    return json.loads(header[METADATA_KEY])


def read_clip(path: str | os.PathLike) -> Clip:
    """Load a clip file written by ``write_clip`` (or any producer of the same format)."""
    meta = read_metadata(path)
    tensors = load_file(str(path))
    missing = [k for k in VIDEO_KEYS + IMAGE_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"clip {path} lacks tensors {missing}")
    subject_id, fps = str(meta.pop("subject_id")), float(meta.pop("fps"))
    meta.pop("format_version", None)
    clip = Clip(**{k: tensors[k] for k in VIDEO_KEYS + IMAGE_KEYS}, subject_id=subject_id, fps=fps, extra=meta)
    clip.validate()
    return clip


class ClipDataset(Dataset):
    """Clips as float tensors in ``[0, 1]``; optionally a window of ``num_frames = 1 + 4k`` frames.

    Args:
        files: clip files.
        num_frames: frames per item; ``None`` keeps whole clips (all must then have ``1 + 4k`` frames).
        random_window: draw the window start at random (training); otherwise start at frame 0.
        resolution: if set, every clip must be ``resolution x resolution`` (clips are not resized).
    """

    def __init__(self, files: Sequence[str | os.PathLike], num_frames: int | None = None,
                 random_window: bool = False, resolution: int | None = None) -> None:
        if num_frames is not None and (num_frames < 1 or (num_frames - 1) % 4):
            raise ValueError(f"num_frames must be 1 + 4k for the causal VAE, got {num_frames}")
        self.files = [Path(f) for f in files]
        self.num_frames = num_frames
        self.random_window = random_window
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = read_clip(self.files[index])
        total, _, h, w = clip.frames.shape
        if self.resolution is not None and (h, w) != (self.resolution, self.resolution):
            raise ValueError(f"clip {self.files[index]} is {h}x{w}, expected {self.resolution}x{self.resolution}; "
                             "rebuild the clips at that size or change data.init_args.resolution")
        n = self.num_frames or total
        if n > total:
            raise ValueError(f"clip {self.files[index]} has {total} frames, fewer than num_frames={n}")
        if (n - 1) % 4:
            raise ValueError(f"clip {self.files[index]} has {n} frames; set num_frames to 1 + 4k")
        start = int(torch.randint(0, total - n + 1, ())) if self.random_window else 0
        item: dict[str, Any] = {k: getattr(clip, k)[start:start + n].float() / 255.0 for k in VIDEO_KEYS}
        item.update({k: getattr(clip, k).float() / 255.0 for k in IMAGE_KEYS})
        item["subject_id"] = clip.subject_id
        return item
