"""benchmarks/gpu_animate.py, the GPU check of the whole exp-animate job, on a short job on the CPU: the detector's
answers recorded with dlib are replayed in the same order, and the replayed job gives the recorded job's frames."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gpu_animate import Recorder, Replay, config, record, replay  # noqa: E402

from expgen.animator import Animator  # noqa: E402

OPTIONS = {"size": 96, "fit_size": 96, "max_frames": 3, "fit_steps": 3}


def test_replay_asks_what_the_recording_answered_and_refuses_more():
    answers = [np.ones((68, 2), np.float32), None]
    replayed = Replay(answers)
    frame = np.zeros((8, 8, 3), np.uint8)
    assert replayed(frame) is answers[0] and replayed(frame) is None
    with pytest.raises(RuntimeError, match="asked the detector 3 times"):
        replayed(frame)
    recorder = Recorder(lambda image: None)
    assert recorder(frame) is None and recorder.answers == [None]


def test_a_replayed_job_gives_the_recorded_job_s_frames(tmp_path):
    recorded = record(tmp_path, OPTIONS)
    stored = np.load(tmp_path / "detections.npz")
    assert stored["found"].all() and len(stored["found"]) >= 4  # the reference, then each driving frame
    assert json.loads((tmp_path / "options.json").read_text()) == OPTIONS
    replay(tmp_path, tmp_path / "out.json")
    cpu = json.loads((tmp_path / "out.json").read_text())["rows"][0]
    assert cpu["device"] == "cpu" and cpu["frames"] == 3 and cpu["detector_answers"] == len(stored["found"])
    clip = np.load(tmp_path / "driving.npz")
    replayed = Animator(config("cpu", **OPTIONS), detector=Replay(list(stored["landmarks"]))).animate(
        data.astronaut(), clip["frames"], float(clip["fps"]))
    assert recorded.shape == replayed.frames.shape == (3, 3, 96, 96)
    torch.testing.assert_close(replayed.frames, recorded, atol=2e-3, rtol=0)  # as with dlib itself
