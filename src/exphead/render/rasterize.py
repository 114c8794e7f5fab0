"""The built-in rasterizer: visibility by an exact z-buffer, then differentiable barycentrics.

Pure PyTorch, so it runs on CPU and CUDA tensors alike. It obeys the convention of
:mod:`exphead.camera`: camera space is OpenCV's (x right, y down, z forward) and pixel
``(row i, col j)`` is sampled at its centre ``(u, v) = (j + 0.5, i + 0.5)``.

Two stages, as in nvdiffrast:

1. *Visibility* (not differentiable; :mod:`exphead.render.zbuffer`). Each face's projected
   triangle is snapped to a fixed-point grid of 1/256 pixel and the pixel centres inside it are
   found by exact integer edge functions with the top-left fill rule, so a mesh is watertight: a
   centre on an edge shared by two faces belongs to exactly one of them. The nearest face per
   pixel wins (the float32 ``1/z`` at the pixel centre, ties to the lower face id). Faces are
   bucketed by the size of their pixel box and each bucket tests a fixed window per face,
   vectorised over faces and batch elements, so the cost is the faces' pixel footprints, never
   pixels x faces.
2. *Barycentrics* (differentiable w.r.t. ``verts_cam`` and ``K``, hand-written backward). The
   screen-space barycentrics of the pixel centres are recomputed from the projected vertices of
   their faces and made perspective-correct with ``1/z``: at the covered pixels on CPU, at every
   pixel elsewhere (empty ones on a dummy triangle, masked), which needs no covered-pixel list
   and so no host synchronisation (:func:`fragment_pixels`).

Faces with any vertex at ``z <= near`` are culled (not clipped); with ``cull_backfaces`` so are
faces seen from behind (clockwise on screen for meshes counter-clockwise seen from outside), which
skips about half the faces of a closed mesh in the visibility pass. Gradients flow through the
barycentrics of covered pixels; the silhouette itself carries no gradient. A call synchronises the
host with the device once, inside the visibility pass, to size its scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from exphead.camera import project_points
from exphead.geometry import face_columns
from exphead.render.zbuffer import gather_columns, visible_faces

_COMPACT_DEVICES = ("cpu",)  # device types whose fragment stages compute the covered pixels only


@dataclass
class Fragments:
    """Per-pixel output of a rasterizer.

    Attributes:
        face_id: ``B x H x W`` int64 index of the visible face, ``-1`` where empty.
        bary: ``B x H x W x 3`` perspective-correct barycentrics of the pixel centre w.r.t. the
            face's vertices ``faces[face_id]``; zero where empty (the built-in rasterizer returns
            a view of ``3 x B x H x W`` planes; read it with :func:`pixel_columns`).
        depth: ``B x H x W`` camera-space ``z`` of the visible surface (scene units), 0 where empty.
    """

    face_id: Tensor
    bary: Tensor
    depth: Tensor

    @property
    def mask(self) -> Tensor:
        """``B x H x W`` bool coverage."""
        return self.face_id >= 0

    def covered(self) -> Tensor:
        """Flat indices ``P`` into ``B*H*W`` of the covered pixels, in raster order."""
        return covered_pixels(self.face_id)


def covered_pixels(face_id: Tensor) -> Tensor:
    """``B x H x W`` face ids -> flat indices ``P`` into ``B*H*W`` of the covered pixels."""
    return (face_id.reshape(-1) >= 0).nonzero().squeeze(1)


def kept_faces(verts_cam: Tensor, faces: Tensor, K: Tensor, near: float, cull_backfaces: bool) -> Tensor:
    """``B x M`` bool: faces in front of ``near`` (and facing the camera if ``cull_backfaces``).

    The culling rule of :func:`rasterize`, for backends that must filter faces themselves.
    """
    with torch.no_grad():
        keep = (verts_cam[..., 2][:, faces] > near).all(-1)
        if cull_backfaces:
            p = project_points(verts_cam, K)[:, faces]  # B x M x 3 x 2
            d1, d2 = p[:, :, 1] - p[:, :, 0], p[:, :, 2] - p[:, :, 0]
            keep &= d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0] < 0
    return keep


def check_mesh(verts: Tensor, faces: Tensor, K: Tensor | None = None) -> Tensor:
    """Validate ``B x N x 3`` vertices, ``M x 3`` faces and ``B x 3 x 3`` (or ``1 x 3 x 3``) ``K``.

    Returns the faces as int64 on the vertices' device.
    """
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"vertices must be B x N x 3, got {tuple(verts.shape)}; add a batch dim with [None]")
    if faces.dim() != 2 or faces.shape[-1] != 3 or faces.is_floating_point():
        raise ValueError(f"faces must be an M x 3 integer tensor, got {tuple(faces.shape)} {faces.dtype}")
    if K is not None and (K.dim() != 3 or K.shape[1:] != (3, 3) or K.shape[0] not in (1, verts.shape[0])):
        raise ValueError(f"K must be B x 3 x 3 or 1 x 3 x 3 for B={verts.shape[0]}, got {tuple(K.shape)}")
    return faces.to(device=verts.device, dtype=torch.int64)


def rasterize(verts_cam: Tensor, faces: Tensor, K: Tensor, height: int, width: int,
              near: float = 1e-2, cull_backfaces: bool = False) -> Fragments:
    """Rasterize a batch of meshes seen by pinhole cameras.

    Args:
        verts_cam: ``B x N x 3`` camera-space vertices (OpenCV axes, scene units).
        faces: ``M x 3`` int64 vertex indices, shared by the batch.
        K: ``B x 3 x 3`` (or ``1 x 3 x 3``) intrinsics in pixels.
        height: image height ``H`` in pixels.
        width: image width ``W`` in pixels.
        near: faces with any vertex at ``z <= near`` are culled.
        cull_backfaces: also cull faces seen from behind (exact for closed meshes; faces must be
            counter-clockwise seen from outside); the visibility pass then skips about half the faces.

    Returns:
        :class:`Fragments`; ``bary`` and ``depth`` are differentiable w.r.t. ``verts_cam`` and ``K``.
        On CUDA the call waits for the device once (the visibility pass sizes its scans).
    """
    faces = check_mesh(verts_cam, faces, K)
    uv = project_points(verts_cam, K)
    z = verts_cam[..., 2]
    with torch.no_grad():
        face_id = visible_faces(uv.detach(), z.detach(), faces, height, width, near, cull_backfaces)
    return _fragments(uv, z, faces, face_id)


def fragment_pixels(face_id: Tensor) -> Tensor:
    """Flat indices ``P`` into ``B*H*W`` of the pixels that fragment stages compute, in raster order.

    On CPU the covered pixels (a data-dependent size costs nothing there); on other devices every
    pixel, which needs no host synchronisation (empty ones get zero weights or a dummy triangle).
    """
    if face_id.device.type in _COMPACT_DEVICES:
        return covered_pixels(face_id)
    return torch.arange(face_id.numel(), device=face_id.device)


def pixel_vertex_ids(face_id: Tensor, faces: Tensor, pix: Tensor, num_vertices: int) -> Tensor:
    """``3 x P`` indices into the ``B*N`` flattened vertices of the corners of pixels ``pix``' faces.

    ``face_id``: ``B x H x W``, ``-1`` where empty (such pixels get the corners of face 0 of their
    batch element, so every index is valid); ``faces``: ``M x 3`` int64, ``M >= 1``; ``pix``: flat
    pixel indices (:func:`fragment_pixels`); ``num_vertices``: ``N``, or 0 for vertex ids into one mesh.
    """
    b, h, w = face_id.shape
    fid = face_id.reshape(-1).index_select(0, pix).clamp_min_(0)
    corners = gather_columns(face_columns(faces), fid)
    if b == 1 or num_vertices == 0:
        return corners
    return corners + torch.div(pix, h * w, rounding_mode="floor") * num_vertices


class _Barycentrics(torch.autograd.Function):
    """Perspective-correct barycentrics and depth at pixel centres, with a hand-written backward.

    ``forward(table, vid, centre, valid)``: ``table`` ``3 x V`` rows (u, v, z) of the vertices,
    ``vid`` ``3 x P`` corner ids into it, ``centre`` ``2 x P`` pixel centres (u, v), ``valid`` ``P``
    bool -> ``bary`` ``3 x P`` and ``depth`` ``P``, zero where not ``valid``. Differentiable w.r.t.
    ``table`` (once).
    """

    @staticmethod
    def forward(ctx, table: Tensor, vid: Tensor, centre: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        corner = table.gather(1, vid.reshape(1, -1).expand(3, -1)).view(3, 3, -1)  # coordinate, corner, pixel
        x, y, z = corner[0] - centre[0], corner[1] - centre[1], corner[2]  # relative to the centre
        # e_i: twice the signed area of (centre, v_{i+1}, v_{i+2}), screen barycentric i times twice the face area.
        e = torch.empty_like(x)
        for i in range(3):
            j, k = (i + 1) % 3, (i + 2) % 3
            torch.mul(x[j], y[k], out=e[i]).sub_(x[k] * y[j])
        w = e / z
        inv_s = torch.where(valid, (w[0] + w[1] + w[2]).reciprocal_(), 0.0)
        bary, depth = w * inv_s, (e[0] + e[1] + e[2]).mul_(inv_s)
        ctx.save_for_backward(vid, x, y, z, w, inv_s, bary, depth)
        ctx.table_shape = table.shape
        return bary, depth

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_bary: Tensor, grad_depth: Tensor) -> tuple[Tensor | None, ...]:
        vid, x, y, z, w, inv_s, bary, depth = ctx.saved_tensors
        dot = grad_bary[0] * bary[0] + grad_bary[1] * bary[1] + grad_bary[2] * bary[2] + grad_depth * depth
        g_w = (grad_bary - dot).mul_(inv_s)
        grad = torch.empty(3, 3, x.shape[1], dtype=x.dtype, device=x.device)  # coordinate, corner, pixel
        torch.mul(g_w, w, out=grad[2]).div_(z).neg_()
        g_e = (g_w / z).add_(grad_depth * inv_s)
        for i in range(3):  # e_k = x_{k+1} y_{k+2} - x_{k+2} y_{k+1}
            j, k = (i + 1) % 3, (i + 2) % 3
            torch.mul(g_e[k], y[j], out=grad[0, i]).sub_(g_e[j] * y[k])
            torch.mul(g_e[j], x[k], out=grad[1, i]).sub_(g_e[k] * x[j])
        table = grad.new_zeros(ctx.table_shape).scatter_add_(1, vid.reshape(1, -1).expand(3, -1), grad.view(3, -1))
        return table, None, None, None


def _fragments(uv: Tensor, z: Tensor, faces: Tensor, face_id: Tensor) -> Fragments:
    """Differentiable barycentrics and depth of the pixel centres (zero where empty).

    ``uv``: ``B x N x 2`` pixel coordinates, ``z``: ``B x N`` depths, ``face_id``: ``B x H x W``.
    Computes the :func:`fragment_pixels`; empty ones among them use a dummy triangle appended to
    the vertices (finite and non-degenerate, so their masked-out values stay finite). ``bary`` is
    a ``B x H x W x 3`` view of ``3 x B x H x W`` planes (read with :func:`pixel_columns`).
    """
    b, h, w = face_id.shape
    n = uv.shape[1]
    pix = fragment_pixels(face_id)
    valid = face_id.reshape(-1).index_select(0, pix) >= 0
    # Vertex rows (u, v, z): 3 x B*N, then the dummy triangle.
    dummy = torch.eye(3, dtype=uv.dtype, device=uv.device).roll(-1, 0)  # u = (0, 1, 0), v = (0, 0, 1)
    dummy[2] = 1.0  # z = 1
    table = torch.cat([torch.stack([uv[..., 0].reshape(-1), uv[..., 1].reshape(-1), z.reshape(-1)]), dummy], 1)
    vid = torch.arange(b * n, b * n + 3, device=uv.device)[:, None].expand(3, pix.numel())  # the dummy
    if faces.shape[0]:
        vid = torch.where(valid, pixel_vertex_ids(face_id, faces, pix, n), vid)
    r = pix % (h * w)
    row = torch.div(r, w, rounding_mode="floor")
    centre = torch.stack([r - row * w, row]).to(uv.dtype) + 0.5  # pixel centre (j + 0.5, i + 0.5)
    bary, depth = _Barycentrics.apply(table, vid, centre, valid)
    bary = uv.new_zeros(3, b * h * w).index_copy(1, pix, bary)
    depth = uv.new_zeros(b * h * w).index_copy(0, pix, depth)
    return Fragments(face_id, bary.view(3, b, h, w).permute(1, 2, 3, 0), depth.view(b, h, w))


def pixel_columns(image: Tensor, pix: Tensor) -> Tensor:
    """``B x H x W x C`` image, ``P`` flat pixel indices -> ``C x P`` values, reading whichever layout
    ``image`` has: rows of a contiguous image, else planes of a permuted ``C x B x H x W`` one (as the
    built-in rasterizer's barycentrics and channel-first gradients are)."""
    c = image.shape[3]
    if image.is_contiguous():
        return image.view(-1, c).index_select(0, pix).t()
    return image.permute(3, 0, 1, 2).reshape(c, -1).index_select(1, pix)
