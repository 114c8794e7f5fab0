"""Normal and depth maps from a folder: ``normals/`` and ``depth/`` sub-folders of ``.npy``, ``.png`` or
``.exr`` files named like the frames, as written by the synthetic-subject generator. ``.png`` normals are
encoded ``(n + 1) / 2``; the foreground of maps from a folder is where they are non-zero."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

MAP_SUFFIXES = (".npy", ".png", ".exr")


def _read_map(path: Path, kind: str) -> np.ndarray:
    if path.suffix == ".npy":
        arr = np.load(path).astype(np.float32)
    else:
        arr = np.asarray(iio.imread(path)).astype(np.float32)
        if path.suffix == ".png":
            arr = arr / (65535.0 if arr.max() > 255 else 255.0)
            if kind == "normal":
                valid = arr[..., :3].sum(-1) > 0
                arr = np.where(valid[..., None], arr[..., :3] * 2 - 1, 0.0)
        if arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)
    if kind == "depth":
        arr = arr.reshape(-1, *arr.shape[-2:])[:1]
    elif arr.shape[0] != 3:
        raise ValueError(f"{path}: a normal map must have 3 channels, got shape {arr.shape}")
    return arr


def read_map_folder(folder: str | os.PathLike, kind: str, count: int, stride: int = 1) -> Tensor:
    """Read ``count`` maps (every ``stride``-th, sorted by name) from ``folder`` -> ``F x C x H x W``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in MAP_SUFFIXES)[::stride][:count] \
        if folder.is_dir() else []
    if len(files) != count:
        raise FileNotFoundError(f"{folder}: found {len(files)} {kind} maps for {count} frames "
                                f"(expected files ending in {MAP_SUFFIXES})")
    return torch.from_numpy(np.stack([_read_map(p, kind) for p in files]))


def maps_from_folder(root: str | os.PathLike, count: int, stride: int = 1) -> tuple[Tensor | None, Tensor | None]:
    """``root/normals`` and ``root/depth`` maps (each optional) for ``count`` frames."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"maps folder not found: {root}")
    normal = read_map_folder(root / "normals", "normal", count, stride) if (root / "normals").is_dir() else None
    depth = read_map_folder(root / "depth", "depth", count, stride) if (root / "depth").is_dir() else None
    if normal is None and depth is None:
        raise FileNotFoundError(f"{root} has neither a normals/ nor a depth/ folder")
    return normal, depth
