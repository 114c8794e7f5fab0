"""Irises of the geometric generator: the driver's gaze slides the reference's irises along their eyes.

The head representation has no eyeballs that turn (paper, Sec. 5), so the warp keeps each iris where the
reference's looks. In the reference image each eye gets, around the iris centre that
:func:`exphead.tracking.gaze.iris_offsets` finds, a soft disk ``D`` of radius :data:`DISK_RADIUS` eye widths (the
iris and a margin: the landmark polygon is narrower than the visible eye), an opening mask ``O`` (the iBUG
36-41 / 42-47 polygon of the reference's landmarks, :data:`OPENING_SCALE` times as tall, so the lid margins are
in it and the corners are not; the landmarks found in the image when the generator has them, as the mesh's sit a
few pixels off the eyes), and an image with the disk filled line by line along the eye from the pixels
just past its two sides (sclera beside the iris, lid above and below it; the brighter side where one side is a
lash line or the dark corner). An output pixel that reads reference
pixel ``q`` then shows the disk's content slid by ``d`` along the eye (where the frame's gaze,
:attr:`GeneratorInputs.gaze`, puts the iris in the driven head, less what the warp shows already:
:func:`iris_slide`): the disk is taken off where it was and laid on where it goes,
``out(q) - a(q) (out(q) - fill(q)) + b(q) (reference(q - d) - fill(q))`` with ``a(q) = D(q) O(q)`` and
``b(q) = D(q - d) min(O(q), O(q - d))``, so no gaze changes nothing and the corners and the skin around the eye
keep the warp's pixels. Only the sideways part of the gaze moves: sliding along the eye moves the lid's margin
inside the disk along itself, which does not show, where moving across the eye would move the lids.

The maps live in reference pixels and follow the output along the warp's look-up grid, as the eyelids' do
(:mod:`expgen.generators.eyelids`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from exphead.camera import Camera, project_points
from exphead.tracking.gaze import LEFT_EYE, RIGHT_EYE, eye_axes, eye_yaw, head_yaw, iris_offsets, iris_u, lid_curve

from .filters import gaussian_blur

DISK_RADIUS = 0.3  # radius of the moved disk / eye width (an iris is about 0.2-0.27 of the landmarks' eye width)
OPENING_SCALE = 1.6  # the opening mask: the landmark polygon this many times as tall (the lid margins in it)
REACH = 0.28  # how far (eye widths) from the eye's centre a moved iris may sit


class IrisMaps(NamedTuple):
    """The reference's eyes (``H x W`` reference pixels).

    Attributes:
        maps: ``4 x H x W`` (opening, disk) of the image-left eye, then of the image-right eye.
        fill: ``3 x H x W`` the reference with both disks filled along the eye from their sides.
        axes: ``2 x 2`` per eye, the ``u`` axis scaled to one eye width (pixels).
        room: ``2 x 2`` per eye, the lowest and highest shift ``u`` (eye widths) that keeps its iris within
            :data:`REACH` of the eye's centre (both 0: the eye's iris was not found, it does not move).
        centre_u: ``2`` where each iris sits along its eye (eye widths; NaN: not found).
        box: ``(x0, y0, x1, y1)`` of the maps' support, grid units.
    """

    maps: Tensor
    fill: Tensor
    axes: Tensor
    room: Tensor
    centre_u: Tensor
    box: tuple[float, float, float, float]


def _polygon(points: Tensor, h: int, w: int, soft: float, scale: float = 1.0) -> Tensor:
    """``H x W`` soft mask of the eye opening whose iBUG points (corner, upper lid x2, corner, lower lid x2) are
    ``6 x 2`` pixels, ``scale`` times as tall about the line of the corners: 0 on and outside the lids and corners,
    rising to 1 ``soft`` pixels inside them."""
    mid, u, v, width = eye_axes(points)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=points.dtype) + 0.5, torch.arange(w, dtype=points.dtype) + 0.5,
                            indexing="ij")
    rel = torch.stack([xs, ys], -1) - mid
    pu, pv = (rel * u).sum(-1), (rel * v).sum(-1)  # pixels along / across the eye
    local = points - mid
    lu, lv = (local * u).sum(-1), (local * v).sum(-1)
    top, bottom = (lid_curve(lu[None, ids], lv[None, ids], pu.flatten())[0].view_as(pu) * scale
                   for ids in ([0, 1, 2, 3], [0, 5, 4, 3]))
    inside = torch.minimum(pv - top, bottom - pv)
    across = torch.minimum(inside, width / 2 - pu.abs())
    return (across / soft).clamp(0, 1)


def _fill_along(image: Tensor, disk: Tensor, centre: Tensor, u: Tensor, v: Tensor, radius: float) -> Tensor:
    """``3 x H x W`` image with the soft ``disk`` (``H x W``, centre ``centre`` and ``radius`` pixels) filled line by
    line along the unit axis ``u``: each pixel from the two pixels of its line (across ``v``) just past the disk's
    sides, linearly in between, or from the brighter one where they differ by 0.1 in luma or more; then smoothed
    across lines (Gaussian of 0.1 ``radius``, inside the disk)."""
    h, w = image.shape[-2:]
    rows, cols = torch.nonzero(disk > 0, as_tuple=True)
    if not rows.numel():
        return image
    ys, xs = rows.to(image.dtype) + 0.5, cols.to(image.dtype) + 0.5
    pu, pv = (xs - centre[0]) * u[0] + (ys - centre[1]) * u[1], (xs - centre[0]) * v[0] + (ys - centre[1]) * v[1]
    half = (radius ** 2 - pv ** 2).clamp_min(0).sqrt() + 1.5  # the chord's half-length, past the soft edge

    def at(along: Tensor) -> Tensor:
        x = centre[0] + along * u[0] + pv * v[0]
        y = centre[1] + along * u[1] + pv * v[1]
        grid = torch.stack([x / w * 2 - 1, y / h * 2 - 1], -1).view(1, 1, -1, 2)
        return F.grid_sample(image[None], grid.to(image), mode="bilinear", padding_mode="border",
                             align_corners=False)[0, :, 0]

    left, right = at(-half), at(half)
    t = ((pu + half) / (2 * half)).clamp(0, 1)
    # a side that is much darker than the other is a lash line or the shadowed corner, not sclera: take the other
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
    brighter = ((luma @ right - luma @ left) / 0.1).clamp(-1, 1)
    t = t + (1 - t) * brighter.clamp_min(0) + t * brighter.clamp_max(0)
    filled = torch.zeros_like(image)
    filled[:, rows, cols] = torch.lerp(left, right, t)
    # lines of lid and lash fill differ from line to line: smooth across them, inside the disk only
    inside = (disk > 0).to(image)[None]
    smooth = gaussian_blur(torch.cat([filled * inside, inside])[None], max(0.5, 0.1 * radius))[0]
    out = image.clone()
    out[:, rows, cols] = (smooth[:3] / smooth[3:].clamp_min(1e-6))[:, rows, cols]
    return out


def iris_maps(reference: Tensor, landmarks_uv: Tensor) -> IrisMaps | None:
    """``3 x H x W`` reference image and ``68 x 2`` pixel coordinates of its landmarks -> :class:`IrisMaps`;
    None when neither iris can be read (eyes closed or too small)."""
    h, w = reference.shape[-2:]
    marks = landmarks_uv.detach().double().cpu()
    centres = iris_offsets(reference[None].double().cpu(), marks[None])[0]  # 2 x 2
    if not bool(centres.isfinite().any()):
        return None
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                            indexing="ij")
    image = reference.detach().double().cpu()
    maps, axes, room, fill = [], [], [], image
    for k, ids in enumerate((RIGHT_EYE, LEFT_EYE)):
        points = marks[list(ids)]
        mid, u, v, width = eye_axes(points)
        soft = max(1.0, 0.03 * float(width))
        opening = _polygon(points, h, w, soft, OPENING_SCALE)
        disk = torch.zeros_like(opening)
        if bool(centres[k].isfinite().all()):
            centre = mid + width * (centres[k, 0] * u + centres[k, 1] * v)
            radius = DISK_RADIUS * float(width)
            disk = ((radius - torch.hypot(xs - centre[0], ys - centre[1])) / soft + 0.5).clamp(0, 1)
            fill = _fill_along(fill, disk, centre, u, v, radius)
            room.append(torch.stack([-REACH - centres[k, 0], REACH - centres[k, 0]]))
        else:
            room.append(torch.zeros(2, dtype=torch.float64))
        maps += [opening, disk]
        axes.append(u * width)
    stacked = torch.stack(maps).to(reference)
    rows, cols = torch.nonzero(stacked[0::2].amax(0) > 0, as_tuple=True)
    if not rows.numel():
        return None
    box = (float(cols.min()) / w * 2 - 1, float(rows.min()) / h * 2 - 1, float(cols.max() + 1) / w * 2 - 1,
           float(rows.max() + 1) / h * 2 - 1)
    return IrisMaps(stacked, fill.to(reference), torch.stack(axes).to(reference), torch.stack(room).to(reference),
                    centres[:, 0].to(reference), box)


def eye_centre_u(landmarks: Tensor) -> Tensor:
    """``B x 68 x 2`` landmarks (pixels) -> ``B x 2``: the middle of each eye's lids (iBUG 37, 38, 40, 41 / 43, 44,
    46, 47) along the eye from the corners' midpoint, in eye widths (image-left eye, image-right eye)."""
    out = []
    for ids in (RIGHT_EYE, LEFT_EYE):
        eye = landmarks[:, list(ids)]
        mid, u, _, width = eye_axes(eye)
        lids = eye[:, [1, 2, 4, 5]].mean(dim=1)
        out.append(((lids - mid) * u).sum(-1) / width.clamp_min(1e-9))
    return torch.stack(out, -1)


def iris_slide(gaze: Tensor, landmarks: Tensor, reference_landmarks: Tensor, camera: Camera,
               maps: IrisMaps) -> Tensor:
    """How far to slide each iris along its eye: ``B x 2`` (one ``u`` per eye, eye widths).

    The reference's iris sits at ``maps.centre_u``; with its head's yaw that is its eyes' own yaw
    (:func:`~exphead.tracking.gaze.eye_yaw`). Turned by the frame's ``gaze`` (``B x 2`` pitch, yaw; only the yaw
    is used) in the driven head, turned by that head's yaw, the iris belongs at
    :func:`~exphead.tracking.gaze.iris_u` of the two (parallax included). The warp has carried it with the
    surface around it already, by :func:`eye_centre_u`'s change; the slide is the rest.

    Args:
        gaze: ``B x 2`` (:attr:`GeneratorInputs.gaze`).
        landmarks, reference_landmarks: ``B x 68 x 3`` driven and ``68 x 3`` reference landmarks (world frame).
        camera: the reference camera (batch 1).
        maps: the reference's :class:`IrisMaps`.
    """
    driven = camera.world_to_camera(landmarks)
    reference = camera.world_to_camera(reference_landmarks[None])
    own = eye_yaw(maps.centre_u, head_yaw(reference))  # 2: the reference's eyes' yaw in its head
    target = iris_u(own + gaze[:, 1:2], head_yaw(driven)[:, None])  # B x 2
    k = camera.K[0]
    drift = eye_centre_u(project_points(driven, k[None])) - eye_centre_u(project_points(reference, k[None]))
    return torch.nan_to_num(target - maps.centre_u - drift)


def move_irises(frames: Tensor, grid: Tensor, maps: IrisMaps, slide: Tensor, reference: Tensor) -> Tensor:
    """Show each eye's iris slid along the eye by ``slide`` (see the module docstring).

    Args:
        frames: ``B x 3 x H x W`` warped frames.
        grid: ``B x H x W x 2`` where each output pixel read the ``3 x H' x W'`` ``reference`` (``grid_sample``
            coordinates).
        maps: the reference's :class:`IrisMaps`.
        slide: ``B x 2`` how far each eye's iris slides along the eye (eye widths, :func:`iris_slide`).

    Returns:
        ``B x 3 x H x W`` frames.
    """
    if not bool((slide.abs() > 1e-4).any()):
        return frames
    x0, y0, x1, y1 = maps.box
    near = ((grid[..., 0] >= x0) & (grid[..., 0] <= x1) & (grid[..., 1] >= y0) & (grid[..., 1] <= y1)).any(0)
    rows, cols = torch.nonzero(near, as_tuple=True)
    if not rows.numel():
        return frames
    box = (slice(None), slice(None), slice(int(rows.min()), int(rows.max()) + 1),
           slice(int(cols.min()), int(cols.max()) + 1))
    look = grid[:, box[2], box[3]]  # B x h x w x 2
    b = frames.shape[0]
    size = torch.tensor(reference.shape[-1:-3:-1], dtype=look.dtype, device=look.device)  # W', H'
    sample = lambda image, at: F.grid_sample(image[None].expand(b, -1, -1, -1), at, mode="bilinear",  # noqa: E731
                                             padding_mode="zeros", align_corners=False)
    here = sample(torch.cat([maps.maps, maps.fill]), look)
    out, fill = frames[box], here[:, 4:]
    for e in range(2):
        shift = torch.maximum(torch.minimum(slide[:, e:e + 1].to(look), maps.room[e, 1]), maps.room[e, 0])  # B x 1
        pixels = shift * maps.axes[e].to(look)  # B x 2 (x, y) in reference pixels
        there = sample(torch.cat([maps.maps[2 * e:2 * e + 2], reference]), look - (pixels * 2 / size)[:, None, None])
        opening = here[:, 2 * e:2 * e + 1]
        old = here[:, 2 * e + 1:2 * e + 2] * opening
        new = there[:, 1:2] * torch.minimum(opening, there[:, :1])
        out = out - old * (out - fill) + new * (there[:, 2:] - fill)
    result = frames.clone()
    result[box] = out
    return result


__all__ = ["DISK_RADIUS", "IrisMaps", "eye_centre_u", "iris_maps", "iris_slide", "move_irises"]
