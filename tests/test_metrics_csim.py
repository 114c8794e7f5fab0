"""CSIM: face detection, embedders and the metric on real faces (skimage's astronaut and LFW subset)."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.transform import SimilarityTransform, warp

from exphead.media import to_uint8
from exphead.metrics import CSIM, ArcFaceOnnxEmbedder, DlibFaceEmbedder, FaceEmbeddings, FaceNetEmbedder, csim
from exphead.metrics.face_embedding import ARCFACE_TEMPLATE, _onnx_session, align_arcface
from exphead.tracking.faces import MTCNNFaceDetector, main_faces, make_face_detector


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255


def _shift_and_brighten(frames: torch.Tensor) -> torch.Tensor:
    """Shift by 9 px down and 6 px left (edges replicated) and brighten by 10 % + 0.03."""
    shifted = F.pad(frames[..., :-9, 6:], (0, 6, 9, 0), mode="replicate")
    return (shifted * 1.1 + 0.03).clamp(0, 1)


def _lfw_style(face: torch.Tensor, size: int = 200) -> torch.Tensor:
    """A face crop ``3 x h x w`` made like skimage's LFW subset: grey, 25 x 25, upscaled to ``size``."""
    grey = face.mean(0, keepdim=True)[None]
    small = F.interpolate(grey, size=(25, 25), mode="area")
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)


def test_csim_of_the_same_face(astronaut) -> None:
    blank = torch.full_like(astronaut, 0.5)
    frames = torch.cat([astronaut, _shift_and_brighten(astronaut), blank])
    same, perturbed, no_face = csim(frames, astronaut, reduction="none").tolist()
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0.9 < perturbed < 1 - 1e-6
    assert math.isnan(no_face)
    assert csim(frames, astronaut).item() == pytest.approx((same + perturbed) / 2, abs=1e-6)


def test_csim_of_different_faces_is_lower(astronaut) -> None:
    """Different people: real LFW faces (skimage.data.lfw_subset, grey 25 x 25 crops). The control is
    the astronaut's own face crop degraded the same way, so the gap is identity, not image quality."""
    box = MTCNNFaceDetector().detect(to_uint8(astronaut)[0])[0].box
    x0, y0, x1, y1 = box
    dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    crop = astronaut[0, :, int(y0 - dy) : int(y1 + dy), int(x0 - dx) : int(x1 + dx)]
    lfw = torch.from_numpy(data.lfw_subset()[:6]).float()[:, None]
    others = F.interpolate(lfw, size=(200, 200), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    embedder = DlibFaceEmbedder()
    same = csim(_lfw_style(crop), astronaut, embedder).item()
    different = csim(others, astronaut, embedder, reduction="none")
    assert different.isfinite().sum() >= 5  # faces found in (nearly) all of them
    assert same > 0.9
    assert different.nan_to_num(0).max() < same - 0.03
    assert different.nanmean() < same - 0.06


class _ColourEmbedder:
    """Embedding = mean colour of the frame; a frame "has a face" unless it is uniform."""

    def __call__(self, frames: torch.Tensor) -> FaceEmbeddings:
        has_face = frames.flatten(1).std(dim=1) > 1e-3
        return FaceEmbeddings(frames.mean(dim=(2, 3)) * has_face[:, None], has_face)


def test_frames_without_face_are_counted_not_averaged() -> None:
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 3, 8, 8, generator=gen)  # two videos of three frames
    frames[0, 1] = 0.5  # no face
    reference = torch.rand(1, 3, 8, 8, generator=gen)
    embedder = _ColourEmbedder()
    metric = CSIM(embedder)
    metric.update(frames[:1], reference)  # one reference image for every frame
    metric.update(frames[1:], reference)
    assert int(metric.num_no_face) == 1 and int(metric.num_frames) == 5
    flat = frames.flatten(0, 1)
    expected = F.cosine_similarity(flat.mean(dim=(2, 3)), reference.mean(dim=(2, 3)))
    keep = torch.arange(6) != 1
    torch.testing.assert_close(metric.compute(), expected[keep].mean())
    per_frame = csim(frames, reference, embedder, reduction="none")
    assert per_frame[1].isnan() and torch.allclose(per_frame[keep], expected[keep])
    metric.update(flat[:2], torch.full((2, 3, 8, 8), 0.25))  # references without a face count too
    assert int(metric.num_no_face) == 3 and int(metric.num_frames) == 5
    metric.reset()
    assert int(metric.num_no_face) == 0
    assert CSIM.higher_is_better and not CSIM.is_differentiable and CSIM.full_state_update is False


def test_dlib_detector_agrees_with_mtcnn(astronaut) -> None:
    images = to_uint8(torch.cat([astronaut, torch.zeros_like(astronaut)]))
    by_dlib = main_faces(make_face_detector("dlib"), images)
    by_mtcnn = main_faces(MTCNNFaceDetector(), images)
    assert by_dlib[1] is None and by_mtcnn[1] is None
    eyes_and_nose = slice(0, 3)  # the mouth corners of the two models differ by definition
    offset = np.linalg.norm(by_dlib[0].five[eyes_and_nose] - by_mtcnn[0].five[eyes_and_nose], axis=1)
    assert offset.max() < 8.0  # pixels, on a face ~90 px wide
    embedder = DlibFaceEmbedder(detector="dlib")
    assert csim(astronaut, astronaut, embedder).item() == pytest.approx(1.0, abs=1e-5)
    assert csim(_shift_and_brighten(astronaut), astronaut, embedder).item() > 0.9


def test_facenet_embedder_loads_local_weights(tmp_path, astronaut) -> None:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(classify=False).state_dict()
    state["logits.weight"] = torch.zeros(10, 512)  # a classifier head, as in the released checkpoints
    path = tmp_path / "facenet.pt"
    torch.save(state, path)
    embedder = FaceNetEmbedder(path)
    result = embedder(torch.cat([astronaut, torch.zeros_like(astronaut)]))
    assert result.embeddings.shape == (2, 512) and result.has_face.tolist() == [True, False]
    assert result.embeddings[0].norm().item() == pytest.approx(1.0, abs=1e-4)  # facenet L2-normalises
    assert result.embeddings[1].abs().max() == 0
    with pytest.raises(FileNotFoundError, match="weights_path"):
        FaceNetEmbedder(tmp_path / "missing.pt")


def test_align_arcface_inverts_a_similarity(astronaut) -> None:
    crop = F.interpolate(astronaut[..., 60:200, 150:290], size=(112, 112), mode="area")[0].permute(1, 2, 0)
    crop = (crop.numpy() * 255).astype(np.float64)
    placement = SimilarityTransform(scale=1.7, rotation=0.3, translation=(80.0, 20.0))  # crop -> image
    image = warp(crop, placement.inverse, output_shape=(300, 320), order=1, preserve_range=True)
    landmarks = placement(ARCFACE_TEMPLATE)
    aligned = align_arcface(image.astype(np.uint8), landmarks)
    assert aligned.shape == (112, 112, 3)
    interior = (slice(8, -8), slice(8, -8))
    assert np.abs(aligned[interior] - crop[interior]).mean() < 6.0  # of 255: two bilinear resamplings


def test_arcface_needs_a_model_file_and_onnxruntime(tmp_path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="model_path"):
        ArcFaceOnnxEmbedder(tmp_path / "missing.onnx")
    model = tmp_path / "arcface.onnx"
    model.write_bytes(b"onnx")
    _onnx_session.cache_clear()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        ArcFaceOnnxEmbedder(model)
    _onnx_session.cache_clear()


def test_arcface_embedder_feeds_aligned_normalised_crops(tmp_path, monkeypatch, astronaut) -> None:
    seen = []
    projection = np.random.default_rng(0).normal(size=(3 * 112 * 112, 16)).astype(np.float32)

    class FakeSession:
        def __init__(self, path: str, providers: list[str]) -> None:
            self.path = path

        def get_inputs(self) -> list[types.SimpleNamespace]:
            return [types.SimpleNamespace(name="input.1")]

        def get_outputs(self) -> list[types.SimpleNamespace]:
            return [types.SimpleNamespace(shape=[None, 16])]

        def run(self, outputs: None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            blob = feeds["input.1"]
            seen.append(blob)
            return [blob.reshape(len(blob), -1) @ projection]

    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(InferenceSession=FakeSession))
    _onnx_session.cache_clear()
    model = tmp_path / "arcface.onnx"
    model.write_bytes(b"onnx")
    embedder = ArcFaceOnnxEmbedder(model)
    assert embedder.dim == 16
    assert csim(astronaut, astronaut, embedder).item() == pytest.approx(1.0, abs=1e-5)
    blob = seen[0]
    assert blob.shape == (1, 3, 112, 112) and blob.dtype == np.float32
    assert -1.0 <= blob.min() < -0.5 and 0.5 < blob.max() <= 1.0
    _onnx_session.cache_clear()
