"""Face-recognition embedders for CSIM: frames -> one identity embedding per frame with a face.

* :class:`DlibFaceEmbedder` (default): dlib's ResNet face descriptor (128-d), the model file of the
  ``face_recognition_models`` package, aligned by dlib's 5-point shape predictor and
  ``get_face_chip`` (150 x 150, padding 0.25) inside ``compute_face_descriptor``.
* :class:`ArcFaceOnnxEmbedder`: an ArcFace ONNX model (the paper's embedder [6]; e.g. insightface's
  ``w600k_r50.onnx``) given by path, run with ``onnxruntime`` (imported only here), on 112 x 112
  crops aligned to ArcFace's five-point template.
* :class:`FaceNetEmbedder`: facenet-pytorch's InceptionResnetV1 (512-d) with a weights file given by
  path (e.g. the VGGFace2 checkpoint ``20180402-114759-vggface2.pt``), on 160 x 160 box crops.

Embeddings of different embedders live in different spaces: CSIM values are only comparable when
computed with the same embedder (dlib's are not comparable to the paper's ArcFace numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from skimage.transform import estimate_transform, warp
from torch import Tensor

if TYPE_CHECKING:
    from collections.abc import Callable

    import dlib
    import onnxruntime

from exphead.media import to_uint8
from exphead.tracking.faces import FaceDetection, FaceDetector, main_faces, make_face_detector

DetectorName = Literal["mtcnn", "dlib"]

# ArcFace's (insightface) landmark template for 112 x 112 crops, pixels (x, y), in detection order.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


@dataclass
class FaceEmbeddings:
    """Embeddings of a batch of frames.

    Attributes:
        embeddings: ``N x D`` float32; rows of frames without a face are zero.
        has_face: ``N`` bool, whether a face was found (and embedded) in each frame.
    """

    embeddings: Tensor
    has_face: Tensor


class FaceEmbedder(Protocol):
    """Maps frames ``N x 3 x H x W`` in ``[0, 1]`` to :class:`FaceEmbeddings`."""

    def __call__(self, frames: Tensor) -> FaceEmbeddings: ...


def _embed_detected(
    frames: Tensor,
    detector: FaceDetector,
    dim: int,
    embed_one: Callable[[np.ndarray, FaceDetection], np.ndarray | None],
) -> FaceEmbeddings:
    """Detect a face in each frame and embed it with ``embed_one(image, detection) -> (D,)`` array."""
    images = to_uint8(frames)
    detections = main_faces(detector, images)
    embeddings = torch.zeros(len(images), dim)
    has_face = torch.zeros(len(images), dtype=torch.bool)
    for i, (image, detection) in enumerate(zip(images, detections)):
        if detection is None:
            continue
        vector = embed_one(image, detection)
        if vector is None:
            continue
        embeddings[i] = torch.as_tensor(np.asarray(vector, dtype=np.float32))
        has_face[i] = True
    return FaceEmbeddings(embeddings.to(frames.device), has_face.to(frames.device))


@lru_cache(maxsize=1)
def dlib_five_point_predictor() -> dlib.shape_predictor:
    """dlib's 5-point shape predictor from the ``face_recognition_models`` package (cached)."""
    import dlib
    import face_recognition_models

    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


@lru_cache(maxsize=1)
def _dlib_face_recognition_model() -> dlib.face_recognition_model_v1:
    import dlib
    import face_recognition_models

    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


class DlibFaceEmbedder:
    """dlib's ResNet face descriptor (128-d, model shipped in ``face_recognition_models``).

    Args:
        detector: ``"mtcnn"`` (default, more robust), ``"dlib"`` (HOG, faster) or a
            :class:`~exphead.tracking.faces.FaceDetector`.
        num_jitters: dlib's test-time augmentation (0 = none, deterministic).
    """

    dim = 128

    def __init__(self, detector: DetectorName | FaceDetector = "mtcnn", num_jitters: int = 0) -> None:
        self.detector = make_face_detector(detector)
        self.num_jitters = num_jitters

    def _embed_one(self, image: np.ndarray, detection: FaceDetection) -> np.ndarray:
        import dlib

        x0, y0, x1, y1 = (int(round(v)) for v in detection.box)
        shape = dlib_five_point_predictor()(image, dlib.rectangle(x0, y0, x1, y1))
        return np.array(_dlib_face_recognition_model().compute_face_descriptor(image, shape, self.num_jitters))

    def __call__(self, frames: Tensor) -> FaceEmbeddings:
        """Embeddings ``N x 128`` of frames ``N x 3 x H x W`` in ``[0, 1]``."""
        return _embed_detected(frames, self.detector, self.dim, self._embed_one)


def align_arcface(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray | None:
    """Warp ``image`` (H x W x 3 uint8) so that ``landmarks`` (5 x 2) land on ArcFace's template.

    Returns the ``size x size x 3`` float crop in ``[0, 255]``, or ``None`` if no similarity fits.
    """
    template = ARCFACE_TEMPLATE * (size / 112.0)
    transform = estimate_transform("similarity", landmarks, template)
    if not transform:
        return None
    return warp(image, transform.inverse, output_shape=(size, size), order=1, preserve_range=True)


def _require_file(path: str | os.PathLike, what: str, option: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no file at {path}; pass the path of the file as {option}.")
    return path


@lru_cache(maxsize=2)
def _onnx_session(path: str) -> onnxruntime.InferenceSession:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "ArcFaceOnnxEmbedder needs onnxruntime: pip install onnxruntime (or the 'onnx' extra of "
            "expportrait)."
        ) from error
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


class ArcFaceOnnxEmbedder:
    """ArcFace (the paper's CSIM embedder) from an ONNX file, run with onnxruntime.

    Input of the model: ``N x 3 x 112 x 112`` float32 RGB, ``(pixel - 127.5) / 127.5``, aligned by a
    similarity transform of the five detected landmarks onto ArcFace's template.

    Args:
        model_path: the ArcFace ``.onnx`` file (e.g. insightface's ``w600k_r50.onnx``).
        detector: ``"mtcnn"``, ``"dlib"`` or a :class:`~exphead.tracking.faces.FaceDetector`.
    """

    def __init__(self, model_path: str | os.PathLike, detector: DetectorName | FaceDetector = "mtcnn") -> None:
        self.model_path = str(_require_file(model_path, "ArcFace ONNX model", "model_path"))
        self.detector = make_face_detector(detector)
        session = _onnx_session(self.model_path)
        self.dim = int(session.get_outputs()[0].shape[-1])

    def _embed_one(self, image: np.ndarray, detection: FaceDetection) -> np.ndarray | None:
        crop = align_arcface(image, detection.five)
        if crop is None:
            return None
        blob = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        session = _onnx_session(self.model_path)
        return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(blob)})[0][0]

    def __call__(self, frames: Tensor) -> FaceEmbeddings:
        """Embeddings ``N x D`` of frames ``N x 3 x H x W`` in ``[0, 1]``."""
        return _embed_detected(frames, self.detector, self.dim, self._embed_one)


@lru_cache(maxsize=2)
def _facenet(path: str) -> torch.nn.Module:
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("logits.")}
    model.load_state_dict(state, strict=True)
    return model.eval()


class FaceNetEmbedder:
    """facenet-pytorch's InceptionResnetV1 (512-d) with weights from a local file (never downloaded).

    Input of the model: the detected box (plus ``margin`` pixels of the output crop) resized to
    160 x 160, standardised as ``(pixel - 127.5) / 128`` — facenet-pytorch's own pipeline.

    Args:
        weights_path: state dict of ``InceptionResnetV1`` (a ``logits.*`` classifier head is ignored).
        detector: ``"mtcnn"`` (facenet-pytorch's own), ``"dlib"`` or a
            :class:`~exphead.tracking.faces.FaceDetector`.
        margin: margin around the box, in pixels of the 160 x 160 crop.
    """

    dim = 512

    def __init__(
        self, weights_path: str | os.PathLike, detector: DetectorName | FaceDetector = "mtcnn", margin: int = 0
    ) -> None:
        self.weights_path = str(_require_file(weights_path, "FaceNet weights", "weights_path"))
        self.detector = make_face_detector(detector)
        self.margin = margin
        _facenet(self.weights_path)

    def _embed_one(self, image: np.ndarray, detection: FaceDetection) -> np.ndarray:
        from facenet_pytorch import extract_face, fixed_image_standardization

        crop = extract_face(torch.from_numpy(image), detection.box, image_size=160, margin=self.margin)
        with torch.no_grad():
            return _facenet(self.weights_path)(fixed_image_standardization(crop)[None])[0].numpy()

    def __call__(self, frames: Tensor) -> FaceEmbeddings:
        """Embeddings ``N x 512`` of frames ``N x 3 x H x W`` in ``[0, 1]``."""
        return _embed_detected(frames, self.detector, self.dim, self._embed_one)


__all__ = [
    "ARCFACE_TEMPLATE",
    "ArcFaceOnnxEmbedder",
    "DlibFaceEmbedder",
    "FaceEmbedder",
    "FaceEmbeddings",
    "FaceNetEmbedder",
    "align_arcface",
]
