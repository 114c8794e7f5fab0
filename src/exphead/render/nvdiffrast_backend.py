"""nvdiffrast backend: our camera convention converted to nvdiffrast's clip space (CUDA tensors only).

nvdiffrast follows OpenGL: clip-space positions ``[x, y, z, w]`` with ``w`` the camera depth, and
pixel row 0 of its output lies at NDC ``y = -1``. Mapping ``x_ndc = 2u / W - 1`` and
``y_ndc = 2v / H - 1`` (``v`` growing downwards, i.e. the usual OpenGL ``y`` flipped) therefore
yields images in our row order with pixel centres at ``(j + 0.5, i + 0.5)``. Its barycentrics
``(u, v)`` weight vertices 0 and 1 (vertex 2 gets ``1 - u - v``), are perspective-correct and
carry gradients to the clip-space positions. Faces with a vertex at ``z <= near`` are removed
before rasterizing, as the built-in rasterizer culls them (nvdiffrast would clip them), and so are
back faces with ``cull_backfaces``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from exphead.render.interpolate import interpolate
from exphead.render.rasterize import Fragments, check_mesh, kept_faces

_CONTEXTS: dict[torch.device, Any] = {}


def _nvdiffrast() -> Any:
    try:
        import nvdiffrast.torch as dr
    except ImportError as err:
        raise ImportError("backend 'nvdiffrast' needs the nvdiffrast package "
                          "(pip install git+https://github.com/NVlabs/nvdiffrast); "
                          "or use backend='builtin'") from err
    return dr


def clip_space(verts_cam: Tensor, K: Tensor, height: int, width: int, near: float, far: float) -> Tensor:
    """``B x N x 3`` camera-space points -> ``B x N x 4`` nvdiffrast clip-space positions.

    ``x/w = 2u/W - 1``, ``y/w = 2v/H - 1`` with ``(u, v)`` the pixel coordinates of
    :func:`exphead.camera.project_points`, ``w = z`` and OpenGL depth ``z/w`` in [-1, 1] over
    ``[near, far]``.
    """
    x, y, z = verts_cam.unbind(-1)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    x_clip = 2.0 * (fx * x + cx * z) / width - z
    y_clip = 2.0 * (fy * y + cy * z) / height - z
    z_clip = (far + near) / (far - near) * z - 2.0 * far * near / (far - near)
    return torch.stack([x_clip, y_clip, z_clip, z], dim=-1)


def rasterize_nvdiffrast(verts_cam: Tensor, faces: Tensor, K: Tensor, height: int, width: int,
                         near: float = 1e-2, cull_backfaces: bool = False, far: float | None = None
                         ) -> Fragments:
    """:func:`exphead.render.rasterize.rasterize` computed by ``nvdiffrast.torch.rasterize``.

    Same arguments and :class:`Fragments` as the built-in rasterizer; ``far`` (default: twice the
    farthest vertex) bounds nvdiffrast's depth range. Needs CUDA tensors.
    """
    dr = _nvdiffrast()
    faces = check_mesh(verts_cam, faces, K)
    if not verts_cam.is_cuda:
        raise ValueError("backend 'nvdiffrast' needs CUDA tensors: move vertices, faces and K with "
                         ".cuda(), or use backend='builtin'")
    z = verts_cam[..., 2].detach()
    far = float(2.0 * z.max().clamp_min(near) + near) if far is None else far
    pos = clip_space(verts_cam, K, height, width, near, far).float().contiguous()
    device = verts_cam.device
    if device not in _CONTEXTS:
        _CONTEXTS[device] = dr.RasterizeCudaContext(device=device)
    keep = kept_faces(verts_cam, faces, K, near, cull_backfaces)  # B x M
    if bool(keep.all()):
        rast, _ = dr.rasterize(_CONTEXTS[device], pos, faces.int().contiguous(), (height, width), grad_db=False)
        face_id = rast[..., 3].long() - 1  # nvdiffrast: 0 = empty, else triangle index + 1
    else:
        rasts, ids = [], []
        for b in range(pos.shape[0]):
            kept = keep[b].nonzero().squeeze(1)
            r, _ = dr.rasterize(_CONTEXTS[device], pos[b:b + 1].contiguous(), faces[kept].int().contiguous(),
                                (height, width), grad_db=False)
            t = r[..., 3].long() - 1
            rasts.append(r)
            ids.append(torch.where(t >= 0, kept[t.clamp_min(0)], -1))
        rast, face_id = torch.cat(rasts), torch.cat(ids)
    covered = (face_id >= 0)[..., None]
    u, v = rast[..., 0], rast[..., 1]
    bary = (torch.stack([u, v, 1.0 - u - v], dim=-1) * covered).to(verts_cam.dtype)
    frags = Fragments(face_id, bary, bary.new_zeros(face_id.shape))
    frags.depth = interpolate(verts_cam[..., 2:], frags, faces)[..., 0]
    return frags
