"""Long videos in chunks: chunked results match the whole-video run, a killed exp-animate leaves no video and
resumes, and one subject is followed when a second face appears."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage import data

from expgen.animator import AnimateConfig, Animator
from expgen.generators.base import keep_padding
from exphead.media import read_frames
from exphead.tracking import TrackerConfig, VideoTracker

CFG = AnimateConfig(size=64, fit_size=96, fit_steps=2, tracker=TrackerConfig(steps=30), show_progress=False)


@pytest.fixture(scope="module")
def talker(tmp_path_factory, head_model):
    """20 frames of a synthetic subject talking and turning (192 px)."""
    from expgen.examples import default_driving_video

    return default_driving_video(num_frames=20, size=192, path=tmp_path_factory.mktemp("drv") / "talk.mp4",
                                 model=head_model)


def test_chunked_tracking_is_as_accurate_as_the_whole_video(talker, head_model):
    """Chunks of 6 and 10 frames (an 8-frame overlap carries the smoothness across borders) track the driver's
    true head rotation and jaw as well as one 20-frame chunk; no jump at the borders."""
    from exphead.synthetic.subject import make_subject

    truth = make_subject(head_model, 3, 20, age=0.8, pose_scale=0.8, height=192, width=192)  # the talker's truth
    true_rotation = truth.params.neck_pose + truth.params.head_pose
    animator = Animator(replace(CFG, tracker=TrackerConfig(steps=100)), model=head_model)
    plan = animator.prepare(data.astronaut(), str(talker))
    errors, results = {}, {}
    for chunk in (64, 10, 6):
        chunks = list(Animator(replace(animator.config, chunk=chunk), model=head_model).chunks(plan))
        assert [c.start + c.frames.shape[0] for c in chunks[:-1]] == [c.start for c in chunks[1:]]
        assert chunks[-1].start + chunks[-1].frames.shape[0] == 20 and (chunk == 64) == (len(chunks) == 1)
        starts = [c.start for c in chunks]
        params = [c.params for c in chunks]
        rotation = torch.cat([p.neck_pose + p.head_pose for p in params])
        offset = rotation - true_rotation
        jaw = torch.cat([p.jaw_pose[:, 0] for p in params])
        errors[chunk] = (torch.rad2deg((offset - offset.mean(0)).norm(dim=1)).mean().item(),
                         (jaw - truth.params.jaw_pose[:, 0]).abs().mean().item())
        results[chunk] = torch.cat([c.frames for c in chunks])
    # measured: 3.3 deg / 0.064 rad (one chunk), 3.9 / 0.065 (10), 3.5 / 0.065 (6)
    for chunk in (10, 6):
        assert errors[chunk][0] < errors[64][0] + 1.0 and errors[chunk][1] < errors[64][1] + 0.01, errors
    change = {k: (v[1:] - v[:-1]).abs().mean((1, 2, 3)) for k, v in results.items()}
    borders = [s - 1 for s in starts[1:]]  # the last chunk size's (6) borders: no larger change than in one chunk
    assert (change[6][borders] - change[64][borders]).max() < 0.01, (change[6], change[64])


def test_chunk_borders_change_nothing_but_the_tracking(talker, head_model, tmp_path):
    """With the same tracked parameters, chunks of 5 frames give exactly the frames of one chunk: the transfer
    module's temporal context (2 frames each side), the pose smoothing (3 frames each side) and the
    cross-reenactment origin (frame 0) cross the borders."""
    from exptransfer import ExpressionTransfer

    torch.manual_seed(0)
    net = ExpressionTransfer(head_model.num_expression, code_dim=8, encoder_hidden=16, hidden_dim=16, num_layers=1,
                             num_frequencies=2, offset_scale=1.0)
    torch.nn.init.normal_(net.geometry_mlp.head.weight, std=0.5)
    net.save_pretrained(tmp_path / "transfer")
    cfg = replace(CFG, transfer_weights=str(tmp_path / "transfer"), max_frames=12)
    one = Animator(replace(cfg, chunk=64), model=head_model)
    plan = one.prepare(data.astronaut(), str(talker))
    (whole,) = list(one.chunks(plan))
    chunked = Animator(replace(cfg, chunk=5), model=head_model)
    tracked, done = whole.params, [0]

    def replay(landmarks, valid, height, width, prefix=None, frames=None):  # the one-chunk tracking (gaze too)
        k, done[0] = done[0], done[0] + len(landmarks)
        return type("Tracked", (), {"params": tracked.map(lambda v: v[k:k + len(landmarks)])})()

    chunked.tracker.fit = replay
    parts = list(chunked.chunks(plan))
    assert [c.start for c in parts] == [0, 2, 7]  # three frames held back each time: the right context
    # equal up to float rounding of batches of other sizes (measured 3e-6; a rounding can tip a pixel at an edge:
    # 3 values of one frame differ by 2e-3)
    difference = (torch.cat([c.frames for c in parts]) - whole.frames).abs()
    assert (difference > 1e-3).sum() <= 10 and difference.max() < 0.01, difference.amax(dim=(1, 2, 3))
    assert torch.allclose(torch.cat([c.driving_normals for c in parts]), whole.driving_normals, atol=1e-3)


def test_diffusion_windows_blend_across_chunks(talker, head_model, tmp_path):
    """Chunks of 5 frames with the diffusion generator (window 5, overlap 2): each call's last 2 frames are held
    back and given to the next call as ``previous``, whose first window blends into them; what comes out is every
    frame once, the held ones as blended by the next call, and the last chunk holds nothing back."""
    from expgen.module import DiffusionModule

    torch.manual_seed(0)
    module = DiffusionModule(num_inference_steps=2, vae_config={"base_dim": 4})
    torch.nn.init.normal_(module.transformer.pose_patch_embedding.weight, std=1.0)  # frames that follow N^D
    module.save_pretrained(tmp_path / "weights")
    cfg = replace(CFG, max_frames=12, chunk=5, generator_weights=str(tmp_path / "weights"), diffusion_window=5,
                  diffusion_overlap=2)
    animator = Animator(cfg, model=head_model)
    plan = animator.prepare(data.astronaut(), str(talker))
    calls, shown, generate = [], [], animator.generator

    def spy(inputs, progress=False):
        out = generate(inputs, progress)
        calls.append((inputs.previous, inputs.num_frames, out.frames))
        shown.append(keep_padding(out.frames, inputs.reference, inputs.reference_bounds))  # as the chunks show it
        return out

    animator.generator = type("Spy", (), {"carry_frames": generate.carry_frames, "__call__": staticmethod(spy),
                                          "name": generate.name})()
    chunks = list(animator.chunks(plan))
    assert [c.start + c.frames.shape[0] for c in chunks[:-1]] == [c.start for c in chunks[1:]]
    assert chunks[0].start == 0 and chunks[-1].start + chunks[-1].frames.shape[0] == 12
    assert calls[0][0] is None and all(prev is not None and prev.shape[0] == 2 for prev, _, _ in calls[1:])
    for (_, _, before), (prev, _, after) in zip(calls, calls[1:]):
        assert torch.equal(prev, before[-2:])  # the held frames, as the previous call made them
        assert not torch.equal(after[:2], before[-2:])  # blended with the new window's own
    video = torch.cat([c.frames for c in chunks])

    def found(frame):
        return any(torch.equal(frame, v) for v in video)

    for before, after in zip(shown, shown[1:]):  # held frames come out as the next call blended them
        assert found(after[0]) and found(after[1]) and not found(before[-2]) and not found(before[-1])
    assert sum(n for _, n, _ in calls) == 12 + 2 * (len(calls) - 1)
    assert torch.equal(video[-shown[-1].shape[0]:], shown[-1])  # the last call: nothing held back


def test_killed_exp_animate_leaves_no_video_and_resumes(talker, tmp_path):
    out = tmp_path / "run" / "a.mp4"
    args = ["-d", str(talker), "-o", str(out), "--size", "64", "--fit_size", "96", "--fit_steps", "2",
            "--tracker.steps", "30", "--chunk", "4", "--show_progress", "false"]
    code = "import sys; from expgen.cli.animate import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = out.parent / ".a.parts"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(parts.glob("state_*.safetensors"))) < 2 and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(parts.glob("state_*.safetensors")), "the job did not get past its second chunk"
    assert not out.exists() and not (out.parent / "a_preview.mp4").exists()  # no half-written video
    from expgen.cli.animate import main

    assert main(args) == 0
    frames, _ = read_frames(out)
    assert frames.shape == (20, 512, 512, 3)  # the whole astronaut photo
    assert read_frames(out.parent / "a_preview.mp4")[0].shape[0] == 20
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.mp4", "a_preview.mp4", "a_preview.png"]


def _paste(canvas: np.ndarray, face: np.ndarray, x: int, y: int, scale: float) -> None:
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)[None].float()
    h, w = round(face.shape[0] * scale), round(face.shape[1] * scale)
    small = F.interpolate(t, size=(h, w), mode="bilinear", antialias=True)[0].permute(1, 2, 0).round().byte().numpy()
    canvas[y:y + h, x:x + w] = small


def test_one_subject_is_followed_when_a_larger_face_appears(caplog):
    """The subject (left, the larger face at the start) stays the track when a second face (right) grows larger
    than it in the second half. Measured: choosing the most confident face frame by frame (the old behaviour)
    crops around the second face instead."""
    import logging

    face = data.astronaut()[20:260, 110:330]  # head and hair, 240 x 220
    frames = np.full((8, 400, 640, 3), 90, np.uint8)
    for i in range(8):
        _paste(frames[i], face, 30, 60, 0.8)
        _paste(frames[i], face, 300, 20, 0.6 if i < 4 else 1.3)
    alone = frames.copy()
    alone[:, :, 280:] = 90
    tracker = VideoTracker(size=128)
    with caplog.at_level(logging.WARNING):
        crowded = tracker.detect(frames, source="two people")
    single = tracker.detect(alone)
    assert "2 faces" in caplog.text
    assert crowded.valid.all()
    assert abs(crowded.box.left - single.box.left) <= 4 and abs(crowded.box.side - single.box.side) <= 6
    assert crowded.box.left + crowded.box.side < 300  # the crop never reaches the second face's position
