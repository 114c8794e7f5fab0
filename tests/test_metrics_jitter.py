"""Landmark jitter: closed-form values, invariance to rigid motion, missing faces, the torchmetrics classes."""

import math

import pytest
import torch

from exphead.metrics import JitterRatio, LandmarkJitter, jitter_ratio, landmark_jitter
from exphead.metrics.jitter import (
    IBUG68_EYES,
    MEDIAPIPE_EYES,
    default_eyes,
    landmark_jitter_per_frame,
    similarity_align,
)

EPS = 0.01
CIRCLE = torch.stack([torch.cos(torch.arange(8) * math.pi / 4), torch.sin(torch.arange(8) * math.pi / 4)], 1).double()
EYES = ([4], [0])  # two opposite points of the unit circle: inter-ocular distance 2


def _stretched(num_frames: int, eps: float = EPS) -> torch.Tensor:
    """Eight points on a circle, stretched along x and squeezed along y by ``eps`` with alternating sign.

    The stretch (x, -y) is orthogonal to every similarity of this shape, so alignment keeps it; its second
    difference is 4 eps per point, i.e. 2 eps in inter-ocular distances.
    """
    signs = torch.tensor([(-1.0) ** t for t in range(num_frames)], dtype=torch.float64)
    return CIRCLE + eps * signs[:, None, None] * CIRCLE * torch.tensor([1.0, -1.0], dtype=torch.float64)


def _random_similarities(points: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each frame rotated, scaled and moved at random (what a moving head and a zooming camera do)."""
    gen = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    angle = torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1
    scale = 50 + 30 * torch.rand(n, generator=gen, dtype=torch.float64)
    shift = 200 * torch.rand(n, 1, 2, generator=gen, dtype=torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    return scale[:, None, None] * points @ rotation.transpose(1, 2) + shift


def test_closed_form_and_invariance_to_rigid_motion() -> None:
    clip = _stretched(8)
    expected = 4 * EPS / 2 / (1 + EPS**2)  # the uniform part of the stretch's second order shrinks every frame
    per_frame = landmark_jitter_per_frame(clip, EYES)
    assert per_frame.shape == (6,)
    torch.testing.assert_close(per_frame, torch.full((6,), expected, dtype=torch.float64), atol=1e-9, rtol=0)
    moved = _random_similarities(clip)
    torch.testing.assert_close(landmark_jitter(moved, EYES), torch.tensor(expected, dtype=torch.float64),
                               atol=1e-9, rtol=0)
    rigid_only = _random_similarities(CIRCLE.expand(8, -1, -1))
    assert landmark_jitter(rigid_only, EYES).item() < 1e-12  # head motion alone is not jitter
    steady = CIRCLE + torch.linspace(0, 0.2, 8, dtype=torch.float64)[:, None, None] * CIRCLE * torch.tensor([1.0, -1.0])
    assert landmark_jitter(_random_similarities(steady, seed=3), EYES).item() < 2e-3  # smooth change: ~0
    # three dimensions: the same shape lifted to z = 0 and spun about every axis
    lifted = torch.cat([clip, torch.zeros(8, 8, 1, dtype=torch.float64)], dim=2)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    assert landmark_jitter(lifted @ q, EYES).item() == pytest.approx(expected, abs=1e-9)


def test_similarity_align_recovers_a_known_transform() -> None:
    moved = _random_similarities(CIRCLE.expand(4, -1, -1), seed=5)
    aligned = similarity_align(moved, CIRCLE)
    torch.testing.assert_close(aligned, CIRCLE.expand(4, -1, -1), atol=1e-9, rtol=0)
    moved[1, 3] = float("nan")
    assert similarity_align(moved, CIRCLE)[1].isnan().all() and similarity_align(moved, CIRCLE)[0].isfinite().all()


def test_missing_faces_and_ratio() -> None:
    clip = _stretched(9)
    clip[4] = float("nan")  # no face in frame 4: the differences centred on frames 3, 4, 5 are left out
    per_frame = landmark_jitter_per_frame(clip, EYES)
    assert per_frame.isnan().tolist() == [False, False, True, True, True, False, False]
    assert landmark_jitter(clip, EYES).item() == pytest.approx(2 * EPS, rel=1e-3)
    assert math.isnan(landmark_jitter(torch.full((5, 8, 2), float("nan")), EYES).item())
    assert landmark_jitter(clip[:2], EYES).isnan()  # fewer than three frames: nothing to measure
    driver = _stretched(8)
    noisier = _stretched(8, eps=3 * EPS)
    assert jitter_ratio(driver, driver, EYES).item() == pytest.approx(1.0)
    assert jitter_ratio(noisier, driver, EYES).item() == pytest.approx(3.0, rel=1e-3)
    assert jitter_ratio(CIRCLE.expand(8, -1, -1), driver, EYES).item() == pytest.approx(0.0, abs=1e-9)  # still


def test_classes_accumulate_like_the_functions() -> None:
    small, large = _stretched(6), _stretched(6, eps=2 * EPS)
    metric = LandmarkJitter(eyes=EYES)
    metric.update(small)
    metric.update(torch.stack([large, large]))  # two clips at once, each aligned on its own
    expected = (landmark_jitter(small, EYES) + 2 * landmark_jitter(large, EYES)) / 3
    torch.testing.assert_close(metric.compute(), expected, atol=1e-12, rtol=0)
    assert int(metric.num_frames) == 12
    ratio = JitterRatio(eyes=EYES)
    ratio.update(large, small)
    ratio.update(large, small)
    assert ratio.compute().item() == pytest.approx(2.0, rel=1e-3)
    assert not LandmarkJitter.higher_is_better and LandmarkJitter.full_state_update is False


def test_default_eyes_and_errors() -> None:
    assert default_eyes(68) == IBUG68_EYES and default_eyes(478) == MEDIAPIPE_EYES == default_eyes(468)
    with pytest.raises(ValueError, match="eyes="):
        landmark_jitter(torch.rand(5, 10, 2))
    with pytest.raises(ValueError, match="F x K x 2"):
        landmark_jitter(torch.rand(5, 10))
    with pytest.raises(ValueError, match="coincide"):
        landmark_jitter(_stretched(5), eyes=([1], [1]))
    face = torch.rand(68, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert landmark_jitter(_random_similarities(face.expand(6, -1, -1))).item() < 1e-10  # dlib's 68: default eyes
