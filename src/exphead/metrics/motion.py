r"""Motion accuracy (paper Sec. 4.1): AED (expression) and APD (head pose) between generated and driving frames.

Both metrics run a :class:`MotionExtractor` — exphead's SMPL-X tracker in practice — on the generated
and on the driving frames, and compare the parameters frame by frame:

* **AED** — mean absolute difference of the expression vector, averaged over its coefficients and
  then over frames (an L1 distance normalised by the vector length). The vector is SMPL-X's
  expression coefficients :math:`\psi` (100 or fewer, unitless PCA weights) followed by the jaw pose
  (axis-angle, 3 values in radians), exactly as the extractor returns it in ``expression``.
  L1 rather than L2: it is the convention of the AED figures we compare against (mean absolute
  difference of 3DMM expression coefficients), it is less dominated by a few large coefficients, and
  per-coefficient normalisation keeps the scale independent of how many coefficients are tracked.
* **APD** — head-pose distance in radians, by default (``"l1"``) the mean absolute difference of the
  three axis-angle components of the global head rotation (for near-frontal heads these are
  pitch, yaw and roll); ``"geodesic"`` gives the rotation angle of :math:`R_{\hat p}^\top R_p`
  instead. Translation is ignored (it depends on the camera and the crop).

Other papers (LivePortrait, X-NeMo and similar) extract these parameters with EMOCA / DECA, i.e.
FLAME's 50 (or 100) expression coefficients and FLAME's pose, from a different regressor; numbers from
our SMPL-X tracker therefore differ in scale and in what "expression" covers, and are comparable only
across methods evaluated with the same extractor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from smplx.lbs import batch_rodrigues
from torch import Tensor

from exphead.metrics.frame_metric import FrameAveragedMetric

PoseDistance = Literal["l1", "geodesic"]


class MotionParameters(Protocol):
    """What an extractor returns for ``B`` frames.

    Attributes:
        expression: ``B x E`` SMPL-X expression coefficients :math:`\\psi` (E <= 100) followed by the
            jaw pose as axis-angle (3, radians).
        head_pose: ``B x 3`` global head rotation, axis-angle in radians.
    """

    expression: Tensor
    head_pose: Tensor


class MotionExtractor(Protocol):
    """Callable that estimates :class:`MotionParameters` of frames ``B x 3 x H x W`` in ``[0, 1]``."""

    def __call__(self, frames: Tensor) -> MotionParameters: ...


@dataclass
class MotionEstimate:
    """A plain :class:`MotionParameters`: ``expression`` ``B x E``, ``head_pose`` ``B x 3``, optional
    ``translation`` ``B x 3`` (metres, not used by APD)."""

    expression: Tensor
    head_pose: Tensor
    translation: Tensor | None = None


def _check_pair(pred: Tensor, target: Tensor, name: str, width: int | None = None) -> None:
    if pred.shape != target.shape or pred.ndim != 2 or (width is not None and pred.shape[1] != width):
        wanted = f"B x {width}" if width is not None else "B x E"
        raise ValueError(
            f"{name}: expected two {wanted} tensors of the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}."
        )


def expression_distance(pred_expression: Tensor, target_expression: Tensor) -> Tensor:
    """Per-frame mean absolute difference of expression vectors: ``B x E`` and ``B x E`` -> ``B``."""
    _check_pair(pred_expression, target_expression, "expression")
    return (pred_expression - target_expression).abs().mean(dim=1)


def rotation_angle_between(pred_pose: Tensor, target_pose: Tensor) -> Tensor:
    """Geodesic angle (radians, in ``[0, pi]``) between axis-angle rotations ``B x 3`` -> ``B``."""
    relative = batch_rodrigues(pred_pose).transpose(1, 2) @ batch_rodrigues(target_pose)
    trace = relative.diagonal(dim1=1, dim2=2).sum(dim=1)
    skew = relative - relative.transpose(1, 2)
    sine = 0.5 * torch.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], dim=1).norm(dim=1)
    return torch.atan2(sine, 0.5 * (trace - 1.0))


def pose_distance(pred_pose: Tensor, target_pose: Tensor, distance: PoseDistance = "l1") -> Tensor:
    """Per-frame head-pose distance in radians: ``B x 3`` axis-angle pairs -> ``B``.

    ``"l1"``: mean absolute difference of the three axis-angle components; ``"geodesic"``: angle of
    the relative rotation.
    """
    _check_pair(pred_pose, target_pose, "head_pose", width=3)
    if distance == "l1":
        return (pred_pose - target_pose).abs().mean(dim=1)
    if distance == "geodesic":
        return rotation_angle_between(pred_pose, target_pose)
    raise ValueError(f"distance must be 'l1' or 'geodesic', got {distance!r}.")


def aed(pred_expression: Tensor, target_expression: Tensor) -> Tensor:
    r"""Average expression distance of parameters (see the module docstring for the vector).

    .. math::
        \mathrm{AED} = \frac{1}{N}\sum_{n=1}^{N} \frac{1}{E}\lVert \hat\psi_n - \psi_n \rVert_1

    Args:
        pred_expression: ``N x E`` expression vectors of the generated frames.
        target_expression: ``N x E`` expression vectors of the driving frames.

    Example:
        >>> import torch
        >>> aed(torch.tensor([[0.5, -0.5, 0.0]]), torch.zeros(1, 3))
        tensor(0.3333)
    """
    return expression_distance(pred_expression, target_expression).mean()


def apd(pred_pose: Tensor, target_pose: Tensor, distance: PoseDistance = "l1") -> Tensor:
    r"""Average pose distance of axis-angle head rotations, in radians.

    .. math::
        \mathrm{APD}_{\ell_1} = \frac{1}{N}\sum_{n=1}^{N} \frac{1}{3}\lVert \hat\omega_n - \omega_n \rVert_1,
        \qquad
        \mathrm{APD}_{\mathrm{geo}} = \frac{1}{N}\sum_{n=1}^{N}
        \angle\big(R(\hat\omega_n)^\top R(\omega_n)\big)

    Args:
        pred_pose: ``N x 3`` head rotations of the generated frames (axis-angle).
        target_pose: ``N x 3`` head rotations of the driving frames.
        distance: ``"l1"`` (default) or ``"geodesic"``.

    Example:
        >>> import torch
        >>> apd(torch.tensor([[0.0, 0.3, 0.0]]), torch.zeros(1, 3), distance="geodesic")
        tensor(0.3000)
    """
    return pose_distance(pred_pose, target_pose, distance).mean()


class AED(FrameAveragedMetric):
    r"""Average expression distance between generated and driving frames (lower is better).

    .. math::
        \mathrm{AED} = \frac{1}{N}\sum_{n=1}^{N} \frac{1}{E}\lVert \hat\psi_n - \psi_n \rVert_1

    with :math:`\hat\psi_n, \psi_n` the ``expression`` vectors (SMPL-X :math:`\psi` then jaw
    axis-angle) that ``extractor`` estimates on the generated and driving frame ``n``. Not comparable
    to AED computed with EMOCA / DECA (module docstring).

    Args:
        extractor: a :class:`MotionExtractor` (exphead's tracker).

    Example:
        >>> import torch
        >>> extractor = lambda frames: MotionEstimate(frames.mean((2, 3)), torch.zeros(len(frames), 3))
        >>> metric = AED(extractor)
        >>> metric.update(torch.full((2, 3, 8, 8), 0.5), torch.full((2, 3, 8, 8), 0.25))
        >>> metric.compute()
        tensor(0.2500)
    """

    is_differentiable = False
    higher_is_better = False

    def __init__(self, extractor: MotionExtractor, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.extractor = extractor

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-frame expression distance ``N`` of generated and driving frames ``N x 3 x H x W``."""
        return expression_distance(self.extractor(preds).expression, self.extractor(target).expression)


class APD(FrameAveragedMetric):
    r"""Average head-pose distance between generated and driving frames, radians (lower is better).

    .. math::
        \mathrm{APD} = \frac{1}{N}\sum_{n=1}^{N} \frac{1}{3}\lVert \hat\omega_n - \omega_n \rVert_1

    with :math:`\hat\omega_n, \omega_n` the axis-angle ``head_pose`` that ``extractor`` estimates on
    the generated and driving frame ``n`` (or, with ``distance="geodesic"``, the angle of
    :math:`R(\hat\omega_n)^\top R(\omega_n)`).

    Args:
        extractor: a :class:`MotionExtractor` (exphead's tracker).
        distance: ``"l1"`` (default) or ``"geodesic"``.

    Example:
        >>> import torch
        >>> extractor = lambda frames: MotionEstimate(torch.zeros(len(frames), 4), frames.mean((2, 3)))
        >>> metric = APD(extractor)
        >>> metric.update(torch.full((2, 3, 8, 8), 0.5), torch.full((2, 3, 8, 8), 0.25))
        >>> metric.compute()
        tensor(0.2500)
    """

    is_differentiable = False
    higher_is_better = False

    def __init__(self, extractor: MotionExtractor, distance: PoseDistance = "l1", **kwargs: object) -> None:
        super().__init__(**kwargs)
        if distance not in ("l1", "geodesic"):
            raise ValueError(f"distance must be 'l1' or 'geodesic', got {distance!r}.")
        self.extractor = extractor
        self.distance = distance

    def per_frame(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-frame pose distance ``N`` of generated and driving frames ``N x 3 x H x W``."""
        return pose_distance(self.extractor(preds).head_pose, self.extractor(target).head_pose, self.distance)


__all__ = [
    "AED",
    "APD",
    "MotionEstimate",
    "MotionExtractor",
    "MotionParameters",
    "aed",
    "apd",
    "expression_distance",
    "pose_distance",
    "rotation_angle_between",
]
