"""Visibility pass of the built-in rasterizer: an exact, bucketed z-buffer in plain PyTorch.

Each face's projected triangle is snapped to a fixed-point grid of 1/256 pixel and the pixel
centres inside it are found by exact integer edge functions with the top-left fill rule, so a
mesh is watertight: a centre on an edge shared by two faces belongs to exactly one of them.
Faces with a vertex at ``z <= near``, degenerate faces, faces without a pixel centre in their box
and (optionally) faces seen from behind are dropped. The nearest face per pixel wins a
``scatter_reduce`` ``"amax"`` over an int64 key holding the float32 bit pattern of ``1/z`` in its
high bits and ``2**face_bits - 1 - face`` in its low bits (so ties go to the lower face id).

The work is laid out so that the host never waits on the device more than once per call:

1. *Classify* (all ``B*M`` (batch element, face) pairs, in blocks of ``_FACE_BLOCK``): each face
   gets the bucket of the smallest ``kh x kw`` window of ``_WINDOWS`` holding its pixel box, the
   "large" bucket when it spans more than the largest window (it is then cut into window-sized
   tiles), or the "skip" bucket when it is dropped; the faces of a block are sorted by bucket.
2. *One synchronisation*: the bucket counts and tile totals of all blocks come to the host in a
   single ``tolist()``; every later shape follows from them.
3. *Scan* (per block, per bucket): the kept faces of a block, contiguous in bucket order, are set
   up once (edge functions and the ``1/z`` plane at their first candidate centre) and each bucket
   tests its fixed window per face, vectorised over faces and over the batch. Misses are not
   compacted out (that would need a sync): they scatter a key below every hit.

The cost is the faces' window footprints, never pixels x faces, and memory stays bounded by the
block and candidate-chunk sizes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from exphead.geometry import face_columns

_SUBPIXEL_BITS = 8  # fixed-point sub-pixel bits of the coverage test
_SUBPIXEL = float(1 << _SUBPIXEL_BITS)  # fixed-point steps per pixel
_GUARD = 32768.0  # projected coordinates are clamped to [-_GUARD, size + _GUARD] pixels (exactness)
_WINDOWS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # window sizes of the face buckets, pixels
_MIN_BUCKET = 2048  # rectangular buckets with fewer faces are merged into square ones
_PAD = _WINDOWS[-1] - 1  # key-buffer margin right of and below the image: windows need no clamping
_TILE_BITS = _WINDOWS[-1].bit_length() - 1  # the largest window is 2**_TILE_BITS pixels
_LARGE = len(_WINDOWS) ** 2  # bucket of faces cut into tiles of the largest window
_SKIP = _LARGE + 1  # bucket of dropped faces
# (batch element, face) pairs classified / set up at once, and (face, pixel) pairs tested at once;
# CUDA gets larger blocks so that a batch of dense heads runs as one block (few kernel launches).
_FACE_BLOCK = {"cpu": 1 << 18, "cuda": 1 << 21}
_MAX_CANDIDATES = {"cpu": 1 << 18, "cuda": 1 << 24}
_window_tables: dict[torch.device, Tensor] = {}


class _Mesh(NamedTuple):
    """The flattened batch: ``fixed`` ``2 x B*N`` int32 fixed-point pixel coordinates, ``depth``
    ``B*N`` float64 ``z``, ``ahead`` ``B*N`` bool ``z > near``, ``corners`` ``3 x M`` vertex ids."""

    fixed: Tensor
    depth: Tensor
    ahead: Tensor
    corners: Tensor
    num_faces: int
    num_vertices: int


def visible_faces(uv: Tensor, z: Tensor, faces: Tensor, height: int, width: int, near: float,
                  cull_backfaces: bool = False) -> Tensor:
    """Z-buffer visibility: ``B x N x 2`` pixel coordinates, ``B x N`` depths -> ``B x H x W`` face ids.

    ``faces`` is ``M x 3`` int64; ``-1`` marks empty pixels. Not differentiable. Synchronises the
    host with the device exactly once (to size the per-bucket scans).
    """
    b, n, m = uv.shape[0], uv.shape[1], faces.shape[0]
    dev = uv.device
    hp, wp = height + _PAD, width + _PAD
    face_bits = max(1, (m - 1).bit_length())
    keys = torch.zeros(b * hp * wp, dtype=torch.int64, device=dev)
    # Vertices snapped to the fixed-point grid (int32, exact: |coordinate| < 2**31 / 256 pixels).
    lim = float(max(height, width)) + _GUARD
    fixed = (uv.double().clamp(-_GUARD, lim) * _SUBPIXEL).round().to(torch.int32).view(-1, 2).t().contiguous()
    depth = z.double().reshape(-1)
    mesh = _Mesh(fixed, depth, depth > near, face_columns(faces), m, n)
    blocks = _blocks(b, m, _FACE_BLOCK.get(dev.type, _FACE_BLOCK["cuda"]))
    order = torch.empty(b * m, dtype=torch.int64, device=dev)
    stats = []
    for p0, p1 in blocks:
        vid = _vertex_ids(mesh, p0, p1).view(-1)
        xy = mesh.fixed.gather(1, vid.expand(2, -1)).view(2, 3, -1)
        ahead = mesh.ahead.index_select(0, vid).view(3, -1)
        bucket, tiles = _classify(xy, ahead[0] & ahead[1] & ahead[2], height, width, cull_backfaces)
        order[p0:p1] = torch.argsort(bucket.to(torch.uint8)) + p0  # uint8 keys: a counting sort
        stats.append(torch.cat([_counts(bucket, _SKIP + 1), tiles.sum()[None]]))
    for (p0, p1), (*counts, num_tiles) in zip(blocks, torch.stack(stats).tolist() if stats else []):
        if sum(counts[:_SKIP]):  # the single host synchronisation is the tolist() above
            _scan_block(mesh, order[p0:p0 + sum(counts[:_SKIP])], (p0, p1), counts, num_tiles,
                        (height, width, hp, wp, face_bits), keys)
    face_id = keys.view(b, hp, wp)[:, :height, :width]
    low = (1 << face_bits) - 1
    return torch.where(face_id > low, low - (face_id & low), -1)


def _blocks(b: int, m: int, block: int) -> list[tuple[int, int]]:
    """Ranges ``[p0, p1)`` of (batch element, face) pairs ``p = batch * m + face``: whole batch
    elements, as many as fit in ``block`` pairs, or, for meshes above ``block`` faces, face ranges."""
    if b * m == 0:
        return []
    if m <= block:
        step = (block // m) * m
        return [(p0, min(b * m, p0 + step)) for p0 in range(0, b * m, step)]
    return [(i * m + f0, i * m + min(m, f0 + block)) for i in range(b) for f0 in range(0, m, block)]


def _vertex_ids(mesh: _Mesh, p0: int, p1: int) -> Tensor:
    """``3 x F`` flat vertex ids of the corners of the pairs ``[p0, p1)`` of one :func:`_blocks` range
    (a batch-offset view of the ``M x 3`` faces: no gather)."""
    m, n = mesh.num_faces, mesh.num_vertices
    b0, f0 = divmod(p0, m)
    if p1 - p0 <= m - f0:  # one batch element
        out = mesh.corners.new_empty(3, p1 - p0)
        return torch.add(mesh.corners[:, f0:f0 + p1 - p0], b0 * n, out=out)
    batch = torch.arange(b0, (p1 - 1) // m + 1, device=mesh.corners.device)
    out = mesh.corners.new_empty(3, batch.numel(), m)
    return torch.add(mesh.corners[:, None, :], batch[:, None] * n, out=out).view(3, -1)


def _boxes(xy: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """``2 x 3 x F`` int32 fixed-point corners -> first and last candidate column/row ``lo``, ``hi``
    (``2 x F`` int32: the pixel centres ``j * S + S / 2`` in the vertex box, clamped to the image)
    and the vertex box's extent (``2 x F``, fixed-point units)."""
    lo_f = torch.minimum(torch.minimum(xy[:, 0], xy[:, 1]), xy[:, 2])
    hi_f = torch.maximum(torch.maximum(xy[:, 0], xy[:, 1]), xy[:, 2])
    half = int(_SUBPIXEL) // 2
    lo = torch.bitwise_right_shift(lo_f + (half - 1), _SUBPIXEL_BITS).clamp_min_(0)  # ceil((x - S/2) / S)
    hi = torch.bitwise_right_shift(hi_f - half, _SUBPIXEL_BITS)  # floor((x - S/2) / S)
    hi[0].clamp_max_(width - 1)
    hi[1].clamp_max_(height - 1)
    return lo, hi, hi_f - lo_f


def _classify(xy: Tensor, ahead: Tensor, height: int, width: int, cull_backfaces: bool) -> tuple[Tensor, Tensor]:
    """Buckets of ``F`` faces: ``2 x 3 x F`` int32 fixed-point corners, ``F`` bool all corners ahead.

    Returns ``bucket`` ``F``: ``i * len(_WINDOWS) + j`` for the smallest ``_WINDOWS[i]`` rows by
    ``_WINDOWS[j]`` columns window holding the pixel box (sparse rectangular buckets merged into
    square ones), ``_LARGE`` for faces spanning more than the largest window, ``_SKIP`` for dropped
    faces; and ``tiles`` ``F``: the number of largest-window tiles of each ``_LARGE`` face, else 0.
    """
    lo, hi, extent = _boxes(xy, height, width)
    d = (xy[:, 1:] - xy[:, :1]).double()  # x/y, corner 1/2 minus corner 0: exact, and so is the area
    area = d[0, 0] * d[1, 1] - d[0, 1] * d[1, 0]  # twice the signed area; < 0: front face
    span = hi - lo  # candidate columns and rows minus one, < 0 when no centre is in the box
    keep = (torch.minimum(span[0], span[1]) >= 0) & ahead & (area != 0)
    if cull_backfaces:
        keep &= area < 0
    nw, k = len(_WINDOWS), _WINDOWS[-1]
    fit = _window_table(xy.device).index_select(0, span.clamp(0, k).view(-1)).view(2, -1)
    large = ((torch.maximum(fit[0], fit[1]) >= nw) | (torch.maximum(extent[0], extent[1]) > k * int(_SUBPIXEL))) & keep
    fit.clamp_max_(nw - 1)
    bucket = torch.add(fit[0], fit[1], alpha=nw)
    counts = _counts(torch.where(keep & ~large, bucket, nw * nw), nw * nw + 1)
    sparse = (counts.index_select(0, bucket) < _MIN_BUCKET) & (fit[0] != fit[1])
    bucket = torch.where(sparse, torch.maximum(fit[0], fit[1]) * (nw + 1), bucket)  # merged into square buckets
    bucket.masked_fill_(large, _LARGE).masked_fill_(~keep, _SKIP)
    n = torch.bitwise_right_shift(span.clamp_min(0), _TILE_BITS) + 1  # largest-window tiles along x and y
    return bucket, torch.where(large, n[0].long() * n[1], 0)


def _window_table(device: torch.device) -> Tensor:
    """``_WINDOWS[-1] + 1`` int64 on ``device``: entry ``s`` is the index of the smallest window of
    at least ``s + 1`` pixels, ``len(_WINDOWS)`` for ``s = _WINDOWS[-1]``. Cached per device (a
    host-to-device copy only on a device's first call)."""
    if device not in _window_tables:
        spans = torch.arange(_WINDOWS[-1] + 1) + 1
        _window_tables[device] = torch.searchsorted(torch.tensor(_WINDOWS), spans).to(device)
    return _window_tables[device]


def _counts(index: Tensor, size: int) -> Tensor:
    """``bincount`` without its device-to-host sync on CUDA: ``size`` int64 counts of ``index``."""
    return torch.zeros(size, dtype=torch.int64, device=index.device).scatter_add_(0, index, torch.ones_like(index))


def _setup(xy: Tensor, z: Tensor, lo: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Coverage set-up of ``F`` kept faces: ``2 x 3 x F`` int32 fixed-point corners, ``3 x F``
    float64 depths, ``2 x F`` int32 first candidate column/row ``lo``.

    Returns ``edge`` ``9 x F`` of ``dtype`` (int32 is exact for faces within the largest window,
    int64 for all): the edge functions ``E_i`` at the pixel centre ``lo`` and their steps per pixel
    in x and y, all three ``>= 0`` exactly at the covered centres (the top-left fill rule folded
    in); and ``plane`` ``3 x F`` float64: ``1/z`` at the pixel centre ``lo`` and its steps per pixel.
    """
    sub = int(_SUBPIXEL)
    x, y = xy[0].to(dtype), xy[1].to(dtype)
    px, py = (lo.to(dtype) * sub + sub // 2).unbind(0)  # the pixel centre lo, fixed-point
    dx, dy = px - x, py - y
    edge = torch.empty(9, x.shape[-1], dtype=dtype, device=x.device)
    e, a, b = edge[0:3], edge[3:6], edge[6:9]
    for i in range(3):  # E_i = a (x - x_j) + b (y - y_j): the edge from vertex j = i+1 to vertex k = i+2
        j, k = (i + 1) % 3, (i + 2) % 3
        torch.sub(y[j], y[k], out=a[i])
        torch.sub(x[k], x[j], out=b[i])
        torch.mul(a[i], dx[j], out=e[i]).add_(b[i] * dy[j])
    area = e.sum(0, dtype=dtype)  # E_0 + E_1 + E_2 is twice the signed area at any point
    edge.mul_(area.sign())
    inv = (z * area.abs_().double()).reciprocal_()  # 1/z = sum_i E_i / (z_i * area)
    plane = (edge.double().view(3, 3, -1) * inv).sum(1)  # 1/z at lo and its steps per fixed-point unit
    plane[1:].mul_(sub)
    e.sub_((torch.add(b.sign(), a.sign(), alpha=2) <= 0).to(dtype))  # only top and left edges own centres on them
    edge[3:9].mul_(sub)
    return edge, plane


def gather_columns(table: Tensor, index: Tensor) -> Tensor:
    """``C x F`` -> ``C x P`` columns ``index`` (as rows: ``gather`` beats ``index_select`` on dim 1)."""
    return table.gather(1, index.expand(table.shape[0], -1))


def _scan_block(mesh: _Mesh, pair: Tensor, block: tuple[int, int], counts: list[int], num_tiles: int,
                sizes: tuple[int, ...], keys: Tensor) -> None:
    """Set up the kept faces ``pair`` of the pairs ``block`` = ``[p0, p1)`` (sorted by bucket,
    ``counts`` per bucket) and scan every bucket into ``keys``; ``num_tiles``: the tiles of its
    ``_LARGE`` faces."""
    height, width, hp, wp, face_bits = sizes
    nw, k, m = len(_WINDOWS), _WINDOWS[-1], mesh.num_faces
    if (block[1] - 1) // m == block[0] // m:  # within one batch element
        batch = block[0] // m
        face = pair - batch * m
    else:
        batch = torch.div(pair, m, rounding_mode="floor")
        face = pair - batch * m
    vid = (gather_columns(mesh.corners, face) + batch * mesh.num_vertices).view(-1)
    xy = mesh.fixed.gather(1, vid.expand(2, -1)).view(2, 3, -1)
    z = mesh.depth.index_select(0, vid).view(3, -1)
    lo, hi, _ = _boxes(xy, height, width)
    first = (lo[1].long() + batch * hp) * wp + lo[0]
    ints = torch.stack([first, (1 << face_bits) - 1 - face])  # first pixel, low key bits
    small = sum(counts[:_LARGE])
    if small:
        edge, plane = _setup(xy[..., :small], z[:, :small], lo[:, :small], torch.int32)
        start = 0
        for j, count in enumerate(counts[:_LARGE]):
            if count:
                cols = slice(start, start + count)
                _scan(edge[:, cols], plane[:, cols], ints[:, cols], (_WINDOWS[j // nw], _WINDOWS[j % nw]), wp,
                      face_bits, keys)
                start += count
    if counts[_LARGE]:
        cols = slice(small, small + counts[_LARGE])
        edge, plane = _setup(xy[..., cols], z[:, cols], lo[:, cols], torch.int64)
        tiles = _tiles(edge, plane, ints[:, cols], lo[:, cols].long(), hi[:, cols].long(), num_tiles, wp)
        _scan(*tiles, (k, k), wp, face_bits, keys)


def _tiles(edge: Tensor, plane: Tensor, ints: Tensor, lo: Tensor, hi: Tensor, count: int, wp: int
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Scan tables (``edge``, ``plane``, ``ints`` of ``F`` faces, boxes ``lo``/``hi`` ``2 x F``) of the
    ``count`` largest-window tiles covering the faces' pixel boxes (``wp``: key row length)."""
    k, dev = _WINDOWS[-1], edge.device
    n = torch.div(hi - lo, k, rounding_mode="floor") + 1  # tiles along x and y
    per_face = n[0] * n[1]
    rep = torch.repeat_interleave(torch.arange(per_face.numel(), device=dev), per_face, output_size=count)
    first = torch.repeat_interleave(per_face.cumsum(0) - per_face, per_face, output_size=count)
    t = torch.arange(count, device=dev) - first
    nx = n[0].index_select(0, rep)
    dx, dy = k * (t % nx), k * torch.div(t, nx, rounding_mode="floor")  # tile origin - lo, pixels
    edge, plane, ints = (gather_columns(table, rep) for table in (edge, plane, ints))
    edge[0:3] += edge[3:6] * dx + edge[6:9] * dy
    plane[0] += plane[1] * dx + plane[2] * dy
    ints[0] += dy * wp + dx
    return edge, plane, ints


def _scan(edge: Tensor, plane: Tensor, ints: Tensor, window: tuple[int, int], wp: int, face_bits: int,
          keys: Tensor) -> None:
    """Test a ``kh x kw`` pixel ``window`` per entry (``P``-column tables ``edge`` (int32 or int64),
    ``plane`` and ``ints`` = (first pixel, low key bits), for faces or tiles); scatter into ``keys``.

    Candidates are laid out ``kh x kw x P`` so that every operation runs over the entries, in
    chunks of ``_MAX_CANDIDATES``. A missed candidate gets a negative key, which loses to every
    hit and to the empty key 0.
    """
    kh, kw = window
    dev, dtype = keys.device, edge.dtype
    row, col = torch.arange(kh, device=dev, dtype=dtype)[:, None], torch.arange(kw, device=dev, dtype=dtype)[:, None]
    row_f, col_f = row.double(), col.double()
    offset = (torch.arange(kh, device=dev)[:, None] * wp + torch.arange(kw, device=dev))[..., None]
    total = ints.shape[1]
    per_chunk = max(1, _MAX_CANDIDATES.get(dev.type, _MAX_CANDIDATES["cuda"]) // (kh * kw))
    for c0 in range(0, total, per_chunk):
        chunk = slice(c0, min(total, c0 + per_chunk))
        e0, ax, by = edge[:, chunk].view(3, 3, -1)
        q0, qx, qy = plane[:, chunk]
        acc = None
        for i in range(3):  # E_i = (e0 + by r) + ax c at window cell (r, c); a 1-wide side adds nothing
            e = (e0[i] + row * by[i] if kh > 1 else e0[i][None])[:, None, :]
            e = e + (col * ax[i])[None] if kw > 1 else e
            acc = e if acc is None else torch.bitwise_or(acc, e)  # sign bit set iff some E_i < 0
        inv_z = (q0 + qx * col_f if kw > 1 else q0[None])[None]  # 1/z = (q0 + qx c) + qy r, rounded once
        if kh > 1:
            inv_z = torch.add(inv_z, (qy * row_f)[:, None], out=torch.empty(acc.shape, dtype=torch.float32, device=dev))
        else:
            inv_z = inv_z.float()
        bits = inv_z.view(torch.int32).bitwise_or_(acc.bitwise_right_shift_(8 * acc.element_size() - 1))  # miss: -1
        key = bits.long().bitwise_left_shift_(face_bits).bitwise_or_(ints[1, chunk])  # floats > 0: bits grow with 1/z
        keys.scatter_reduce_(0, (ints[0, chunk] + offset).view(-1), key.view(-1), "amax")
