"""pytorch3d backend: our camera convention converted to pytorch3d's NDC for ``rasterize_meshes``.

pytorch3d's NDC has +x to the left and +y up; the shorter image side spans [-1, 1] and pixel
``(i, j)`` is sampled at ``x = (W - 2(j + 0.5)) / s``, ``y = (H - 2(i + 0.5)) / s`` with
``s = min(H, W)``, so ``x_ndc = (W - 2u) / s`` and ``y_ndc = (H - 2v) / s`` put its samples on our
pixel centres. ``z`` stays the camera depth, which is what its perspective correction uses.
Faces with a vertex at ``z <= near`` (and back faces with ``cull_backfaces``) are removed per
batch element (``Meshes`` holds a face list per mesh), as the built-in rasterizer culls them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from exphead.camera import project_points
from exphead.render.interpolate import interpolate
from exphead.render.rasterize import Fragments, check_mesh, kept_faces


def _pytorch3d() -> tuple[Any, Any]:
    try:
        from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
        from pytorch3d.structures import Meshes
    except ImportError as err:
        raise ImportError("backend 'pytorch3d' needs the pytorch3d package "
                          "(see https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md); "
                          "or use backend='builtin'") from err
    return Meshes, rasterize_meshes


def to_ndc(verts_cam: Tensor, K: Tensor, height: int, width: int) -> Tensor:
    """``B x N x 3`` camera-space points -> ``B x N x 3`` pytorch3d screen NDC ``(x, y, z)``."""
    uv = project_points(verts_cam, K)
    s = float(min(height, width))
    return torch.stack([(width - 2.0 * uv[..., 0]) / s, (height - 2.0 * uv[..., 1]) / s, verts_cam[..., 2]],
                       dim=-1)


def rasterize_pytorch3d(verts_cam: Tensor, faces: Tensor, K: Tensor, height: int, width: int,
                        near: float = 1e-2, cull_backfaces: bool = False, bin_size: int | None = None
                        ) -> Fragments:
    """:func:`exphead.render.rasterize.rasterize` computed by pytorch3d's ``rasterize_meshes``.

    Same arguments and :class:`Fragments` as the built-in rasterizer; ``bin_size`` is passed on
    (``None``: pytorch3d's heuristic, ``0``: naive rasterization).
    """
    meshes_cls, rasterize_meshes = _pytorch3d()
    faces = check_mesh(verts_cam, faces, K)
    ndc = to_ndc(verts_cam, K, height, width).float()
    keep = kept_faces(verts_cam, faces, K, near, cull_backfaces)  # B x M
    kept = [k.nonzero().squeeze(1) for k in keep]
    meshes = meshes_cls(verts=list(ndc), faces=[faces[k] for k in kept])
    pix_to_face, _, bary, _ = rasterize_meshes(meshes, image_size=(height, width), blur_radius=0.0,
                                               faces_per_pixel=1, bin_size=bin_size, perspective_correct=True)
    packed, table = pix_to_face[..., 0], torch.cat([*kept, faces.new_zeros(1)])  # padded: never empty
    face_id = torch.where(packed >= 0, table[packed.clamp_min(0)], -1)
    bary = (bary[..., 0, :] * (face_id >= 0)[..., None]).to(verts_cam.dtype)
    frags = Fragments(face_id, bary, bary.new_zeros(face_id.shape))
    frags.depth = interpolate(verts_cam[..., 2:], frags, faces)[..., 0]
    return frags
