"""What a fit is fitted to: per-frame landmarks and, when available, normal and depth maps.

Maps come from a folder (``normals/`` and ``depth/`` sub-folders of ``.npy``, ``.png`` or
``.exr`` files named like the frames, as written by the synthetic-subject generator), from a
DAViD-style ONNX estimator (:class:`OnnxMapEstimator`), or are absent (landmarks only).
Conventions: normals in camera space (OpenCV axes, unit length, 0 where empty); ``.png``
normals are encoded ``(n + 1) / 2``; depth in scene units with 0 = empty.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)
MAP_SUFFIXES = (".npy", ".png", ".exr")


@dataclass
class FitTargets:
    """Targets of ``F`` frames of ``H x W`` pixels.

    Attributes:
        landmarks: ``F x 68 x 2`` pixels (NaN where missing); valid: ``F`` bool.
        normal: ``F x 3 x H x W`` camera-space unit normals (0 where empty) or None.
        depth: ``F x 1 x H x W`` scene units (0 = empty) or None.
        mask: ``F x 1 x H x W`` float foreground or None (derived from the maps when absent).
        frames: ``F x 3 x H x W`` RGB in [0, 1] or None (kept for previews and texture).
    """

    landmarks: Tensor
    valid: Tensor
    height: int
    width: int
    normal: Tensor | None = None
    depth: Tensor | None = None
    mask: Tensor | None = None
    frames: Tensor | None = None

    def __post_init__(self) -> None:
        f = self.landmarks.shape[0]
        for name in ("normal", "depth", "mask", "frames"):
            t = getattr(self, name)
            if t is None:
                continue
            if t.shape[0] != f or t.shape[-2:] != (self.height, self.width):
                raise ValueError(f"{name} must be {f} x C x {self.height} x {self.width}, got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} targets contain NaN or inf")
        if self.mask is None and (self.normal is not None or self.depth is not None):
            src = self.depth if self.depth is not None else self.normal.abs().sum(1, keepdim=True)
            self.mask = (src > 0).float()

    @property
    def num_frames(self) -> int:
        return self.landmarks.shape[0]

    @property
    def has_maps(self) -> bool:
        return self.normal is not None or self.depth is not None


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


class OnnxMapEstimator:
    """Normal or depth estimation with a DAViD-style ONNX model (``pip install onnxruntime``).

    The model takes ``1 x 3 x S x S`` float RGB in [0, 1] (``S`` = ``input_size``) and returns
    ``1 x 3 x S x S`` camera-space normals (``kind="normal"``) or ``1 x 1 x S x S`` depth
    (``kind="depth"``), resized back to the frame size. Set ``flip_yz=True`` for models that
    output OpenGL-convention normals (y up, z towards the camera).

    Raises:
        FileNotFoundError: the model file is missing (pass ``--normal-model`` / ``--depth-model``).
        ImportError: onnxruntime is not installed.
    """

    def __init__(self, path: str | os.PathLike, kind: str = "normal", input_size: int = 512,
                 flip_yz: bool = False) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX {kind} model not found: {path} (pass its path with --{kind}-model)")
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError("OnnxMapEstimator needs onnxruntime: pip install 'expportrait[onnx]'") from err
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.kind, self.size, self.flip_yz = kind, input_size, flip_yz

    def __call__(self, frames: Tensor) -> Tensor:
        """``F x 3 x H x W`` RGB in [0, 1] -> ``F x C x H x W`` maps."""
        h, w = frames.shape[-2:]
        name = self.session.get_inputs()[0].name
        outs = []
        for f in frames:
            x = torch.nn.functional.interpolate(f[None], (self.size, self.size), mode="bilinear", antialias=True)
            y = torch.from_numpy(self.session.run(None, {name: x.numpy().astype(np.float32)})[0])
            outs.append(torch.nn.functional.interpolate(y, (h, w), mode="bilinear"))
        out = torch.cat(outs)
        if self.kind == "normal":
            if self.flip_yz:
                out = out * torch.tensor([1.0, -1.0, -1.0])[None, :, None, None]
            out = torch.nn.functional.normalize(out, dim=1)
        return out
