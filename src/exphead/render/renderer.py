"""The renderer R of the paper (Sec. 3.1.2): normal, depth and mask buffers of a posed mesh.

Normals are camera-space unit vectors (OpenCV axes, so a surface facing the camera has normal
``(0, 0, -1)``), interpolated from area-weighted vertex normals and renormalised; depth is the
camera ``z`` in scene units; both are 0 where no face is visible. Encoding normals to an image
(``(n + 1) / 2``) happens only at the image boundary, in :func:`normal_to_image`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from exphead.camera import Camera
from exphead.geometry import vertex_normals
from exphead.render.interpolate import interpolate
from exphead.render.rasterize import Fragments, check_mesh, rasterize

Backend = Literal["builtin", "nvdiffrast", "pytorch3d"]
Rasterizer = Callable[..., Fragments]


@dataclass
class RenderOutput:
    """Buffers of :func:`render_normal_depth`.

    Attributes:
        normal: ``B x 3 x H x W`` camera-space unit normals, 0 where empty.
        depth: ``B x 1 x H x W`` camera ``z`` (scene units), 0 where empty.
        mask: ``B x 1 x H x W`` float coverage in {0, 1}.
        fragments: the rasterizer's :class:`Fragments` (face ids, barycentrics).
    """

    normal: Tensor
    depth: Tensor
    mask: Tensor
    fragments: Fragments


def get_rasterizer(backend: Backend) -> Rasterizer:
    """The ``rasterize(verts_cam, faces, K, height, width, near=, cull_backfaces=) -> Fragments`` of a backend.

    ``"nvdiffrast"`` and ``"pytorch3d"`` are imported on first use and raise an ImportError naming
    the package when it is not installed.
    """
    if backend == "builtin":
        return rasterize
    if backend == "nvdiffrast":
        from exphead.render.nvdiffrast_backend import rasterize_nvdiffrast

        return rasterize_nvdiffrast
    if backend == "pytorch3d":
        from exphead.render.pytorch3d_backend import rasterize_pytorch3d

        return rasterize_pytorch3d
    raise ValueError(f"unknown renderer backend {backend!r}; use 'builtin', 'nvdiffrast' or 'pytorch3d'")


def render_normal_depth(verts_world: Tensor, faces: Tensor, camera: Camera, backend: Backend = "builtin",
                        near: float = 1e-2, cull_backfaces: bool = False) -> RenderOutput:
    """Render camera-space normal, depth and mask buffers.

    Args:
        verts_world: ``B x N x 3`` world-space vertices (``1 x N x 3`` is broadcast to the cameras).
        faces: ``M x 3`` int64 faces, counter-clockwise seen from outside.
        camera: ``B`` (or 1) cameras; the image is ``camera.height x camera.width``.
        backend: which rasterizer computes visibility and barycentrics.
        near: faces with a vertex at camera ``z <= near`` are culled.
        cull_backfaces: also cull faces seen from behind: exact for closed meshes, and the
            visibility pass skips about half the faces; leave off where the inside of an open mesh
            can be seen.

    Returns:
        :class:`RenderOutput`, differentiable w.r.t. ``verts_world`` and the camera at covered pixels.
    """
    faces = check_mesh(verts_world, faces)
    b = max(verts_world.shape[0], camera.batch_size)
    if verts_world.shape[0] not in (1, b):
        raise ValueError(f"{verts_world.shape[0]} meshes for {camera.batch_size} cameras; pass 1 or as many")
    camera = camera.expand(b)
    verts_cam = camera.world_to_camera(verts_world.expand(b, -1, -1))
    frags = get_rasterizer(backend)(verts_cam, faces, camera.K, camera.height, camera.width, near=near,
                                    cull_backfaces=cull_backfaces)
    normal = interpolate(vertex_normals(verts_cam, faces), frags, faces, normalize=True)
    return RenderOutput(normal=normal.permute(0, 3, 1, 2), depth=frags.depth[:, None],
                        mask=frags.mask[:, None].to(normal.dtype), fragments=frags)


def normal_to_image(normal: Tensor, mask: Tensor | None = None) -> Tensor:
    """Encode ``B x 3 x H x W`` unit normals as an image ``(n + 1) / 2`` in [0, 1], 0 where empty.

    ``mask`` (``B x 1 x H x W``) defaults to the pixels whose normal is non-zero.
    """
    if normal.dim() != 4 or normal.shape[1] != 3:
        raise ValueError(f"normal must be B x 3 x H x W, got {tuple(normal.shape)}")
    if mask is None:
        mask = (normal != 0).any(1, keepdim=True)
    return ((normal + 1) * 0.5).clamp(0, 1) * mask.to(normal.dtype)


@torch.no_grad()
def render_normal_images(vertices: Tensor, faces: Tensor, camera: Camera, chunk: int = 8,
                         backend: Backend = "builtin") -> Tensor:
    """``F x N x 3`` world vertices seen by ``camera`` (batch 1) -> ``F x 3 x H x W`` normal images in [0, 1]
    (camera-space ``(n + 1) / 2``, 0 on the background), rendered ``chunk`` frames at a time."""
    return torch.cat([normal_to_image(render_normal_depth(v, faces, camera.expand(v.shape[0]), backend).normal)
                      for v in vertices.split(chunk)])

