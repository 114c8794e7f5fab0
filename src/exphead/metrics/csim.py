"""CSIM: identity preservation as the cosine similarity of face-recognition embeddings (paper Sec. 4.1).

Values depend on the embedder: CSIM from different embedders is not comparable, and the default
(dlib's ResNet descriptor) is not comparable to the paper's ArcFace numbers. dlib descriptors are
not centred, so even different people score ~0.8 (0.84 on average for LFW faces against the
astronaut); the same face under small changes scores > 0.99.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from torchmetrics import Metric

from exphead.metrics.face_embedding import DlibFaceEmbedder, FaceEmbedder
from exphead.metrics.frame_metric import Reduction, frame_pair

log = logging.getLogger(__name__)


def cosine_similarity_per_frame(pred_embeddings: Tensor, target_embeddings: Tensor) -> Tensor:
    """Cosine similarity of embedding rows: ``N x D`` and ``N x D`` (or ``1 x D``) -> ``N``."""
    return torch.nn.functional.cosine_similarity(pred_embeddings, target_embeddings, dim=-1, eps=1e-12)


def csim_per_frame(preds: Tensor, target: Tensor, embedder: FaceEmbedder) -> Tensor:
    """Per-frame CSIM ``N``, NaN where the generated frame or its reference has no face.

    Args:
        preds: generated frames ``N x 3 x H x W`` (or videos ``B x F x 3 x H x W``) in ``[0, 1]``.
        target: reference frames of the same shape, or one reference image ``1 x 3 x H' x W'``.
        embedder: a :class:`~exphead.metrics.face_embedding.FaceEmbedder`.
    """
    preds, target = frame_pair(preds, target, broadcast_target=True)
    pred, ref = embedder(preds), embedder(target)  # a single reference is embedded once
    similarity = cosine_similarity_per_frame(pred.embeddings, ref.embeddings).expand(preds.shape[0])
    valid = (pred.has_face & ref.has_face).expand(preds.shape[0])
    return torch.where(valid, similarity, torch.full_like(similarity, float("nan")))


def csim_update(preds: Tensor, target: Tensor, embedder: FaceEmbedder) -> tuple[Tensor, Tensor, Tensor]:
    """Sum of per-frame CSIM over frames where both images have a face, that count, and the rest.

    Returns:
        ``(sum_similarity, num_with_face, num_no_face)`` as scalar tensors (arguments as
        :func:`csim_per_frame`).
    """
    values = csim_per_frame(preds, target, embedder)
    valid = ~values.isnan()
    num_valid = valid.sum()
    return values[valid].sum(), num_valid, values.numel() - num_valid


def csim(
    preds: Tensor, target: Tensor, embedder: FaceEmbedder | None = None, reduction: Reduction = "mean"
) -> Tensor:
    r"""Mean cosine similarity of face embeddings over the frames where both images show a face.

    .. math::
        \mathrm{CSIM} = \frac{1}{|V|}\sum_{n \in V}
        \frac{e(\hat I_n)^\top e(I_n)}{\lVert e(\hat I_n)\rVert\,\lVert e(I_n)\rVert}

    with :math:`e` the embedder and :math:`V` the frames where a face is found in both images
    (the others are logged; :class:`CSIM` counts them). NaN when :math:`V` is empty. Values from
    different embedders are not comparable (dlib's default is not comparable to ArcFace CSIM).

    Args:
        preds: generated frames ``N x 3 x H x W`` (or videos ``B x F x 3 x H x W``) in ``[0, 1]``.
        target: reference frames of the same shape (self-reenactment: the ground truth), or one
            reference image ``1 x 3 x H' x W'`` (cross-reenactment: the source portrait).
        embedder: defaults to :class:`~exphead.metrics.face_embedding.DlibFaceEmbedder`.
        reduction: ``"mean"`` over frames with faces, or ``"none"`` for the ``N`` per-frame values
            (NaN where a face is missing).

    Example:
        >>> import torch, skimage.data
        >>> face = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None] / 255
        >>> round(csim(face, face).item(), 4)
        1.0
    """
    values = csim_per_frame(preds, target, embedder or DlibFaceEmbedder())
    num_no_face = int(values.isnan().sum())
    if num_no_face > 0:
        log.warning("CSIM: %d of %d frames have no face and are left out", num_no_face, values.numel())
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.nanmean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


class CSIM(Metric):
    r"""Identity similarity: mean cosine similarity of face embeddings (higher is better).

    .. math::
        \mathrm{CSIM} = \frac{1}{|V|}\sum_{n \in V}
        \frac{e(\hat I_n)^\top e(I_n)}{\lVert e(\hat I_n)\rVert\,\lVert e(I_n)\rVert}

    ``update(preds, target)`` takes generated frames ``N x 3 x H x W`` (or videos) and their
    references of the same shape, or a single reference image ``1 x 3 x H' x W'``. Frames where the
    generated image or its reference has no face are not averaged but counted in the state
    ``num_no_face`` (logged by :meth:`compute`); ``num_frames`` counts the averaged ones.

    CSIM values from different embedders are not comparable; the default (dlib's ResNet descriptor,
    the one shipped in a PyPI package) is not comparable to the paper's ArcFace numbers — pass an
    :class:`~exphead.metrics.face_embedding.ArcFaceOnnxEmbedder` for those.

    Args:
        embedder: a :class:`~exphead.metrics.face_embedding.FaceEmbedder`; defaults to
            :class:`~exphead.metrics.face_embedding.DlibFaceEmbedder` (MTCNN detection).

    Example:
        >>> import torch, skimage.data
        >>> face = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None] / 255
        >>> metric = CSIM()
        >>> metric.update(torch.cat([face, torch.zeros_like(face)]), face)
        >>> round(metric.compute().item(), 4), int(metric.num_no_face)
        (1.0, 1)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    sum_similarity: Tensor
    num_frames: Tensor
    num_no_face: Tensor

    def __init__(self, embedder: FaceEmbedder | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.embedder = embedder or DlibFaceEmbedder()
        self.add_state("sum_similarity", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("num_frames", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("num_no_face", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add generated frames and their references (or one reference image)."""
        total, num_valid, num_no_face = csim_update(preds, target, self.embedder)
        self.sum_similarity = self.sum_similarity + total.to(self.sum_similarity)
        self.num_frames = self.num_frames + num_valid.to(self.num_frames)
        self.num_no_face = self.num_no_face + num_no_face.to(self.num_no_face)

    def compute(self) -> Tensor:
        """Mean CSIM over the frames with a face in both images (NaN if there are none)."""
        if self.num_no_face > 0:
            log.warning("CSIM: %d of %d frames have no face and are left out", int(self.num_no_face),
                        int(self.num_frames + self.num_no_face))
        return self.sum_similarity / self.num_frames


__all__ = ["CSIM", "cosine_similarity_per_frame", "csim", "csim_per_frame", "csim_update"]
