"""Clips from fitted heads (expgen.data.clip_builder): a small exp-synth subject (level-0 head model, 96 px, 13 frames),
fitted for a few steps, cut into three 5-frame clips; N^D / N^R checked against direct renders."""

import os
import shutil
from types import SimpleNamespace

import pytest
import torch

from expgen.cli.clips import main as clips_main
from expgen.data import ClipBuildConfig, ClipDataset, VideoDataModule, build_clips, read_clip
from expgen.module import DiffusionModule
from exphead.fitting import FitConfig
from exphead.media import read_frames, to_uint8
from exphead.personalized import PersonalizedHead
from exphead.render import normal_to_image, render_normal_depth
from exphead.synthetic.storage import write_synthetic_subject
from exphead.tracking.tracker import TrackerConfig
from exptransfer import ExpressionTransfer, freeze_transfer, load_transfer, temporal_context, transfer

SIZE, FRAMES, CLIP, HOP = 96, 13, 5, 4
STARTS = (0, 4, 8)
FIT = FitConfig(steps=10, frames_per_step=2, tracker=TrackerConfig(steps=40, rigid_fraction=0.5), show_progress=False,
                checkpoint_every=10)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stand_in_transfer(model) -> ExpressionTransfer:
    """An ExpressionTransfer whose zero-initialised offset head gets random weights (Δf about 4 mm on the face),
    a stand-in for a trained module (an untrained one predicts exactly zero)."""
    torch.manual_seed(0)
    net = ExpressionTransfer(model.num_expression, code_dim=16, encoder_hidden=32, hidden_dim=32, num_layers=2,
                             num_frequencies=4, offset_scale=1.0)
    torch.nn.init.normal_(net.geometry_mlp.head.weight, std=0.5)
    return net


def encode(vertices, model, camera):
    """Independent reference render: uint8 ``F x 3 x H x W`` normal images, one frame at a time."""
    images = [normal_to_image(render_normal_depth(v[None], model.faces, camera).normal) for v in vertices]
    return torch.from_numpy(to_uint8(torch.cat(images))).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def built(tmp_path_factory, coarse_head_model):
    root = tmp_path_factory.mktemp("heads_clips")
    subject = write_synthetic_subject(coarse_head_model, root / "subject_0003", seed=3, num_frames=FRAMES, size=SIZE)
    net = stand_in_transfer(coarse_head_model)
    grad_before = all(p.requires_grad for p in net.parameters())
    reports = {}
    for driving in ("fitted", "transfer"):
        cfg = ClipBuildConfig(num_frames=CLIP, size=SIZE, hop=HOP, driving=driving, fit=FIT)
        reports[driving] = build_clips([subject], root / driving, net, cfg, heads_dir=root / "heads",
                                       model=coarse_head_model)
    head = PersonalizedHead.load(root / "heads" / "subject_0003", model=coarse_head_model)
    return SimpleNamespace(root=root, subject=subject, net=net, grad_before=grad_before, reports=reports,
                           head=head, model=coarse_head_model, camera=head.camera.scaled(SIZE, SIZE))


def clips_of(built, driving):
    return [read_clip(built.root / driving / f"subject_0003_{s:06d}.safetensors") for s in STARTS]


def test_clip_files_have_the_format_and_load(built):
    report = built.reports["fitted"]
    assert [p.name for p in report.written] == [f"subject_0003_{s:06d}.safetensors" for s in STARTS]
    video, _ = read_frames(built.subject / "frames")
    for start, clip in zip(STARTS, clips_of(built, "fitted")):
        assert clip.frames.shape == clip.driving_normals.shape == (CLIP, 3, SIZE, SIZE)
        assert clip.reference_image.shape == clip.reference_normal.shape == (3, SIZE, SIZE)
        assert {t.dtype for t in (clip.frames, clip.driving_normals, clip.reference_image,
                                  clip.reference_normal)} == {torch.uint8}
        assert clip.subject_id == "subject_0003" and clip.fps == 25.0 and clip.extra["start"] == start
        # frames are the subject's own PNGs, bit for bit; I_R is a frame of the video outside the clip
        assert torch.equal(clip.frames, torch.from_numpy(video[start:start + CLIP]).permute(0, 3, 1, 2))
        ref = clip.extra["reference_frame"]
        assert not start <= ref < start + CLIP and clip.extra["reference_outside_clip"]
        assert torch.equal(clip.reference_image, torch.from_numpy(video[ref]).permute(2, 0, 1))
    item = ClipDataset(report.written, num_frames=CLIP, resolution=SIZE)[0]
    assert item["frames"].dtype == torch.float32 and 0 <= item["driving_normals"].min() <= item["frames"].max() <= 1
    dm = VideoDataModule(str(built.root / "fitted"), num_frames=CLIP, resolution=SIZE)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert len(dm.train_set) == 3  # one subject: nothing held out, and the heads/ and manifests/ folders are not clips
    assert batch["driving_normals"].shape == (1, CLIP, 3, SIZE, SIZE)
    assert batch["reference_normal"].shape == (1, 3, SIZE, SIZE)


def test_fitted_driving_normals_are_renders_of_the_fitted_frames(built):
    head, model = built.head, built.model
    for start, clip in zip(STARTS, clips_of(built, "fitted")):
        direct = encode(head.frame(slice(start, start + CLIP)).vertices, model, built.camera)
        assert (clip.driving_normals.int() - direct.int()).abs().max() <= 1  # batched vs one-by-one float rounding
        # the fitted Δf(i) (sub-millimetre after 20 steps) are in them: without Δf the frames render differently
        params = head.params.map(lambda v, s=start: v[s:s + CLIP])
        bare = encode(model(params, head.delta_g).vertices, model, built.camera)
        assert (clip.driving_normals.int() - bare.int()).abs().max().item() >= 4  # measured 8 to 14


def test_reference_normal_is_the_neutral_mesh_in_the_reference_pose(built):
    head, model = built.head, built.model
    for clip in clips_of(built, "fitted"):
        ref = clip.extra["reference_frame"]
        rest = head.params.map(lambda v, r=ref: v[r:r + 1].clone())
        rest.expression.zero_()
        rest.jaw_pose.zero_()
        out = model(rest, head.delta_g)
        assert (out.canonical[0] - head.neutral()).abs().max() < 1e-6  # V_neutral = V^s + Δg
        assert torch.equal(out.vertices, head.posed_neutral(ref))
        direct = encode(out.vertices, model, built.camera)[0]
        assert (clip.reference_normal.int() - direct.int()).abs().max() <= 1
        # no expression: differs from the fitted expressive frame's normals
        frame = encode(head.frame(ref).vertices, model, built.camera)[0]
        assert (frame.int() - direct.int()).abs().float().mean() > 0.5


def test_transfer_driving_uses_the_frozen_module_on_the_face(built):
    net, head, model = built.net, built.head, built.model
    assert built.grad_before and not any(p.requires_grad for p in net.parameters()) and not net.training
    assert temporal_context(net) == 2
    whole = transfer(head, head.params, net)  # the whole video at once: clips must be cuts of it
    # the face region: triangles touching a face vertex or one of its neighbours (their vertex normals move too)
    near = torch.zeros(model.num_vertices, dtype=torch.bool)
    near[model.faces[(model.face_mask[model.faces] > 0).any(1)].flatten()] = True
    face = near[model.faces].any(1)
    ious, face_share = [], []
    for start, fitted, moved in zip(STARTS, clips_of(built, "fitted"), clips_of(built, "transfer")):
        direct = encode(whole.vertices[start:start + CLIP], model, built.camera)
        assert (moved.driving_normals.int() - direct.int()).abs().max() <= 1
        assert torch.equal(moved.frames, fitted.frames) and torch.equal(moved.reference_normal, fitted.reference_normal)
        diff = (moved.driving_normals.int() - fitted.driving_normals.int()).abs().amax(1)
        assert diff.float().mean() > 0.3 and diff.max() > 50  # measured 1.0-1.4 and 156-159
        fg_a, fg_b = fitted.driving_normals.amax(1) > 0, moved.driving_normals.amax(1) > 0
        ious.append(((fg_a & fg_b).sum() / (fg_a | fg_b).sum()).item())
        frags = render_normal_depth(whole.vertices[start:start + CLIP], model.faces,
                                    built.camera.expand(CLIP)).fragments
        on_face = torch.zeros_like(frags.face_id, dtype=torch.bool)
        hit = frags.face_id >= 0
        on_face[hit] = face[frags.face_id[hit]]
        changed = diff > 8
        face_share.append(((changed & on_face).sum() / changed.sum()).item())
    # nearly the same silhouette (measured 0.978-0.996): only the face moves, and where the face region
    # meets the outline (the chin, the cheeks) a stronger tracked expression moves the outline a little
    assert min(ious) > 0.96
    assert min(face_share) > 0.95, face_share  # the changed normals lie on the face (measured 1.0)


def test_rerun_skips_existing_clips_and_heads(built, tmp_path):
    out = tmp_path / "fitted"
    shutil.copytree(built.root / "fitted", out)
    heads = built.root / "heads"
    files = sorted(out.glob("*.safetensors")) + sorted((heads / "subject_0003").glob("head.*"))
    before = {f: os.stat(f).st_mtime_ns for f in files}
    cfg = ClipBuildConfig(num_frames=CLIP, size=SIZE, hop=HOP, driving="fitted", fit=FIT)
    report = build_clips([built.subject], out, None, cfg, heads_dir=heads, model=built.model)
    assert report.written == [] and len(report.existing) == 3
    assert {f: os.stat(f).st_mtime_ns for f in files} == before
    # an interrupted build (one clip and the source's manifest missing) resumes: only that clip is written
    old = read_clip(out / "subject_0003_000004.safetensors")
    (out / "subject_0003_000004.safetensors").unlink()
    (out / "manifests" / "subject_0003.json").unlink()
    report = build_clips([built.subject], out, None, cfg, heads_dir=heads, model=built.model)
    assert [p.name for p in report.written] == ["subject_0003_000004.safetensors"] and len(report.existing) == 2
    assert torch.equal(read_clip(report.written[0]).driving_normals, old.driving_normals)
    kept = [f for f in files if f != report.written[0]]
    assert {f: os.stat(f).st_mtime_ns for f in kept} == {f: before[f] for f in kept}  # the head was not refitted
    with pytest.raises(ValueError, match="built with"):  # other settings never mix with clips on disk
        build_clips([built.subject], out, None, ClipBuildConfig(num_frames=CLIP, size=SIZE, hop=2, driving="fitted"),
                    heads_dir=heads, model=built.model)


def test_datamodule_builds_clips_from_sources(built, tmp_path):
    built.net.save_pretrained(tmp_path / "transfer")
    frozen = freeze_transfer(load_transfer(tmp_path / "transfer"))
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    dm = VideoDataModule(str(tmp_path / "clips"), num_frames=CLIP, resolution=SIZE, sources=[str(built.subject)],
                         heads_dir=str(built.root / "heads"), transfer_checkpoint=str(tmp_path / "transfer"),
                         driving="transfer", clip_hop=HOP)
    dm.prepare_data()
    for start, clip in zip(STARTS, clips_of(built, "transfer")):  # same weights, loaded from disk: same bytes
        assert torch.equal(read_clip(tmp_path / "clips" / f"subject_0003_{start:06d}.safetensors").driving_normals,
                           clip.driving_normals)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["frames"].shape == (1, CLIP, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="transfer_module"):
        VideoDataModule(str(tmp_path / "other"), num_frames=CLIP, resolution=SIZE, sources=[str(built.subject)],
                        heads_dir=str(built.root / "heads")).prepare_data()
    with pytest.raises(ValueError, match="not both"):
        VideoDataModule(str(tmp_path / "other"), sources=[str(built.subject)], synthetic_clips=4)
    with pytest.raises(TypeError, match="transfer_checkpoint"):  # moved from the LightningModule to the data
        DiffusionModule(transfer_checkpoint="x")


def test_bad_sources_fail_clearly_or_are_skipped(built, tmp_path):
    short = write_synthetic_subject(built.model, tmp_path / "short", seed=1, num_frames=3, size=32)
    missing = tmp_path / "missing.mp4"
    cfg = ClipBuildConfig(num_frames=CLIP, size=SIZE, driving="fitted", fit=FIT)
    with pytest.raises(ValueError, match="missing.mp4"):
        build_clips([missing], tmp_path / "out", None, cfg, model=built.model)
    with pytest.raises(ValueError, match="3 frame\\(s\\).*fewer than one clip of 5"):
        build_clips([short], tmp_path / "out", None, cfg, model=built.model)
    cfg.on_error = "skip"
    report = build_clips([missing, short], tmp_path / "out", None, cfg, model=built.model)
    assert sorted(report.failed) == sorted([str(missing), str(short)]) and report.clips == []
    assert not list((tmp_path / "out").rglob("*.safetensors")) and not (tmp_path / "out" / "manifests").exists()
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        build_clips([short], tmp_path / "out", None, ClipBuildConfig(num_frames=6, driving="fitted"))
    with pytest.raises(ValueError, match="needs the trained transfer module"):
        build_clips([short], tmp_path / "out", None, ClipBuildConfig(num_frames=CLIP))
    with pytest.raises(FileNotFoundError, match="transfer module not found"):
        build_clips([short], tmp_path / "out", tmp_path / "nope.ckpt", ClipBuildConfig(num_frames=CLIP))


def test_exp_clips_command(built, tmp_path):
    out = tmp_path / "cli"
    args = [str(built.subject), "--out", str(out), "--heads", str(built.root / "heads"), "--driving", "fitted",
            "--num_frames", str(CLIP), "--size", str(SIZE), "--hop", str(HOP), "--level", "0"]
    assert clips_main(args) == 0
    for start, clip in zip(STARTS, clips_of(built, "fitted")):
        assert torch.equal(read_clip(out / f"subject_0003_{start:06d}.safetensors").driving_normals,
                           clip.driving_normals)
    # the paper's driving needs --transfer: one line, exit 2
    assert clips_main([str(built.subject), "--out", str(tmp_path / "cli2"), "--num_frames", str(CLIP)]) == 2


def test_video_source_is_cropped_once_at_both_sizes(built, tmp_path):
    """A video is cropped by detection at the fit size; its clips reuse that crop box at the clip size."""
    from exphead.fitting import load_targets
    from exphead.media import write_video
    from exphead.tracking import DlibFaceDetector

    class Counting(DlibFaceDetector):
        calls = 0

        def __call__(self, image):
            Counting.calls += 1
            return super().__call__(image)

    frames, _ = read_frames(built.subject / "frames")
    video = write_video(tmp_path / "talker.mp4", frames, fps=25.0)
    cfg = ClipBuildConfig(num_frames=CLIP, size=64, hop=HOP, driving="fitted",
                          fit=FitConfig(**{**FIT.__dict__, "image_size": SIZE}))
    detector = Counting()
    report = build_clips([video], tmp_path / "clips", None, cfg, model=built.model, detector=detector)
    assert len(report.written) == 3 and Counting.calls <= FRAMES + 8  # one pass over the frames (+ crop sample)
    ref = load_targets(video, FitConfig(image_size=64), detector=DlibFaceDetector())  # an independent crop at 64 px
    clip = read_clip(report.written[0])
    expected = torch.from_numpy(to_uint8(ref.frames[:CLIP])).permute(0, 3, 1, 2)
    assert (clip.frames.int() - expected.int()).abs().max() <= 1


def test_exp_clips_shards_sources_across_torchrun_ranks(tmp_path, coarse_head_model):
    """Two ranks (torchrun, gloo) split three sources: every clip is written once, by the rank that owns its
    source, and a second launch finds everything built."""
    import json
    import subprocess
    import sys

    sources = [str(write_synthetic_subject(coarse_head_model, tmp_path / f"s{k}", seed=k, num_frames=6, size=48))
               for k in range(3)]
    out = tmp_path / "clips"
    args = [*sources, "--out", str(out), "--driving", "fitted", "--num_frames", "5", "--size", "48", "--level", "0",
            "--fit.steps", "2", "--fit.tracker.steps", "6", "--fit.image_size", "48"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "expgen.cli.clips", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    manifests = {json.loads(p.read_text())["source"]: json.loads(p.read_text()) for p in (out / "manifests").iterdir()}
    assert sorted(manifests) == sorted(sources)
    assert [manifests[s]["rank"] for s in sources] == [0, 1, 0]  # source k -> rank k % 2
    clips = sorted(p.name for p in out.glob("*.safetensors"))
    assert clips == sorted(c for m in manifests.values() for c in m["clips"]) and len(clips) == 3
    again = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "0 clip(s) written, 3 already present" in again.stderr, again.stderr[-1000:]
