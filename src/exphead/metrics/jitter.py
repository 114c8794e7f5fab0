r"""Landmark jitter: how much a face shakes from frame to frame beyond its motion (lower is smoother).

Landmarks ``F x K x D`` of one clip (``D`` = 2 pixel coordinates, or 3; any source: mediapipe's 478-point
mesh, dlib's 68 iBUG points, ...) are aligned frame by frame to a reference shape by the least-squares
similarity transform (Umeyama 1991: rotation, uniform scale, translation). That removes the head's rigid
motion and the camera's zoom, so what is left is the face's change of shape. The reference is the clip's mean
aligned shape (generalised Procrustes, two rounds), scaled to unit inter-ocular distance, so the aligned
landmarks :math:`a_{t,k}` are in inter-ocular distances. The jitter of frame ``t`` is the mean norm of the
second temporal difference (the shape's acceleration):

.. math::
    J_t = \frac{1}{K}\sum_{k=1}^{K} \lVert a_{t+1,k} - 2 a_{t,k} + a_{t-1,k} \rVert_2 ,
    \qquad t = 1 \dots F-2 .

A shape changing at constant speed scores 0; flicker of lips, eyelids or contour that a generator (or a
tracker) adds scores high. Real expressions accelerate too, so a generated video is judged against its
driving video: :func:`jitter_ratio` is ``J(output) / J(driver)`` (1: as smooth as the driver; a still
video scores 0). Frames without a face carry NaN landmarks; the differences that touch them are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from exphead.geometry import similarity_transform
from exphead.metrics.frame_metric import Reduction, reduce_frames

EyeIndices = tuple[Sequence[int], Sequence[int]]
IBUG68_EYES: EyeIndices = (tuple(range(36, 42)), tuple(range(42, 48)))  # subject's right eye, left eye
MEDIAPIPE_EYES: EyeIndices = ((33, 133), (362, 263))  # eye corners of the 468 / 478-point face mesh


def default_eyes(num_points: int) -> EyeIndices:
    """The two eyes' landmark indices of a ``num_points``-point layout (68 iBUG, 468 / 478 mediapipe)."""
    if num_points == 68:
        return IBUG68_EYES
    if num_points in (468, 478):
        return MEDIAPIPE_EYES
    raise ValueError(f"no default eye landmarks for {num_points}-point landmarks: pass eyes=(indices of one eye, "
                     "indices of the other) for the inter-ocular distance")


def _check_landmarks(landmarks: Tensor) -> Tensor:
    if not isinstance(landmarks, Tensor) or landmarks.ndim != 3 or landmarks.shape[-1] not in (2, 3):
        shape = tuple(landmarks.shape) if isinstance(landmarks, Tensor) else type(landmarks).__name__
        raise ValueError(f"landmarks must be an F x K x 2 (or 3) tensor of one clip, got {shape}")
    if landmarks.shape[1] < 3:
        raise ValueError(f"need at least 3 landmarks per frame to align them, got {landmarks.shape[1]}")
    return landmarks.double()


def similarity_align(points: Tensor, reference: Tensor) -> Tensor:
    """Map each frame's points onto ``reference`` by its least-squares similarity transform (Umeyama).

    Args:
        points: ``F x K x D`` landmarks; frames holding a NaN stay NaN.
        reference: ``K x D`` target shape.

    Returns:
        ``F x K x D`` aligned landmarks.
    """
    out = torch.full_like(points, float("nan"))
    valid = points.isfinite().all(dim=2).all(dim=1)
    if not valid.any():
        return out
    p = points[valid]
    scale, rotation, translation = similarity_transform(p, reference)
    out[valid] = scale[:, None, None] * p @ rotation.transpose(1, 2) + translation[:, None]
    return out


def procrustes_reference(landmarks: Tensor, eyes: EyeIndices | None = None, rounds: int = 2) -> Tensor:
    """The clip's mean shape ``K x D`` (generalised Procrustes), centred, with unit inter-ocular distance.

    Raises:
        ValueError: no frame has finite landmarks, or the eyes coincide in the mean shape.
    """
    landmarks = _check_landmarks(landmarks)
    valid = landmarks.isfinite().all(dim=2).all(dim=1)
    if not valid.any():
        raise ValueError("no frame with finite landmarks: a reference shape needs at least one face")
    reference = landmarks[valid][0]
    for _ in range(rounds):
        reference = similarity_align(landmarks[valid], reference).mean(dim=0)
    right, left = eyes or default_eyes(landmarks.shape[1])
    iod = (reference[list(left)].mean(dim=0) - reference[list(right)].mean(dim=0)).norm()
    if iod < 1e-9:
        raise ValueError("the two eyes' landmarks coincide: check the eyes=(...) indices")
    return (reference - reference.mean(dim=0)) / iod


def landmark_jitter_per_frame(landmarks: Tensor, eyes: EyeIndices | None = None) -> Tensor:
    """Per-frame jitter ``F - 2`` (inter-ocular distances) of one clip's landmarks ``F x K x D``; NaN where a
    frame of the three has no face. ``eyes``: indices of the two eyes (default by K: 68 or 468 / 478 points)."""
    landmarks = _check_landmarks(landmarks)
    if landmarks.shape[0] < 3:
        return landmarks.new_empty(0)
    if not landmarks.isfinite().all(dim=2).all(dim=1).any():
        return landmarks.new_full((landmarks.shape[0] - 2,), float("nan"))
    aligned = similarity_align(landmarks, procrustes_reference(landmarks, eyes))
    second = aligned[2:] - 2 * aligned[1:-1] + aligned[:-2]
    return second.norm(dim=2).mean(dim=1)


def _jitter_update(landmarks: Tensor, eyes: EyeIndices | None) -> tuple[Tensor, Tensor]:
    """Sum of the finite per-frame jitters of a clip ``F x K x D`` (or clips ``B x F x K x D``) and their count."""
    clips = landmarks if landmarks.ndim == 4 else landmarks[None]
    values = torch.cat([landmark_jitter_per_frame(clip, eyes) for clip in clips])
    finite = values[values.isfinite()]
    return finite.sum(), torch.tensor(finite.numel())


def landmark_jitter(landmarks: Tensor, eyes: EyeIndices | None = None, reduction: Reduction = "mean") -> Tensor:
    r"""Jitter of one clip's landmarks: mean over frames of :math:`J_t` (module docstring), inter-ocular units.

    Args:
        landmarks: ``F x K x D`` landmarks of consecutive frames (NaN where no face was found).
        eyes: landmark indices of the two eyes; default by ``K`` (68 iBUG or the 468 / 478-point mesh).
        reduction: ``"mean"`` over the frames with a value (NaN if none) or ``"none"`` for the ``F - 2``
            per-frame values.

    Example:
        >>> import torch
        >>> base = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        >>> stretch = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, -1.0]]) * base
        >>> clip = torch.stack([base + 0.01 * (-1) ** t * stretch for t in range(6)])
        >>> round(landmark_jitter(clip, eyes=([0], [1])).item(), 4)
        0.02
    """
    values = landmark_jitter_per_frame(landmarks, eyes)
    if reduction == "mean":
        return values.nanmean() if values.numel() else values.new_tensor(float("nan"))
    return reduce_frames(values, reduction)


def jitter_ratio(output_landmarks: Tensor, driver_landmarks: Tensor, eyes: EyeIndices | None = None) -> Tensor:
    """Jitter of a generated clip relative to its driving clip: ``landmark_jitter(output) / landmark_jitter(driver)``.

    Both are ``F x K x D`` landmarks of the same source (the same layout). 1: as smooth as the driver; above 1:
    the output shakes more; 0: a still output.
    """
    return landmark_jitter(output_landmarks, eyes) / landmark_jitter(driver_landmarks, eyes)


class LandmarkJitter(Metric):
    r"""Mean landmark jitter :math:`J_t` over the frames of every clip seen (lower is smoother).

    ``update(landmarks)`` takes one clip ``F x K x D`` or clips ``B x F x K x D``; each clip is aligned on its
    own (module docstring). Frames whose value is NaN (no face) are not counted.

    Args:
        eyes: landmark indices of the two eyes; default by the number of landmarks.

    Example:
        >>> import torch
        >>> base = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        >>> metric = LandmarkJitter(eyes=([0], [1]))
        >>> metric.update(torch.stack([base * (1 + 0.1 * t) for t in range(5)]))  # zoom: no jitter
        >>> metric.compute()
        tensor(0., dtype=torch.float64)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    sum_value: Tensor
    num_frames: Tensor

    def __init__(self, eyes: EyeIndices | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.eyes = eyes
        self.add_state("sum_value", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_frames", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, landmarks: Tensor) -> None:
        """Add a clip ``F x K x D`` or clips ``B x F x K x D``."""
        total, count = _jitter_update(landmarks, self.eyes)
        self.sum_value = self.sum_value + total.to(self.sum_value)
        self.num_frames = self.num_frames + count.to(self.num_frames)

    def compute(self) -> Tensor:
        """Mean jitter over all counted frames (NaN before any)."""
        return self.sum_value / self.num_frames


class JitterRatio(Metric):
    r"""Jitter of generated clips relative to their driving clips: mean :math:`J_t` of ``preds`` over mean
    :math:`J_t` of ``target`` (1: as smooth as the driver).

    ``update(preds, target)`` takes the landmarks of a generated clip and of its driving clip, ``F x K x D``
    each (or ``B x F x K x D``).

    Args:
        eyes: landmark indices of the two eyes; default by the number of landmarks.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, eyes: EyeIndices | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.eyes = eyes
        for name in ("sum_preds", "sum_target"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("num_preds", "num_target"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add the landmarks of generated clips and of their driving clips."""
        for side, landmarks in (("preds", preds), ("target", target)):
            total, count = _jitter_update(landmarks, self.eyes)
            setattr(self, f"sum_{side}", getattr(self, f"sum_{side}") + total.to(torch.float64))
            setattr(self, f"num_{side}", getattr(self, f"num_{side}") + count)

    def compute(self) -> Tensor:
        """Mean generated jitter over mean driving jitter."""
        return (self.sum_preds / self.num_preds) / (self.sum_target / self.num_target)


__all__ = ["IBUG68_EYES", "MEDIAPIPE_EYES", "JitterRatio", "LandmarkJitter", "default_eyes", "jitter_ratio",
           "landmark_jitter", "landmark_jitter_per_frame", "procrustes_reference", "similarity_align"]
