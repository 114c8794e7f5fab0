"""Readable expression and pose channels of mediapipe's 478-point face mesh, and how well an output follows a driver.

:func:`face_channels` turns a clip's mesh points into a few time series a person would judge an animation by:

* ``mouth`` — the inner-lip gap: mean over the pairs (82, 87), (13, 14), (312, 317) (upper / lower inner lip,
  left of centre, centre, right of centre) of the upper point's height above the lower one.
* ``eye`` — the eyelid gap, mean over both eyes (blinks show as dips): subject's right eye (160, 144),
  (159, 145), (158, 153); subject's left eye (385, 380), (386, 374), (387, 373) (upper / lower lid).
* ``brow`` — brow height: mean over both sides of the height of the middle of the upper brow contour (right
  105, 66; left 334, 296) above its eye's centre (mean of the corners 33, 133 and 362, 263).
* ``gaze`` — where the irises sit, sideways: mean over both eyes of the iris centre's (468 with the corners 33,
  133; 473 with 362, 263) offset in the image from the midpoint of its eye's corners, along the line of the corners
  (positive: towards the image's right), over the eye's width. What a viewer sees; a head turn moves it too (the
  iris lies in front of the corners).
* ``gaze_in_head`` (3D points only) — the eyes' own yaw in the head, in degrees: ``gaze`` with the head's
  ``yaw`` taken out by the eyeball model of :func:`exphead.tracking.gaze.eye_yaw` (a sphere of 0.4 eye widths
  centred between the corners), so eyes that hold still in a turning head read constant and eyes that keep
  looking at the camera read minus the head's yaw.

Heights are measured along the face's "up" axis: the y axis of
:func:`~exphead.metrics.mediapipe_motion.head_frame` (from the nose wings to the forehead, orthogonal to the
subject's right-to-left axis). They are divided by the same frame's inter-ocular distance (between the eye
centres), so they do not change with the face's size in the image. With 3D points (``F x 478 x 3`` as
:meth:`~exphead.metrics.mediapipe_motion.MediaPipeMotionExtractor.landmarks` returns them: pixels, y up, z to
the camera) the frame is the 3D head frame, so yaw and pitch do not shrink the inter-ocular distance, and the
head pose is read too:

* ``roll`` — the tilt of the eye line in the image plane, ``atan2(x_y, x_x)`` of the head's x axis;
* ``yaw`` — ``atan2(z_x, z_z)``, ``pitch`` — ``atan2(z_y, |(z_x, z_z)|)`` of the head's z axis (the face's
  normal); all in degrees. A frontal face reads a few degrees of pitch (see ``head_frame``), the same offset
  for every frame.

With 2D pixel points (``F x 478 x 2``) the frame is the one in the image plane (only the distance channels).

:func:`ibug_channels` reads ``mouth``, ``eye`` and ``brow`` the same way from 68 iBUG points (dlib's in the image,
or a mesh's in 3D): inner lips (61, 67), (62, 66), (63, 65); lids (37, 41), (38, 40), (43, 47),
(44, 46); the middle of each brow (18-20, 23-25) above its eye's centre (36-41, 42-47). This puts the tracker's
input and the mesh it drives on the same scale as the judge, to see at which stage a channel is lost.
:func:`ibug_head_frame` reads a 3D mesh's head frame from its iBUG points, and :func:`head_angles` turns any head
frame into ``roll`` / ``yaw`` / ``pitch`` as above, for the mesh's pose on the judge's scale.

:func:`channel_agreement` compares an output's channels with its driver's: the Pearson correlation of the two
time series and the range ratio ``(p95 - p5 of the output) / (p95 - p5 of the driver)`` (1: the output moves as
much as the driver; 0: it does not move).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from exphead.metrics.mediapipe_motion import EYE_CENTRES, head_frame
from exphead.rotations import matrix_to_euler
from exphead.tracking.gaze import eye_axes, eye_yaw

INNER_LIPS = ((82, 87), (13, 14), (312, 317))  # (upper inner lip, lower inner lip)
EYELIDS = ((160, 144), (159, 145), (158, 153), (385, 380), (386, 374), (387, 373))  # (upper lid, lower lid)
BROWS = (((105, 66), EYE_CENTRES[0]), ((334, 296), EYE_CENTRES[1]))  # (upper-brow points, eye corners) per side
DISTANCE_CHANNELS = ("mouth", "eye", "brow", "gaze")
HEAD_CHANNELS = ("gaze_in_head",)  # read with the head pose, from 3D points only
IRISES = ((468, EYE_CENTRES[0]), (473, EYE_CENTRES[1]))  # (iris centre, eye corners) per side
POSE_CHANNELS = ("roll", "yaw", "pitch")
IBUG_INNER_LIPS = ((61, 67), (62, 66), (63, 65))
IBUG_EYELIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
IBUG_BROWS = ((slice(18, 21), slice(36, 42)), (slice(23, 26), slice(42, 48)))  # (brow middle, eye) per side


def _check(landmarks: Tensor) -> Tensor:
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 3 or landmarks.shape[1:] not in ((478, 2), (478, 3)):
        shape = tuple(landmarks.shape) if isinstance(landmarks, Tensor) else type(landmarks).__name__
        raise ValueError(f"landmarks must be F x 478 x 2 (or 3) mediapipe face-mesh points, got {shape}")
    return landmarks.double()


def _heights(points: Tensor, up: Tensor, pairs: tuple[tuple[int, int], ...]) -> Tensor:
    """Mean over ``pairs`` of ``(points[a] - points[b]) . up``: ``N x 478 x 3``, ``N x 3`` -> ``N``."""
    gaps = torch.stack([((points[:, a] - points[:, b]) * up).sum(dim=-1) for a, b in pairs])
    return gaps.mean(dim=0)


def face_channels(landmarks: Tensor) -> dict[str, Tensor]:
    """The channels (module docstring) of one clip's mesh points.

    Args:
        landmarks: ``F x 478 x 2`` pixel points or ``F x 478 x 3`` 3D points (y up, z to the camera); frames
            without a face hold NaN.

    Returns:
        ``{"mouth", "eye", "brow"}`` (inter-ocular units) and ``"gaze"`` (eye widths), plus ``{"gaze_in_head",
        "roll", "yaw", "pitch"}`` (degrees) for 3D points: ``F`` float64 tensors, NaN where a frame has no face.
    """
    points = _check(landmarks)
    three_d = points.shape[-1] == 3
    if not three_d:
        points = torch.cat([points, torch.zeros_like(points[..., :1])], dim=-1)
    names = DISTANCE_CHANNELS + (HEAD_CHANNELS + POSE_CHANNELS if three_d else ())
    out = {name: points.new_full((points.shape[0],), float("nan")) for name in names}
    valid = points.isfinite().all(dim=2).all(dim=1)
    if not valid.any():
        return out
    p = points[valid]
    rotation, _, iod = head_frame(p)
    up = rotation[..., 1]
    out["mouth"][valid] = _heights(p, up, INNER_LIPS) / iod
    out["eye"][valid] = _heights(p, up, EYELIDS) / iod
    brows = [((p[:, list(brow)].mean(dim=1) - p[:, list(eye)].mean(dim=1)) * up).sum(dim=-1) for brow, eye in BROWS]
    out["brow"][valid] = (brows[0] + brows[1]) / 2 / iod
    gaze = []
    for iris, (a, b) in IRISES:
        mid, along, _, width = eye_axes(p[:, [a, a, a, b, b, b], :2])  # the corners at places 0 and 3
        gaze.append(((p[:, iris, :2] - mid) * along).sum(dim=-1) / width.clamp_min(1e-9))
    out["gaze"][valid] = (gaze[0] + gaze[1]) / 2
    if three_d:
        for name, values in head_angles(rotation).items():
            out[name][valid] = values
        out["gaze_in_head"][valid] = eye_yaw(out["gaze"][valid], out["yaw"][valid] * (math.pi / 180)) * (180 / math.pi)
    return out


def ibug_channels(landmarks: Tensor) -> dict[str, Tensor]:
    """``mouth``, ``eye`` and ``brow`` (module docstring) of iBUG points: ``F x 68 x 2`` in the image (x right,
    y down; heights perpendicular to the line through the eye centres) or ``F x 68 x 3`` in any frame (a mesh's;
    heights along the nose bridge, 33 -> 27, made perpendicular to that line, so a pitching head does not shorten
    them), over the eye centres' distance; ``F`` float64 tensors, NaN where a frame holds NaN."""
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 3 or landmarks.shape[1:] not in ((68, 2), (68, 3)):
        shape = tuple(landmarks.shape) if isinstance(landmarks, Tensor) else type(landmarks).__name__
        raise ValueError(f"landmarks must be F x 68 x 2 (or 3) iBUG points, got {shape}")
    points = landmarks.double()
    right, left = points[:, 36:42].mean(dim=1), points[:, 42:48].mean(dim=1)
    iod = (left - right).norm(dim=-1)
    x = (left - right) / iod[:, None]
    if points.shape[-1] == 2:
        up = torch.stack([x[:, 1], -x[:, 0]], dim=-1)  # image y points down: "up" is x turned by -90 degrees
    else:
        up = points[:, 27] - points[:, 33]
        up = up - x * (x * up).sum(dim=-1, keepdim=True)
        up = up / up.norm(dim=-1, keepdim=True)

    def height(a: Tensor, b: Tensor) -> Tensor:
        return ((a - b) * up).sum(dim=-1) / iod

    def mean_height(pairs: tuple[tuple[int, int], ...]) -> Tensor:
        return sum(height(points[:, a], points[:, b]) for a, b in pairs) / len(pairs)

    brows = [height(points[:, brow].mean(dim=1), points[:, eye].mean(dim=1)) for brow, eye in IBUG_BROWS]
    return {"mouth": mean_height(IBUG_INNER_LIPS), "eye": mean_height(IBUG_EYELIDS), "brow": (brows[0] + brows[1]) / 2}


def head_angles(rotation: Tensor) -> dict[str, Tensor]:
    """``roll``, ``yaw`` and ``pitch`` (degrees, module docstring) of head frames ``... x 3 x 3`` whose columns are
    the head's x (subject's right to left), y (up) and z (out of the face) axes in a camera frame with y up and z
    to the camera. Yaw and pitch are :func:`exphead.rotations.matrix_to_euler`'s (pitch with the sign of the face
    looking up); roll is the eye line's tilt in the image, not the Euler roll."""
    degrees = 180 / math.pi
    x = rotation[..., 0]
    yaw, pitch, _ = (matrix_to_euler(rotation) * degrees).unbind(-1)  # the face normal's azimuth and -elevation
    return {"roll": torch.atan2(x[..., 1], x[..., 0]) * degrees, "yaw": yaw, "pitch": -pitch}


def ibug_head_frame(landmarks: Tensor) -> Tensor:
    """The head frame ``F x 3 x 3`` (columns x, y, z as :func:`head_angles` takes them) of 3D iBUG points
    ``F x 68 x 3`` in a camera frame with y up and z to the camera: x from the right eye's centre (36-41) to the
    left's (42-47), y along the nose bridge (33 -> 27) made perpendicular to x, z = x cross y. The nose bridge
    leans forward from the face's plane, so this frame differs from mediapipe's
    (:func:`~exphead.metrics.mediapipe_motion.head_frame`) by a constant turn about x; compare the two after
    removing it on one frame both read."""
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 3 or landmarks.shape[1:] != (68, 3):
        shape = tuple(landmarks.shape) if isinstance(landmarks, Tensor) else type(landmarks).__name__
        raise ValueError(f"landmarks must be F x 68 x 3 iBUG points, got {shape}")
    points = landmarks.double()
    x = points[:, 42:48].mean(dim=1) - points[:, 36:42].mean(dim=1)
    x = x / x.norm(dim=-1, keepdim=True)
    y = points[:, 27] - points[:, 33]
    y = y - x * (x * y).sum(dim=-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True)
    return torch.stack([x, y, torch.linalg.cross(x, y)], dim=-1)


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two ``F`` series over the frames where both are finite (NaN when fewer than 3
    such frames or when either series is constant)."""
    ok = a.isfinite() & b.isfinite()
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok].double(), b[ok].double()
    if any(x.std() <= 1e-9 * max(1.0, float(x.abs().max())) for x in (a, b)):  # constant up to rounding
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.pow(2).sum() * b.pow(2).sum()).sqrt())


def spread(values: Tensor, low: float = 0.05, high: float = 0.95) -> float:
    """``quantile(high) - quantile(low)`` of the finite values of an ``F`` series (NaN if none)."""
    finite = values[values.isfinite()].double()
    if finite.numel() == 0:
        return float("nan")
    return float(torch.quantile(finite, high) - torch.quantile(finite, low))


def channel_agreement(output: dict[str, Tensor], driver: dict[str, Tensor]) -> dict[str, float]:
    """How an output's channels follow its driver's (both from :func:`face_channels`, frame for frame).

    Returns:
        for each channel in both: ``"<name>_corr"`` (Pearson correlation over the frames where both have a
        face; NaN if the output is still) and ``"<name>_range"`` (p95 - p5 of the output over p95 - p5 of
        the driver, each over its own frames with a face).

    Raises:
        ValueError: the two hold a channel with different frame counts.
    """
    result: dict[str, float] = {}
    for name in (n for n in output if n in driver):
        if output[name].shape != driver[name].shape:
            raise ValueError(f"channel {name!r}: output has {tuple(output[name].shape)} frames, driver "
                             f"{tuple(driver[name].shape)}")
        result[f"{name}_corr"] = pearson(output[name], driver[name])
        base = spread(driver[name])
        result[f"{name}_range"] = spread(output[name]) / base if base > 0 else float("nan")
    return result


__all__ = ["BROWS", "DISTANCE_CHANNELS", "EYELIDS", "INNER_LIPS", "POSE_CHANNELS", "channel_agreement",
           "face_channels", "head_angles", "ibug_channels", "ibug_head_frame", "pearson", "spread"]
