"""The independent AED / APD extractor (mediapipe's face mesh) on a real photo and on synthetic heads with truth."""

import sys

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import rotate

from exphead.metrics import MediaPipeMotionExtractor, expression_distance
from exphead.rotations import axis_angle_to_matrix, matrix_to_axis_angle

pytest.importorskip("mediapipe")


def _frames(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def extractor() -> MediaPipeMotionExtractor:
    return MediaPipeMotionExtractor()


def test_in_plane_rotation_is_roll_and_leaves_expression(extractor) -> None:
    photo = data.astronaut()
    turned = [(rotate(photo, angle, center=(230, 100), mode="edge") * 255).astype(np.uint8) for angle in (-12, 9)]
    blank = np.zeros_like(photo)
    est = extractor(_frames(photo, *turned, blank))
    assert est.has_face.tolist() == [True, True, True, False]
    assert est.expression.shape == (4, 276) and est.landmarks.shape == (4, 478, 2)
    assert est.expression[3].isnan().all() and est.head_pose[3].isnan().all() and est.landmarks[3].isnan().all()
    base = axis_angle_to_matrix(est.head_pose[0].double())
    for row, angle in ((1, -12), (2, 9)):
        relative = matrix_to_axis_angle(axis_angle_to_matrix(est.head_pose[row].double()) @ base.T)
        assert np.degrees(relative[2].item()) == pytest.approx(angle, abs=1.0)  # counter-clockwise = +z (to camera)
        assert np.degrees(relative[:2].abs().max().item()) < 2.0
    # the head frame takes the rotation out: the expression points barely move (inter-ocular units)
    aed = expression_distance(est.expression[1:3], est.expression[:1].expand(2, -1))
    assert aed.max() < 0.01
    # pixel landmarks follow the image: the nose tip (point 1) of the upright photo is near (225, 130)
    assert np.allclose(est.landmarks[0, 1].numpy(), (223, 130), atol=8)


def test_synthetic_heads_pose_and_expression_follow_the_truth(extractor, head_model) -> None:
    from exphead.synthetic.subject import make_subject, render_subject

    with torch.no_grad():
        subject = make_subject(head_model, 2, 10, height=128, width=128)
        frames = render_subject(head_model, subject).rgb
    est = extractor(frames)
    assert est.has_face.all()
    yaw_true = (subject.params.neck_pose + subject.params.head_pose)[:, 1]
    assert np.corrcoef(est.head_pose[:, 1].numpy(), yaw_true.numpy())[0, 1] > 0.98
    params = subject.params
    truth = torch.cat([params.expression, params.jaw_pose], 1)
    true_change = (truth - truth[0]).abs().mean(1)
    measured_change = expression_distance(est.expression, est.expression[:1].expand_as(est.expression))
    assert np.corrcoef(measured_change.numpy(), true_change.numpy())[0, 1] > 0.85
    same = extractor(frames[:3])  # static-image mode: a frame reads the same whatever its neighbours
    torch.testing.assert_close(same.expression, est.expression[:3])


def test_settings_and_missing_package(extractor, monkeypatch) -> None:
    settings = extractor.settings()
    assert settings["extractor"] == "mediapipe" and settings["mediapipe"] == extractor.version
    assert "independent" in extractor.label()
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        extractor(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="min_detection_confidence"):
        MediaPipeMotionExtractor(min_detection_confidence=1.5)
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(ImportError, match=r"\.\[bench\].*--motion tracker"):
        MediaPipeMotionExtractor()
