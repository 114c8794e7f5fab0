"""Face detection for the identity metric (CSIM): one face per frame, a box and five landmarks.

Two detectors whose weights ship inside PyPI packages (nothing is downloaded):

* ``"mtcnn"`` — facenet-pytorch's MTCNN (default). Measured on ``skimage.data.astronaut()``
  (2 CPU cores): it finds the face at 512² and after downscaling to 256², rotation by 20-40°,
  shift and brightening, finds the 3/4-view face of ``skimage.data.camera()`` and 98 of the 100
  LFW faces of ``skimage.data.lfw_subset()`` (upscaled to 200²); 50-150 ms per 512² frame with
  facenet-pytorch's ``min_face_size=20``, about half that with our default of 40 px.
* ``"dlib"`` — exphead's tracker detector: dlib's HOG frontal face detector (here without upsampling)
  with the 68-point shape predictor of ``face_recognition_models``: 20-30 ms per 512² frame, but it
  misses the astronaut at 256², the camera-man, and 11 of the 100 LFW faces.

Landmarks follow ArcFace's order, in pixels ``(x, y)`` with ``x`` the column: the eye on the image's
left, the eye on the image's right, the nose tip, the mouth corner on the image's left, the one on
the right.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    import dlib

    from exphead.tracking.landmarks import DlibLandmarkDetector

DetectorName = Literal["mtcnn", "dlib"]


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float pixels ``x0, y0, x1, y1``.
        landmarks: ``(5, 2)`` float pixels ``(x, y)`` in ArcFace order (module docstring).
        score: detector confidence (MTCNN probability, or dlib's HOG score).
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float


class FaceDetector(Protocol):
    """Finds the main face in each image ``B x H x W x 3`` uint8 RGB; ``None`` where there is none."""

    def __call__(self, images: np.ndarray) -> list[FaceDetection | None]: ...


def to_uint8_images(frames: Tensor) -> np.ndarray:
    """Frames ``N x 3 x H x W`` float in ``[0, 1]`` -> contiguous ``N x H x W x 3`` uint8 RGB array."""
    images = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())


@lru_cache(maxsize=4)
def _mtcnn(device: str, min_face_size: int) -> torch.nn.Module:
    from facenet_pytorch import MTCNN

    return MTCNN(min_face_size=min_face_size, select_largest=True, device=torch.device(device)).eval()


@lru_cache(maxsize=4)
def _landmark_detector(upsample: int) -> DlibLandmarkDetector:
    from exphead.tracking.landmarks import DlibLandmarkDetector

    return DlibLandmarkDetector(upsample=upsample)


@lru_cache(maxsize=1)
def dlib_five_point_predictor() -> dlib.shape_predictor:
    """dlib's 5-point shape predictor from the ``face_recognition_models`` package (cached)."""
    import dlib
    import face_recognition_models

    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


class MTCNNFaceDetector:
    """facenet-pytorch's MTCNN (weights inside the package); keeps the largest face of each image.

    Args:
        min_face_size: smallest face searched, in pixels. 40 (facenet-pytorch uses 20) halves the
            time on 512² portraits and still finds every face of the tests in the module docstring.
        device: where the three small MTCNN networks run.
    """

    def __init__(self, min_face_size: int = 40, device: str = "cpu") -> None:
        self.min_face_size = min_face_size
        self.device = device

    def __call__(self, images: np.ndarray) -> list[FaceDetection | None]:
        """Detect on ``B x H x W x 3`` uint8 RGB images (one batched pass)."""
        boxes, probs, points = _mtcnn(self.device, self.min_face_size).detect(images, landmarks=True)
        detections: list[FaceDetection | None] = []
        for box, prob, point in zip(boxes, probs, points):
            if box is None:
                detections.append(None)
                continue
            detections.append(
                FaceDetection(
                    box=np.asarray(box[0], dtype=np.float64),
                    landmarks=np.asarray(point[0], dtype=np.float64),
                    score=float(prob[0]),
                )
            )
        return detections


class DlibFaceDetector:
    """The tracker's dlib models (:class:`exphead.tracking.landmarks.DlibLandmarkDetector`: HOG frontal face
    detector and 68-point shape predictor), keeping the face of highest detection score.

    The tracker's own ``boxes`` keeps the largest box instead; HOG boxes of one pyramid level all have
    the same size, and on the shifted astronaut a false positive (score 0.05) is 1 % larger than the
    face (score 1.2), so selection by score is used here.

    Args:
        upsample: times the image is doubled before detection (1 finds faces down to ~40 px, 4x slower;
            the tracker's default is 1, ours 0 because evaluation frames show large faces).
    """

    def __init__(self, upsample: int = 0) -> None:
        self.upsample = upsample

    def __call__(self, images: np.ndarray) -> list[FaceDetection | None]:
        """Detect on ``B x H x W x 3`` uint8 RGB images, one at a time."""
        models = _landmark_detector(self.upsample)
        detections: list[FaceDetection | None] = []
        for image in images:
            rects, scores, _ = models.detector.run(image, self.upsample, 0.0)
            if len(rects) == 0:
                detections.append(None)
                continue
            best = int(np.argmax(scores))
            rect = rects[best]
            shape = models.predictor(image, rect)
            p = np.array([(q.x + 0.5, q.y + 0.5) for q in shape.parts()])  # pixel centres, as the tracker
            landmarks = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float64)
            detections.append(FaceDetection(box=box, landmarks=landmarks, score=float(scores[best])))
        return detections


def make_face_detector(detector: DetectorName | FaceDetector = "mtcnn") -> FaceDetector:
    """The detector called ``"mtcnn"`` or ``"dlib"`` with default settings, or ``detector`` itself."""
    if detector == "mtcnn":
        return MTCNNFaceDetector()
    if detector == "dlib":
        return DlibFaceDetector()
    if callable(detector):
        return detector
    raise ValueError(f"detector must be 'mtcnn', 'dlib' or a FaceDetector, got {detector!r}.")


__all__ = [
    "DlibFaceDetector",
    "FaceDetection",
    "FaceDetector",
    "MTCNNFaceDetector",
    "dlib_five_point_predictor",
    "make_face_detector",
    "to_uint8_images",
]
