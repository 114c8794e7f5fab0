"""The driver's motion on the target identity (paper Sec. 3.2-3.3; LivePortrait's retargeting options).

:func:`driving_params` turns a driver's tracked SMPL-X parameters into the target's: β is always the target's;
what else moves is set by :class:`Retargeting`:

* ``region``: ``all`` (expression and head pose), ``expression`` (the head stays in the target's pose),
  ``pose`` (the target keeps its own expression), ``lips`` / ``eyes`` (the expression of that region only: the
  caller blends the driven mesh into the still one with :meth:`exphead.head_model.HeadModel.region_weight`);
* ``motion``: ``relative`` — the driver's change from its origin frame added to the target's own expression and
  pose (the target keeps its resting face: a smiling portrait stays smiling where the driver is neutral), or
  ``absolute`` — the driver's expression and pose as they are. In self-reenactment the origin is the driving
  video's own reference frame (tracked with the rest of the video), so relative motion cancels whatever the
  single-image fit of that frame and the video's tracking disagree on (shape, placement);
* ``expression_scale``: how much of the driver's expression change arrives (1 = all of it).

The eye poses (the gaze, :mod:`exphead.tracking.gaze`) move with the expression: in every region but ``pose``
and ``lips``, relative or absolute, scaled like the rest of the expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from exphead.head_model import HeadParams, split_head_rotation
from exphead.personalized import PersonalizedHead
from exphead.rotations import compose_relative

Region = Literal["all", "expression", "pose", "lips", "eyes"]
Motion = Literal["relative", "absolute"]
BLENDED_REGIONS = ("lips", "eyes")


@dataclass
class Retargeting:
    """What of the driver's motion reaches the target.

    Attributes:
        region: all, expression (no head motion), pose (no expression), lips or eyes (that region's expression).
        motion: relative (the driver's change from its first frame, on the target's own face and pose) or
            absolute (the driver's expression and pose as they are).
        expression_scale: how much of the driver's expression arrives (1 = all of it).
    """

    region: Region = "all"
    motion: Motion = "relative"
    expression_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.region not in ("all", "expression", "pose", "lips", "eyes"):
            raise ValueError(f"region must be all, expression, pose, lips or eyes, got {self.region!r}")
        if self.motion not in ("relative", "absolute"):
            raise ValueError(f"motion must be relative or absolute, got {self.motion!r}")
        if not 0 <= self.expression_scale <= 5:
            raise ValueError(f"expression_scale must be in [0, 5], got {self.expression_scale}")


def _expand(t: Tensor, n: int) -> Tensor:
    return t[:1].expand(n, -1).clone()


def driving_params(target: PersonalizedHead, driving: HeadParams, origin: HeadParams | None = None,
                   retarget: Retargeting | None = None) -> HeadParams:
    """The driver's ``F`` frames of parameters on the target identity (see the module docstring).

    Args:
        target: the target's fitted head; its frame 0 is its own expression and pose.
        driving: the driver's tracked parameters.
        origin: the driver's frame that relative motion starts from (default: the first of ``driving``; a video
            driven in chunks passes its frame 0, self-reenactment the reference frame).
        retarget: region, relative / absolute motion and expression scale.
    """
    r = retarget or Retargeting()
    n = driving.batch_size
    ref = target.params.map(lambda v: v[:1].to(driving.expression))
    origin = origin.map(lambda v: v.to(driving.expression)) if origin is not None else driving.map(lambda v: v[:1])
    absolute = r.motion == "absolute"
    p = driving.map(lambda v: v.clone())
    p.betas = _expand(ref.betas, n)
    s = r.expression_scale
    for name in ("expression", "jaw_pose", "leye_pose", "reye_pose"):
        still = r.region == "pose" or (r.region == "lips" and name.endswith("eye_pose"))
        if still:
            value = _expand(getattr(ref, name), n)
        elif absolute:
            value = s * getattr(driving, name)
        else:
            value = getattr(ref, name) + s * (getattr(driving, name) - getattr(origin, name))
        setattr(p, name, value)
    if r.region in ("expression", *BLENDED_REGIONS):
        for name in ("global_orient", "neck_pose", "head_pose", "transl"):
            setattr(p, name, _expand(getattr(ref, name), n))
    elif not absolute:
        ref_rot = (ref.neck_pose + ref.head_pose).expand(n, -1)
        rot = driving.neck_pose + driving.head_pose
        rot0 = (origin.neck_pose + origin.head_pose).expand(n, -1)
        p.neck_pose, p.head_pose = split_head_rotation(compose_relative(ref_rot, rot, rot0))
        p.transl = ref.transl + (driving.transl - origin.transl[:1]) * (ref.transl[0, 2] / origin.transl[0, 2])
        p.global_orient = _expand(ref.global_orient, n)
    return p


def still_params(target: PersonalizedHead, n: int) -> HeadParams:
    """``n`` frames of the target as it is in its own frame 0 (what a blended region moves against)."""
    return target.params.map(lambda v: _expand(v, n))


__all__ = ["BLENDED_REGIONS", "Motion", "Region", "Retargeting", "driving_params", "still_params"]
