"""The built-in rasterizer: visibility by a bucketed z-buffer, then differentiable barycentrics.

Pure PyTorch, so it runs on CPU and CUDA tensors alike. It obeys the convention of
:mod:`exphead.camera`: camera space is OpenCV's (x right, y down, z forward) and pixel
``(row i, col j)`` is sampled at its centre ``(u, v) = (j + 0.5, i + 0.5)``.

Two stages, as in nvdiffrast:

1. *Visibility* (not differentiable). Each face's projected triangle is snapped to a fixed-point
   grid of 1/256 pixel and the pixel centres inside it are found by exact integer edge functions
   with the top-left fill rule, so a mesh is watertight: a centre on an edge shared by two faces
   belongs to exactly one of them. Faces are bucketed by the size of their pixel bounding box and
   each bucket tests a fixed ``kh x kw`` window per face, vectorised over the faces; faces larger
   than the largest window are cut into window-sized tiles. The nearest face per pixel wins a
   ``scatter_reduce`` ``"amin"`` over an int64 key holding a decreasing function of the float32 bit
   pattern of ``1/z`` in its high bits and the face id in its low bits. The cost is the faces'
   pixel footprints, never pixels x faces, and faces and candidates are processed in blocks so
   memory stays bounded.
2. *Barycentrics* (differentiable w.r.t. ``verts_cam`` and ``K``). For the covered pixels only,
   the screen-space barycentrics of the pixel centre are recomputed from the projected vertices
   of its face and made perspective-correct with ``1/z``.

Faces with any vertex at ``z <= near`` are culled (not clipped); with ``cull_backfaces`` so are
faces seen from behind (clockwise on screen for meshes counter-clockwise seen from outside), which
skips about half the faces of a closed mesh in the visibility pass. Gradients flow through the
barycentrics of covered pixels; the silhouette itself carries no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from exphead.camera import project_points

_SUBPIXEL = 256.0  # fixed-point steps per pixel of the coverage test (8 sub-pixel bits)
_GUARD = 32768.0  # projected coordinates are clamped to [-_GUARD, size + _GUARD] pixels (exactness)
_WINDOWS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # window sizes of the face buckets, pixels
_MAX_CANDIDATES = 1 << 21  # (face, pixel) pairs tested at once
_FACE_BLOCK = 1 << 16  # (batch element, face) pairs set up at once
_MIN_BUCKET = 2048  # rectangular buckets with fewer faces are merged into square ones
_PAD = _WINDOWS[-1] - 1  # key-buffer margin right of and below the image: windows need no clamping
_EMPTY = torch.iinfo(torch.int64).max
_INF_BITS = 0x7F800000  # bit pattern of float32 +inf


@dataclass
class Fragments:
    """Per-pixel output of a rasterizer.

    Attributes:
        face_id: ``B x H x W`` int64 index of the visible face, ``-1`` where empty.
        bary: ``B x H x W x 3`` perspective-correct barycentrics of the pixel centre w.r.t. the
            face's vertices ``faces[face_id]``; zero where empty.
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
    """
    faces = check_mesh(verts_cam, faces, K)
    uv = project_points(verts_cam, K)
    z = verts_cam[..., 2]
    with torch.no_grad():
        face_id = visible_faces(uv.detach(), z.detach(), faces, height, width, near, cull_backfaces)
    return _fragments(uv, z, faces, face_id)


def visible_faces(uv: Tensor, z: Tensor, faces: Tensor, height: int, width: int, near: float,
                  cull_backfaces: bool = False) -> Tensor:
    """Z-buffer visibility: ``B x N x 2`` pixel coordinates, ``B x N`` depths -> ``B x H x W`` face ids.

    ``-1`` marks empty pixels. Not differentiable. The ``B*M`` (batch element, face) pairs are
    processed in blocks of ``_FACE_BLOCK`` so that the working set stays small.
    """
    b, n, m = uv.shape[0], uv.shape[1], faces.shape[0]
    hp, wp, nw = height + _PAD, width + _PAD, len(_WINDOWS)
    keys = torch.full((b * hp * wp,), _EMPTY, dtype=torch.int64, device=uv.device)
    face_bits = max(1, (m - 1).bit_length())
    # Vertices snapped to the fixed-point grid, as rows: 2 x B*N. All set-up arithmetic is on
    # integers held in float64, exact below 2**53 (the guard band keeps every product there).
    lim = float(max(height, width)) + _GUARD
    fixed = (uv.double().clamp(-_GUARD, lim) * _SUBPIXEL).round()
    fixed = torch.stack([fixed[..., 0].reshape(-1), fixed[..., 1].reshape(-1)])
    depth = z.double().reshape(-1)
    corners = faces.t().contiguous()  # 3 x M
    for f0 in range(0, b * m, _FACE_BLOCK):
        pair = torch.arange(f0, min(b * m, f0 + _FACE_BLOCK), device=uv.device)
        batch = torch.div(pair, m, rounding_mode="floor")
        face = pair - batch * m
        vid = (_columns(corners, face) + batch * n).view(-1)
        xy = fixed.gather(1, vid.expand(2, -1)).view(2, 3, -1)  # x/y, corner, face
        s = _setup(xy, depth.index_select(0, vid).view(3, -1), height, width, near, cull_backfaces)
        batch, face = batch.index_select(0, s["kept"]), face.index_select(0, s["kept"])
        s["ints"] = torch.stack([(batch * hp + s["lo"][1]) * wp + s["lo"][0], face])  # first pixel, face
        bucket = _merge_sparse_buckets(s["bucket"])
        order = torch.argsort(bucket)
        start = 0
        for j, count in enumerate(torch.bincount(bucket, minlength=nw * nw + 2).tolist()[:-1]):
            ids = order[start:start + count]  # the last bucket, skipped, holds degenerate faces
            start += count
            if count == 0:
                continue
            if j == nw * nw:  # faces spanning more than the largest window: tiles of it, in int64
                _scan(_tiles(s, ids, _WINDOWS[-1], wp), (_WINDOWS[-1], _WINDOWS[-1]), wp, face_bits, keys,
                      torch.int64)
            else:  # int32 is exact for faces spanning at most the largest window
                entries = {key: _columns(s[key], ids) for key in ("edge", "plane", "ints")}
                _scan(entries, (_WINDOWS[j // nw], _WINDOWS[j % nw]), wp, face_bits, keys, torch.int32)
    face_id = keys.view(b, hp, wp)[:, :height, :width]
    return torch.where(face_id == _EMPTY, -1, face_id & ((1 << face_bits) - 1))


def _setup(xy: Tensor, z: Tensor, height: int, width: int, near: float, cull_backfaces: bool
           ) -> dict[str, Tensor]:
    """Per-face coverage set-up of ``F`` triangles: ``2 x 3 x F`` fixed-point corners, ``3 x F`` depths.

    Faces without a pixel centre in their box, behind ``near`` or (with ``cull_backfaces``) seen
    from behind are dropped first. Returns, for the ``K`` others:

    * ``kept`` ``K``: their indices among the ``F`` faces,
    * ``lo``, ``hi`` ``2 x K``: first and last candidate column and row,
    * ``edge`` ``9 x K`` float64 holding exact integers: the edge functions ``E_i`` at the pixel
      centre ``lo`` and their steps per pixel in x and y; all three are ``>= 0`` exactly at the
      covered centres (the top-left fill rule is folded in),
    * ``plane`` ``3 x K`` float64: ``1/z`` at the pixel centre ``lo`` and its steps per pixel,
    * ``bucket`` ``K``: ``i * len(_WINDOWS) + j`` for the smallest ``_WINDOWS[i]`` rows by
      ``_WINDOWS[j]`` columns window holding the box, ``len(_WINDOWS)**2`` for faces spanning more
      than the largest window, ``len(_WINDOWS)**2 + 1`` for degenerate faces.
    """
    sub = _SUBPIXEL
    lo_f = torch.minimum(torch.minimum(xy[:, 0], xy[:, 1]), xy[:, 2])  # 2 x F
    hi_f = torch.maximum(torch.maximum(xy[:, 0], xy[:, 1]), xy[:, 2])
    # Pixel centres j * S + S / 2 inside the vertex box, clamped to the image.
    lo = torch.ceil((lo_f - sub / 2) / sub).clamp_min_(0)
    hi = torch.minimum(torch.floor((hi_f - sub / 2) / sub),
                       torch.tensor([[width - 1.0], [height - 1.0]], dtype=lo.dtype, device=lo.device))
    keep = (lo <= hi).all(0) & (z > near).all(0)
    if cull_backfaces:  # front faces have a negative area in y-down pixel coordinates
        (x0, x1, x2), (y0, y1, y2) = xy[0], xy[1]
        keep &= (x1 - x0) * (y2 - y0) < (x2 - x0) * (y1 - y0)
    kept = keep.nonzero().squeeze(1)
    if kept.numel() < keep.numel():
        xy, z = _columns(xy.view(6, -1), kept).view(2, 3, -1), _columns(z, kept)
        lo, hi, extent = _columns(lo, kept), _columns(hi, kept), _columns(hi_f - lo_f, kept)
    else:
        extent = hi_f - lo_f
    f = kept.numel()
    (x0, x1, x2), (y0, y1, y2) = xy[0], xy[1]
    edge = torch.empty(9, f, dtype=xy.dtype, device=lo.device)
    e0, a, b = edge[0:3], edge[3:6], edge[6:9]
    c = torch.empty_like(e0)
    for i, (xa, ya, xb, yb) in enumerate(((x1, y1, x2, y2), (x2, y2, x0, y0), (x0, y0, x1, y1))):
        torch.sub(ya, yb, out=a[i])  # E_i = a x + b y + c, the edge from vertex i+1 to vertex i+2
        torch.sub(xb, xa, out=b[i])
        torch.mul(xa, yb, out=c[i]).sub_(xb * ya)
    area = c.sum(0)  # twice the signed area (shoelace)
    sign = area.sign()
    edge[3:9].mul_(sign)
    c.mul_(sign)
    inv = (z * area.abs()).reciprocal_()  # 1/z = sum_i E_i / (z_i * area)
    qa, qb, qc = (a * inv).sum(0), (b * inv).sum(0), (c * inv).sum(0)
    cx, cy = lo[0] * sub + sub / 2, lo[1] * sub + sub / 2
    plane = torch.stack([qa * cx + qb * cy + qc, qa * sub, qb * sub])
    top_left = (a > 0) | ((a == 0) & (b > 0))  # a centre on a top or left edge is covered
    torch.mul(a, cx, out=e0).add_(b * cy).add_(c).add_(top_left).sub_(1)
    edge[3:9].mul_(sub)
    lo, hi = lo.long(), hi.long()
    box = hi - lo + 1  # candidate columns and rows, <= 0 when no pixel centre lies in the box
    fit = torch.searchsorted(torch.tensor(_WINDOWS, device=lo.device), box.clamp_min(1))
    nw = len(_WINDOWS)
    bucket = fit[1] * nw + fit[0]
    bucket.masked_fill_(((fit >= nw) | (extent > _WINDOWS[-1] * sub)).any(0), nw * nw)
    bucket.masked_fill_(area == 0, nw * nw + 1)
    return {"kept": kept, "edge": edge, "plane": plane, "lo": lo, "hi": hi, "bucket": bucket}


def _columns(table: Tensor, index: Tensor) -> Tensor:
    """``C x F`` -> ``C x P`` columns ``index`` (as rows: ``gather`` beats ``index_select`` on dim 1)."""
    return table.gather(1, index.expand(table.shape[0], -1))


def _merge_sparse_buckets(bucket: Tensor) -> Tensor:
    """Move the faces of rectangular buckets with fewer than ``_MIN_BUCKET`` faces to the square
    bucket of their longer side: fewer, fuller scans."""
    nw = len(_WINDOWS)
    row, col = torch.div(bucket, nw, rounding_mode="floor"), bucket % nw
    counts = torch.bincount(bucket, minlength=nw * nw + 2)
    sparse = (counts.index_select(0, bucket) < _MIN_BUCKET) & (bucket < nw * nw) & (row != col)
    return torch.where(sparse, torch.maximum(row, col) * (nw + 1), bucket)


def _tiles(s: dict[str, Tensor], ids: Tensor, k: int, wp: int) -> dict[str, Tensor]:
    """Scan entries covering the pixel boxes of faces ``ids`` by ``k x k`` tiles (``wp``: key row length)."""
    lo, hi = s["lo"].index_select(1, ids), s["hi"].index_select(1, ids)
    n = torch.div(hi - lo, k, rounding_mode="floor") + 1  # tiles along x and y
    count = n[0] * n[1]
    rep = torch.repeat_interleave(torch.arange(ids.numel(), device=ids.device), count)
    t = torch.arange(rep.numel(), device=ids.device) - torch.repeat_interleave(count.cumsum(0) - count, count)
    nx = n[0].index_select(0, rep)
    dx, dy = k * (t % nx), k * torch.div(t, nx, rounding_mode="floor")  # tile origin - lo, pixels
    face = ids.index_select(0, rep)
    edge, plane, ints = (_columns(s[key], face) for key in ("edge", "plane", "ints"))
    edge[0:3] += edge[3:6] * dx + edge[6:9] * dy
    plane[0] += plane[1] * dx + plane[2] * dy
    ints[0] += dy * wp + dx
    return {"edge": edge, "plane": plane, "ints": ints}


def _scan(entries: dict[str, Tensor], window: tuple[int, int], wp: int, face_bits: int, keys: Tensor,
          dtype: torch.dtype) -> None:
    """Test a ``kh x kw`` pixel ``window`` per entry (``P``-column tables ``edge``, ``plane``, ``ints``
    as from :func:`_setup`, for faces or tiles); scatter the keys of covered pixels into ``keys``.

    Candidates are laid out ``kh x kw x P`` so that every operation runs over the entries.
    """
    kh, kw = window
    dev = keys.device
    step_x = torch.arange(kw, device=dev, dtype=dtype)[:, None]
    step_y = torch.arange(kh, device=dev, dtype=dtype)[:, None]
    cell_row, cell_col = (t.reshape(-1) for t in torch.meshgrid(torch.arange(kh, device=dev),
                                                                torch.arange(kw, device=dev), indexing="ij"))
    cell_offset = cell_row * wp + cell_col
    cell_row, cell_col = cell_row.double(), cell_col.double()
    total = entries["ints"].shape[1]
    per_chunk = max(1, _MAX_CANDIDATES // (kh * kw))
    for c0 in range(0, total, per_chunk):
        chunk = slice(c0, min(total, c0 + per_chunk))
        e0, ax, by = entries["edge"][:, chunk].to(dtype).view(3, 3, -1)
        n = e0.shape[-1]
        acc = None
        for i in range(3):
            e = (e0[i] + step_y * by[i])[:, None, :] + (step_x * ax[i])[None, :, :]
            acc = e if acc is None else acc | e  # sign bit set iff some edge function is negative
        hit = (acc >= 0).view(-1).nonzero().squeeze(1)
        cell = torch.div(hit, n, rounding_mode="floor")
        p = hit - cell * n
        q0, qx, qy = _columns(entries["plane"][:, chunk], p)
        first, face = _columns(entries["ints"][:, chunk], p)
        inv_z = q0 + qx * cell_col.index_select(0, cell) + qy * cell_row.index_select(0, cell)
        depth_bits = inv_z.float().view(torch.int32).long()  # positive floats: bits grow with value
        key = ((_INF_BITS - depth_bits) << face_bits) | face  # nearer -> smaller key
        keys.scatter_reduce_(0, first + cell_offset.index_select(0, cell), key, "amin")


def face_vertex_ids(face_id: Tensor, faces: Tensor, pix: Tensor, num_vertices: int) -> Tensor:
    """``3 x P`` indices into the ``B*N`` flattened vertices of the corners of each covered pixel's face.

    ``face_id``: ``B x H x W``; ``pix``: flat covered-pixel indices (:func:`covered_pixels`).
    """
    b, h, w = face_id.shape
    corners = faces.index_select(0, face_id.reshape(-1).index_select(0, pix)).t()
    if b == 1:
        return corners
    return corners + torch.div(pix, h * w, rounding_mode="floor") * num_vertices


def _fragments(uv: Tensor, z: Tensor, faces: Tensor, face_id: Tensor) -> Fragments:
    """Differentiable barycentrics and depth of the covered pixels' centres.

    ``uv``: ``B x N x 2`` pixel coordinates, ``z``: ``B x N`` depths, ``face_id``: ``B x H x W``.
    """
    b, h, w = face_id.shape
    pix = covered_pixels(face_id)
    vid = face_vertex_ids(face_id, faces, pix, uv.shape[1]).reshape(-1)
    r = pix % (h * w)
    row = torch.div(r, w, rounding_mode="floor")
    # Corners as rows [coordinate, corner, pixel] relative to the pixel centre (j + 0.5, i + 0.5).
    uvz = torch.stack([uv[..., 0].reshape(-1), uv[..., 1].reshape(-1), z.reshape(-1)])  # 3 x B*N rows
    (x0, x1, x2), (y0, y1, y2), (z0, z1, z2) = _columns(uvz, vid).view(3, 3, -1)
    cu, cv = (r - row * w).to(uv.dtype) + 0.5, row.to(uv.dtype) + 0.5
    x0, x1, x2, y0, y1, y2 = x0 - cu, x1 - cu, x2 - cu, y0 - cv, y1 - cv, y2 - cv
    # Twice the signed area of (centre, v_{i+1}, v_{i+2}): screen barycentric i times twice the face area.
    e = torch.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], 1)
    e_over_z = e / torch.stack([z0, z1, z2], 1)
    s = e_over_z.sum(1, keepdim=True)
    bary = uv.new_zeros(b * h * w, 3).index_copy(0, pix, e_over_z / s)
    depth = uv.new_zeros(b * h * w).index_copy(0, pix, e.sum(1) / s[:, 0])
    return Fragments(face_id, bary.view(b, h, w, 3), depth.view(b, h, w))
