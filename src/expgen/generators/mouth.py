"""The mouth interior of the geometric generator, for a driver that opens wider than the reference.

The warp alone reads the reference's lips and teeth through mesh faces the opening mouth stretches: teeth smear
into the gap and the gap shows broken, tooth-shaped holes. Here the inside of the driven inner-lip contour
(iBUG 60-67) is drawn anew, in a frame that runs along each mouth from corner 60 to corner 64 (``s`` in [0, 1])
and down from that line (``v``, pixels):

* the reference's own interior (what its open lips show, e.g. teeth) is split at its middle: the upper half hangs
  from the upper lip (upper teeth move with the skull), the lower half stands on the lower lip (lower teeth move
  with the jaw), both at the reference's scale;
* between them, where the driven mouth opens wider than the reference's, is the cavity: dark, and darker towards
  its middle;
* a reference whose lips are closed shows no teeth to carry, so a teeth proxy hangs from the upper lip: an
  off-white band, as tall as a share of the mouth's width, fading towards the corners.

Everything is computed per output pixel from the two mouths' 8 inner-lip points; where the driven mouth is not
opened wider than the reference's (``gap`` no larger), nothing is drawn and the warp stays. How wide it opens is
compared in the reference's own view when the driven lips are also given there (``opening_lips``: the driven
mesh's lips moved back by the head's motion): a turned or nodding head changes the drawn mouth's proportions
without opening it (a 20 degree turn made a closed-lipped smile's gap read 6 % wider, and a dark line appeared
across the astronaut's teeth).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

UPPER = (0, 1, 2, 3, 4)  # of the 8 inner-lip points 60-67: corner 60, upper lip 61-63, corner 64
LOWER = (0, 7, 6, 5, 4)  # corner 60, lower lip 67-65, corner 64
CAVITY_COLOR = (0.16, 0.05, 0.05)
TEETH_COLOR = (0.86, 0.82, 0.74)
TEETH_HEIGHT = 0.16  # the teeth proxy's height, share of the mouth's width (upper incisors ~ 1/5 of the width)
CLOSED_GAP = 0.04  # a reference gap (share of the mouth's width) below which its lips count as closed


class MouthFrame(NamedTuple):
    """Each mouth's frame: ``origin`` (corner 60) and unit ``axis`` (towards corner 64) ``... x 2``, ``length``
    (corner to corner, ``...``), and its lips as ``... x 5`` knots: ``s`` and ``v`` of the upper and lower lip."""

    origin: Tensor
    axis: Tensor
    length: Tensor
    upper_s: Tensor
    upper_v: Tensor
    lower_s: Tensor
    lower_v: Tensor

    @classmethod
    def of(cls, lips: Tensor) -> MouthFrame:
        """``... x 8 x 2`` inner-lip pixels (iBUG 60-67 in order) -> the mouth's frame."""
        origin = lips[..., 0, :]
        chord = lips[..., 4, :] - origin
        length = chord.norm(dim=-1).clamp_min(1e-6)
        axis = chord / length[..., None]
        s, v = cls._coords(lips, origin[..., None, :], axis[..., None, :], length[..., None])
        return cls(origin, axis, length, s[..., UPPER], v[..., UPPER], s[..., LOWER], v[..., LOWER])

    @staticmethod
    def _coords(points: Tensor, origin: Tensor, axis: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        d = points - origin
        normal = torch.stack([-axis[..., 1], axis[..., 0]], -1)  # "down" for a mouth drawn left to right
        return (d * axis).sum(-1) / length, (d * normal).sum(-1)

    def coords(self, pix: Tensor) -> tuple[Tensor, Tensor]:
        """``H x W x 2`` pixels -> ``B x H x W`` ``s`` and ``v`` in each of the ``B`` mouths' frames."""
        view = (-1, 1, 1, 2)
        return self._coords(pix[None], self.origin.view(view), self.axis.view(view), self.length.view(-1, 1, 1))

    def point(self, s: Tensor, v: Tensor) -> Tensor:
        """``B x H x W`` frame coordinates -> ``B x H x W x 2`` pixels."""
        view = (-1, 1, 1, 2)
        normal = torch.stack([-self.axis[..., 1], self.axis[..., 0]], -1)
        along = (s * self.length.view(-1, 1, 1))[..., None]
        return self.origin.view(view) + along * self.axis.view(view) + v[..., None] * normal.view(view)


def _curve(s: Tensor, knots_s: Tensor, knots_v: Tensor) -> Tensor:
    """Piecewise-linear ``v(s)`` through ``B x K`` knots, at ``B x H x W`` ``s`` (held flat past the ends)."""
    order = knots_s.argsort(-1)
    ks, kv = knots_s.gather(-1, order), knots_v.gather(-1, order)
    view = (-1, 1, 1)
    out = torch.where(s <= ks[:, :1].view(view), kv[:, :1].view(view), kv[:, -1:].view(view)).expand_as(s).clone()
    for j in range(ks.shape[-1] - 1):
        s0, s1, v0, v1 = ks[:, j].view(view), ks[:, j + 1].view(view), kv[:, j].view(view), kv[:, j + 1].view(view)
        inside = (s >= s0) & (s <= s1)
        t = ((s - s0) / (s1 - s0).clamp_min(1e-6)).clamp(0, 1)
        out = torch.where(inside, v0 + t * (v1 - v0), out)
    return out


def mouth_interior(pix: Tensor, driven_lips: Tensor, reference_lips: Tensor, opening_lips: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Where the inside of each driven mouth reads the reference, and what is drawn there.

    Args:
        pix: ``H x W x 2`` output pixel centres.
        driven_lips: ``B x 8 x 2`` the driven inner lips (iBUG 60-67) in output pixels.
        reference_lips: ``8 x 2`` the reference's inner lips in reference pixels (the same pixel grid).
        opening_lips: ``B x 8 x 2`` the driven inner lips seen as the reference is (the head's motion undone), in
            reference pixels: how far each mouth opens is compared there; None: in the output, scaled by the
            mouths' widths.

    Returns:
        ``read``: ``B x H x W x 2`` the reference pixel each output pixel reads; ``weights``: ``B x 3 x H x W``
        (the share of the pixel taken by the reference read, by the cavity, by the teeth proxy; they sum to the
        interior's coverage: 0 outside the driven mouth or where it is no wider than the reference's);
        ``depth``: ``B x H x W`` in [0, 1], 1 in the middle of the cavity.
    """
    drv, ref = MouthFrame.of(driven_lips), MouthFrame.of(reference_lips[None])
    s, v = drv.coords(pix)
    top, bottom = _curve(s, drv.upper_s, drv.upper_v), _curve(s, drv.lower_s, drv.lower_v)
    scale = (ref.length / drv.length).view(-1, 1, 1)  # output pixels -> reference pixels
    s_ref = s.clamp(0, 1)
    ref_top, ref_bottom = _curve(s_ref, ref.upper_s, ref.upper_v), _curve(s_ref, ref.lower_s, ref.lower_v)
    ref_gap = (ref_bottom - ref_top).clamp_min(0)
    gap = (bottom - top).clamp_min(0) * scale
    inside = ((v - top).clamp(0, 1) * (bottom - v).clamp(0, 1) * (s > 0) * (s < 1)).to(pix.dtype)
    opened = gap
    if opening_lips is not None:
        own = MouthFrame.of(opening_lips)
        opened = (_curve(s_ref, own.lower_s, own.lower_v) - _curve(s_ref, own.upper_s, own.upper_v)).clamp_min(0)
    wider = ((opened - ref_gap) / 2).clamp(0, 1)  # fades in over two reference pixels of extra opening
    from_top, from_bottom = (v - top) * scale, (bottom - v) * scale
    half = ref_gap / 2
    closed = ref_gap < CLOSED_GAP * ref.length.view(-1, 1, 1)
    upper_part = (half - from_top + 0.5).clamp(0, 1) * ~closed
    lower_part = ((half - from_bottom + 0.5).clamp(0, 1) * ~closed).minimum(1 - upper_part)
    v_ref = torch.where(upper_part >= lower_part, ref_top + from_top, ref_bottom - from_bottom)
    read = ref.point(s_ref, v_ref)
    teeth_height = TEETH_HEIGHT * ref.length.view(-1, 1, 1)
    teeth = ((teeth_height.minimum(gap * 0.45) - from_top + 0.5).clamp(0, 1) * closed
             * (torch.sin(torch.pi * s_ref) * 1.5).clamp(0, 1))
    reads = upper_part + lower_part
    cavity = (1 - reads - teeth).clamp(0, 1)
    coverage = inside * wider
    weights = torch.stack([reads, cavity, teeth], 1) * coverage[:, None]
    depth = (2 * torch.minimum(from_top, from_bottom) / gap.clamp_min(1e-6)).clamp(0, 1)
    return read, weights, depth


def paint_mouth(frames: Tensor, reference_read: Tensor, weights: Tensor, depth: Tensor) -> Tensor:
    """``B x 3 x H x W`` frames with the interior of :func:`mouth_interior` drawn in: ``reference_read``
    (``B x 3 x H x W``, the reference sampled at ``read``), the cavity and the teeth proxy."""
    cavity = torch.tensor(CAVITY_COLOR, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    cavity = cavity * (1 - 0.5 * depth[:, None])
    teeth = torch.tensor(TEETH_COLOR, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    teeth = teeth * (0.75 + 0.25 * (1 - depth[:, None]))
    read, hole, proxy = weights.split(1, dim=1)
    rest = 1 - weights.sum(1, keepdim=True)
    return frames * rest + reference_read * read + cavity * hole + teeth * proxy


__all__ = ["MouthFrame", "mouth_interior", "paint_mouth"]
