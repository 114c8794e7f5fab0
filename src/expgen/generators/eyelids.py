"""Eyelids of the geometric generator: a closing lid covers the eye with lid skin.

The warp alone stretches the reference's thin upper lid (lashes, the top of the iris) over a closing eye, which
reads as a dark smear, not a blink. So, in the reference image, each eye opening (the iBUG 36-41 / 42-47
polygon of the reference mesh's landmarks, widened by a margin) gets a lid coordinate ``t`` (0 at the upper lid,
1 at the lower lid) and a lid-skin image (the opening filled from the skin around it by normalised Gaussian
convolution). Each frame's closure ``c`` per eye compares the driven mesh's lid distance with the reference
mesh's (0: as open as the reference or wider, 1: closed). The warp has already narrowed the eye by the driven
mesh's own lids (the reference opening squeezed by ``s``, :func:`eye_squeeze`), so the lid covers only what is
left to close: from the top, the fraction ``1 - (1 - c) / (1 - s)`` of the squeezed opening (:func:`lid_cover`;
covering ``c`` of it would close the eye twice, a 40 % closure showing as 75 %). Output pixels that read the
reference eye above the lid's edge show lid skin, and a lash line darkens the edge (a blank lid without it reads
as an open eye to face-mesh detectors). The maps live in reference pixels, so they follow the output along the
warp's own look-up grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from exphead.tracking.gaze import LEFT_EYE, RIGHT_EYE

from .filters import gaussian_blur, max_pool

CLOSED_OPENNESS = 0.05  # lid distance / eye width of a closed eye on the head model (its lid landmarks never meet)
MIN_OPENING = 0.08  # reference openness below which its eye counts as closed already (no eyelid then)


class EyeMaps(NamedTuple):
    """``maps``: ``8 x H x W`` (inside, and inside times: t, t of the upper lid, t of the lower lid) of the right
    eye, then the left, in reference pixels;
    ``skin``: ``3 x H x W`` the reference with both openings filled with lid skin."""

    maps: Tensor
    skin: Tensor
    box: tuple[float, float, float, float] = (-1.0, -1.0, 1.0, 1.0)  # x0, y0, x1, y1 of the maps' support, grid units


def eye_openness(landmarks: Tensor) -> Tensor:
    """``... x 68 x 3`` landmarks -> ``... x 2`` mean lid distance over eye width (right eye, left eye)."""
    out = []
    for e in (RIGHT_EYE, LEFT_EYE):
        p = landmarks[..., list(e), :]
        lid = ((p[..., 1, :] - p[..., 5, :]).norm(dim=-1) + (p[..., 2, :] - p[..., 4, :]).norm(dim=-1)) / 2
        out.append(lid / (p[..., 0, :] - p[..., 3, :]).norm(dim=-1).clamp_min(1e-9))
    return torch.stack(out, -1)


def eye_closure(landmarks: Tensor, reference: Tensor) -> Tensor:
    """``B x 68 x 3`` driven and ``68 x 3`` reference landmarks (any one frame) -> ``B x 2`` closure in [0, 1]: how
    far the openness went from the reference's towards :data:`CLOSED_OPENNESS`, 0 for an eye the reference already
    shows closed."""
    ref = eye_openness(reference)
    closure = ((ref - eye_openness(landmarks)) / (ref - CLOSED_OPENNESS).clamp_min(1e-9)).clamp(0, 1)
    return torch.where(ref > MIN_OPENING, closure, torch.zeros_like(closure))


def eye_squeeze(landmarks: Tensor, reference: Tensor) -> Tensor:
    """``B x 68 x 3`` driven and ``68 x 3`` reference landmarks -> ``B x 2`` in [0, 1]: the share of the reference's
    eye opening the driven lids close (``1 - openness / reference openness``), which the warp's squeeze shows
    already; 0 for an eye the reference shows closed."""
    ref = eye_openness(reference)
    squeeze = (1 - eye_openness(landmarks) / ref.clamp_min(1e-9)).clamp(0, 1)
    return torch.where(ref > MIN_OPENING, squeeze, torch.zeros_like(squeeze))


def lid_cover(closure: Tensor, squeeze: Tensor) -> Tensor:
    """The share of the warp's squeezed eye opening the lid covers, so that ``1 - closure`` of the reference's opening
    stays visible: ``1 - (1 - closure) / (1 - squeeze)`` in [0, 1] (``closure`` where ``squeeze`` is 0)."""
    return (1 - (1 - closure) / (1 - squeeze).clamp_min(1e-6)).clamp(0, 1)


def eye_maps(reference: Tensor, landmarks_uv: Tensor) -> EyeMaps:
    """``3 x H x W`` reference image and ``68 x 2`` pixel coordinates of its landmarks -> :class:`EyeMaps`."""
    h, w = reference.shape[-2:]
    uv = landmarks_uv.detach().double().cpu().numpy()
    x, y = np.arange(w) + 0.5, np.arange(h) + 0.5
    maps, height = [], 1.0
    for e in (RIGHT_EYE, LEFT_EYE):
        upper, lower = uv[[e[0], e[1], e[2], e[3]]], uv[[e[0], e[5], e[4], e[3]]]
        ends = np.clip(x, upper[:, 0].min(), upper[:, 0].max())  # lids as parabolas through their 4 points
        top, bottom = np.polyval(np.polyfit(*upper.T, 2), ends), np.polyval(np.polyfit(*lower.T, 2), ends)
        opening = float(np.max(bottom - top))
        margin = 0.5 * max(opening, 0.0) + 1.0  # the photo's lash line lies outside the landmark polygon
        top, bottom = top - margin, bottom + margin
        t = (y[:, None] - top[None]) / np.maximum(bottom - top, 1e-6)[None]
        upper_lid = margin / np.maximum(bottom - top, 1e-6)  # t of the upper lid, per column
        lower_lid = (bottom - margin - top) / np.maximum(bottom - top, 1e-6)  # t of the lower lid
        left, right = upper[:, 0].min() - margin, upper[:, 0].max() + margin
        columns = np.clip(np.minimum(x - left, right - x) / margin, 0, 1)  # fades out past the corners
        inside = np.clip(np.minimum(t, 1 - t) / 0.15, 0, 1) * columns[None]  # soft-edged opening
        maps += [inside, np.clip(t, 0, 1) * inside, upper_lid[None] * inside, lower_lid[None] * inside]
        height = max(height, opening + 2 * margin)
    stacked = torch.from_numpy(np.stack(maps)).to(reference)
    ys, xs = torch.nonzero(stacked[0::4].amax(0) > 0, as_tuple=True)
    if not ys.numel():
        return EyeMaps(stacked, reference.clone(), (2.0, 2.0, 2.0, 2.0))  # nothing to cover: an empty box
    box = (float(xs.min()) / w * 2 - 1, float(ys.min()) / h * 2 - 1, float(xs.max() + 1) / w * 2 - 1,
           float(ys.max() + 1) / h * 2 - 1)
    # lid skin: the skin around the openings by normalised convolution, weighted towards the brighter pixels
    # (skin rather than lashes, brows or hair); computed on the box around both eyes only
    skin, pad = reference.clone(), int(2 * height) + 2
    r0, r1 = max(0, int(ys.min()) - pad), min(h, int(ys.max()) + pad + 1)
    c0, c1 = max(0, int(xs.min()) - pad), min(w, int(xs.max()) + pad + 1)
    skin[:, r0:r1, c0:c1] = _lid_skin(reference[:, r0:r1, c0:c1], stacked[0::4, r0:r1, c0:c1].amax(0), height)
    return EyeMaps(stacked, skin, box)


def _lid_skin(image: Tensor, opening: Tensor, height: float) -> Tensor:
    """``3 x h x w`` image with the ``h x w`` ``opening`` (> 0) filled from the brighter skin around it."""
    hole = max_pool((opening > 0).to(image)[None, None], 1)[0]
    ring = (max_pool(hole[None], int(1.5 * height))[0] > 0) & (hole == 0)
    luma = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
    bright = torch.sigmoid((luma - luma[ring].median()) / 0.03) if ring.any() else torch.ones_like(luma)
    known = (1 - hole) * bright
    fill = gaussian_blur(torch.cat([image * known, known])[None], 0.5 * height)[0]
    return torch.lerp(image, fill[:3] / fill[3:].clamp_min(1e-6), hole)


def close_eyelids(frames: Tensor, grid: Tensor, maps: EyeMaps, closure: Tensor, work_grid: Tensor | None = None,
                  soft: float = 0.15, squeeze: Tensor | None = None) -> Tensor:
    """Cover the closing part of each eye with lid skin.

    Args:
        frames: ``B x 3 x H x W`` warped frames.
        grid: ``B x H x W x 2`` where each output pixel read the reference (``grid_sample`` coordinates).
        maps: the reference's :class:`EyeMaps`.
        closure: ``B x 2`` per-eye closure (:func:`eye_closure`).
        work_grid: the same look-up at a lower resolution (``B x h x w x 2``), where the lid's coverage is computed
            and then up-sampled; None: at ``H x W``.
        soft: width of the lid's edge, in units of the eye's height.
        squeeze: ``B x 2`` share of the opening the warp already closed (:func:`eye_squeeze`); None: 0 (the warp
            left the eye as open as the reference's).

    Returns:
        ``B x 3 x H x W`` frames.
    """
    b, size = frames.shape[0], frames.shape[-2:]
    if not bool((closure > 0).any()):
        return frames
    look = grid if work_grid is None else work_grid
    x0, y0, x1, y1 = maps.box
    near = ((look[..., 0] >= x0) & (look[..., 0] <= x1) & (look[..., 1] >= y0) & (look[..., 1] <= y1)).any(0)
    rows, cols = torch.nonzero(near, as_tuple=True)
    if not rows.numel():
        return frames
    r0, r1 = max(0, int(rows.min()) - 1), min(look.shape[1], int(rows.max()) + 2)  # the pixels that read the eyes
    c0, c1 = max(0, int(cols.min()) - 1), min(look.shape[2], int(cols.max()) + 2)
    read = torch.zeros(b, maps.maps.shape[0], *look.shape[1:3], dtype=frames.dtype, device=frames.device)
    read[:, :, r0:r1, c0:c1] = F.grid_sample(maps.maps[None].expand(b, -1, -1, -1), look[:, r0:r1, c0:c1],
                                             mode="bilinear", padding_mode="zeros", align_corners=False)
    edges = closure if squeeze is None else lid_cover(closure, squeeze)
    cover, lash = torch.zeros_like(read[:, :1]), torch.zeros_like(read[:, :1])
    k = max(1, round(read.shape[-2] / 256))  # the lash line's width in (work) pixels
    for e in range(2):
        inside = read[:, 4 * e:4 * e + 1]
        t, upper, lower = (read[:, 4 * e + 1:4 * e + 4] / inside.clamp_min(1e-6)).split(1, dim=1)
        c = closure[:, e].to(frames).view(b, 1, 1, 1)
        down = edges[:, e].to(frames).view(b, 1, 1, 1)
        edge = upper - soft + down * (lower - upper + soft)  # the lid's edge: the upper lid at 0, the lower at 1
        band = torch.where(t < upper, (c / 0.3).clamp(max=1), 1.0)  # the reference's lid above: taken in gradually
        covered = ((edge - t) / soft + 1).clamp(0, 1) * inside * band
        # lashes along the lid's lower edge in the output (the warp squeezes the closing opening to a few pixels)
        below = F.pad(covered, (0, 0, 0, k))[..., k:, :]
        lash = torch.maximum(lash, (covered - below).clamp(0, 1) * c)
        cover = torch.maximum(cover, covered)
    if cover.shape[-2:] != size:
        cover, lash = F.interpolate(torch.cat([cover, lash], 1), size=size, mode="bilinear",
                                    align_corners=False).split(1, dim=1)
    rows, cols = torch.nonzero((cover + lash).amax((0, 1)) > 0, as_tuple=True)
    if not rows.numel():
        return frames
    box = (slice(None), slice(None), slice(int(rows.min()), int(rows.max()) + 1),
           slice(int(cols.min()), int(cols.max()) + 1))  # only the pixels a lid covers read the lid skin
    skin = F.grid_sample(maps.skin[None].expand(b, -1, -1, -1), grid[box[0], box[2], box[3]], mode="bilinear",
                         padding_mode="border", align_corners=False)
    out = frames.clone()
    lid = skin * 0.95  # lid skin a little darker than the skin around it
    out[box] = torch.lerp(frames[box], lid, cover[box]) * (1 - 0.6 * lash[box])
    return out


__all__ = ["EyeMaps", "close_eyelids", "eye_closure", "eye_maps", "eye_openness", "eye_squeeze", "lid_cover"]
