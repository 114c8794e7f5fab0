"""Pinhole cameras and the projection operator Π, shared by every part of the library.

Convention (the only one in the library; every renderer backend obeys it):

* World space is the body model's: y up, z out of the face (the subject looks along +z),
  x to the subject's left, right-handed, metres.
* Camera space is OpenCV's: x right, y down, z forward (points in front of the camera have
  z > 0), right-handed. A world point maps as ``X_cam = R @ X_world + t``.
* Pixels: ``u`` is the column, ``v`` the row. Pixel ``(row i, col j)`` covers
  ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``.
  Projection is ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Camera:
    """A batch of pinhole cameras.

    Attributes:
        K: ``B x 3 x 3`` intrinsics in pixels.
        R: ``B x 3 x 3`` world-to-camera rotation.
        t: ``B x 3`` world-to-camera translation (metres).
        height: image height in pixels.
        width: image width in pixels.
    """

    K: Tensor
    R: Tensor
    t: Tensor
    height: int
    width: int

    @property
    def batch_size(self) -> int:
        return self.K.shape[0]

    def to(self, *args, **kwargs) -> Camera:
        return Camera(self.K.to(*args, **kwargs), self.R.to(*args, **kwargs), self.t.to(*args, **kwargs),
                      self.height, self.width)

    def expand(self, batch_size: int) -> Camera:
        """Repeat a single camera ``batch_size`` times (a no-op when already that size)."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot expand a batch of {self.batch_size} cameras to {batch_size}")
        return Camera(self.K.expand(batch_size, 3, 3), self.R.expand(batch_size, 3, 3),
                      self.t.expand(batch_size, 3), self.height, self.width)

    def __getitem__(self, index) -> Camera:
        idx = torch.arange(self.batch_size)[index].reshape(-1)
        return Camera(self.K[idx], self.R[idx], self.t[idx], self.height, self.width)

    def to_tensors(self, prefix: str = "camera.") -> dict[str, Tensor]:
        """``{prefix}K``, ``{prefix}R``, ``{prefix}t`` (contiguous, for safetensors); the image size goes in
        metadata (:meth:`size_metadata`)."""
        return {f"{prefix}K": self.K.contiguous(), f"{prefix}R": self.R.contiguous(), f"{prefix}t": self.t.contiguous()}

    def size_metadata(self, prefix: str = "camera.") -> dict[str, str]:
        """``{prefix}height`` / ``{prefix}width`` as safetensors metadata strings."""
        return {f"{prefix}height": str(self.height), f"{prefix}width": str(self.width)}

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor], height: int, width: int, prefix: str = "camera.") -> Camera:
        """Inverse of :meth:`to_tensors`."""
        return Camera(tensors[f"{prefix}K"], tensors[f"{prefix}R"], tensors[f"{prefix}t"], int(height), int(width))

    def world_to_camera(self, points: Tensor) -> Tensor:
        """``B x N x 3`` world points -> ``B x N x 3`` camera-space points."""
        return points @ self.R.transpose(1, 2) + self.t[:, None, :]

    def project(self, points: Tensor) -> Tensor:
        """Π: ``B x N x 3`` world points -> ``B x N x 2`` pixel coordinates ``(u, v)``."""
        return project_points(self.world_to_camera(points), self.K)

    def scaled(self, height: int, width: int) -> Camera:
        """The same camera for an image resized to ``height x width``."""
        s = torch.tensor([width / self.width, height / self.height, 1.0], dtype=self.K.dtype,
                         device=self.K.device)
        return Camera(self.K * s[None, :, None], self.R, self.t, height, width)

    @staticmethod
    def portrait(batch_size: int = 1, height: int = 512, width: int = 512, fov_deg: float = 14.0,
                 distance: float = 1.7, center: tuple[float, float, float] = (0.0, 0.09, 0.0),
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Camera:
        """A camera in front of the face looking along world -z at ``center``.

        The default frames the head and shoulders of the body models in this library
        (neck joint near the origin) like a cropped portrait video.
        """
        f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
        K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=dtype)
        # World (y up, z towards camera) to OpenCV (y down, z away): rotate 180 degrees about x.
        R = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=dtype))
        c = torch.tensor(center, dtype=dtype)
        t = -R @ (c + torch.tensor([0.0, 0.0, distance], dtype=dtype))
        return Camera(K[None].repeat(batch_size, 1, 1).to(device), R[None].repeat(batch_size, 1, 1).to(device),
                      t[None].repeat(batch_size, 1).to(device), height, width)


def project_points(points_cam: Tensor, K: Tensor, eps: float = 1e-8) -> Tensor:
    """Perspective projection of ``B x N x 3`` camera-space points with ``B x 3 x 3`` intrinsics.

    Returns ``B x N x 2`` pixel coordinates ``(u, v)`` in the convention of this module.
    """
    z = points_cam[..., 2:3].clamp_min(eps)
    xy = points_cam[..., :2] / z
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    return torch.stack([fx * xy[..., 0] + cx, fy * xy[..., 1] + cy], dim=-1)
