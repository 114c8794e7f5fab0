"""Clips of synthetic subjects (expgen.data.subjects): 2 + 1 subjects on the level-0 head model, 32 px, two 5-frame
clips each; N^D / N^R / frames checked against independent renders of the ground truth."""

from types import SimpleNamespace

import pytest
import torch

from expgen.data import VideoDataModule, read_clip, read_metadata
from expgen.data.subjects import write_subject_clips
from exphead.media import to_uint8
from exphead.render import normal_to_image, render_normal_depth
from exphead.synthetic.subject import make_subject, render_subject

SIZE, FRAMES, CLIPS = 32, 5, 2
TOTAL = CLIPS * FRAMES + 1


def encode(vertices, model, camera):
    """Independent reference render: uint8 ``F x 3 x H x W`` normal images, one frame at a time."""
    images = [normal_to_image(render_normal_depth(v[None], model.faces, camera).normal) for v in vertices]
    return torch.from_numpy(to_uint8(torch.cat(images))).permute(0, 3, 1, 2)


def level_diff(a, b):
    return int((a.int() - b.int()).abs().max())


@pytest.fixture(scope="module")
def written(tmp_path_factory, coarse_head_model):
    root = tmp_path_factory.mktemp("subject_clips")
    paths = write_subject_clips(root, num_subjects=2, clips_per_subject=CLIPS, num_frames=FRAMES, size=SIZE, seed=0,
                                num_val_subjects=1, model=coarse_head_model)
    return SimpleNamespace(root=root, paths=paths, model=coarse_head_model)


def ground_truth(written, path):
    """The clip, its metadata, and the subject re-made from its seed (frames rendered independently)."""
    clip = read_clip(path)
    subject = make_subject(written.model, clip.extra["subject_seed"], TOTAL, height=SIZE, width=SIZE)
    return clip, subject


def test_files_shapes_dtypes_and_split(written):
    names = [p.relative_to(written.root).as_posix() for p in written.paths]
    assert names == ["train/train-0000_000000.safetensors", "train/train-0000_000005.safetensors",
                     "train/train-0001_000000.safetensors", "train/train-0001_000005.safetensors",
                     "val/val-0000_000000.safetensors", "val/val-0000_000005.safetensors"]
    assert sorted(p.name for p in written.root.rglob("*") if p.is_file()) == sorted(p.name for p in written.paths)
    for path in written.paths:
        clip = read_clip(path)
        assert clip.frames.shape == clip.driving_normals.shape == (FRAMES, 3, SIZE, SIZE)
        assert clip.reference_image.shape == clip.reference_normal.shape == (3, SIZE, SIZE)
        assert {t.dtype for t in (clip.frames, clip.driving_normals, clip.reference_image,
                                  clip.reference_normal)} == {torch.uint8}
        meta = read_metadata(path)
        assert meta["format_version"] == 1 and meta["fps"] == 25.0 and meta["source"] == "expgen.data.subjects"
        assert meta["subject_id"] == path.stem.split("_")[0] and meta["start"] == int(path.stem.split("_")[1])
        ref, start = meta["reference_frame"], meta["start"]
        assert meta["reference_outside_clip"] and not start <= ref < start + FRAMES and 0 <= ref < TOTAL
    seeds = {read_metadata(p)["subject_id"]: read_metadata(p)["subject_seed"] for p in written.paths}
    assert len(set(seeds.values())) == 3


def test_frames_and_driving_normals_are_the_ground_truth_renders(written):
    """N^D equals a direct render of V^s + Δg + Δf(i) posed by LBS, frames and I_R equal the subject's RGB renders."""
    model = written.model
    for path in written.paths[:2] + written.paths[4:]:
        clip, subject = ground_truth(written, path)
        start, ref = clip.extra["start"], clip.extra["reference_frame"]
        sl = slice(start, start + FRAMES)
        params = subject.params.map(lambda v, sl=sl: v[sl])
        posed = model(params, subject.delta_g, subject.delta_f[sl]).vertices
        assert level_diff(clip.driving_normals, encode(posed, model, subject.camera)) <= 1
        rgb = torch.from_numpy(to_uint8(render_subject(model, subject).rgb)).permute(0, 3, 1, 2)
        assert level_diff(clip.frames, rgb[sl]) <= 1 and level_diff(clip.reference_image, rgb[ref]) <= 1
        # Δf(i) (wrinkles up to ~0.4-0.9 mm here) is in N^D: the same poses without it render differently
        without = encode(model(params, subject.delta_g).vertices, model, subject.camera)
        assert level_diff(clip.driving_normals, without) > 5


def test_reference_normal_is_the_posed_neutral(written):
    """N^R: ψ = 0, ω = 0, Δg, no Δf, posed with the reference frame's pose; not the reference frame's own mesh."""
    model = written.model
    for path in written.paths:
        clip, subject = ground_truth(written, path)
        ref = clip.extra["reference_frame"]
        params = subject.params.map(lambda v, ref=ref: v[ref:ref + 1].clone())
        expressive = model(params, subject.delta_g, subject.delta_f[ref:ref + 1]).vertices
        params.expression.zero_()
        params.jaw_pose.zero_()
        neutral = model(params, subject.delta_g).vertices
        assert level_diff(clip.reference_normal, encode(neutral, model, subject.camera)[0]) <= 1
        assert level_diff(clip.reference_normal, encode(expressive, model, subject.camera)[0]) > 20
        # same head pose: the silhouettes of neutral and expressive meshes nearly coincide
        mask = clip.reference_normal.bool().any(0)
        other = encode(expressive, model, subject.camera)[0].bool().any(0)
        assert (mask ^ other).float().mean() < 0.02


def test_frames_change_where_driving_normals_change(written):
    for path in written.paths:
        clip = read_clip(path)
        normals, frames = clip.driving_normals.int(), clip.frames.int()
        for k in range(1, FRAMES):
            moved = (normals[k] - normals[0]).abs().amax(0) > 8
            changed = (frames[k] - frames[0]).abs().amax(0) > 2
            empty = ~normals[0].bool().any(0) & ~normals[k].bool().any(0)
            assert moved.float().mean() > 0.01  # the subject moves within the clip
            assert changed[moved].float().mean() > 0.5
            assert not changed[empty].any()  # the background is static


def test_write_subject_clips_errors(tmp_path, coarse_head_model):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        write_subject_clips(tmp_path, 1, num_frames=4, model=coarse_head_model)
    with pytest.raises(ValueError, match="clips_per_subject >= 1"):
        write_subject_clips(tmp_path, 1, clips_per_subject=0, model=coarse_head_model)
    assert not any(tmp_path.iterdir())


def test_datamodule_writes_subject_clips_once(tmp_path):
    dm = VideoDataModule(str(tmp_path), batch_size=2, num_frames=5, resolution=16, synthetic_subjects=1,
                         synthetic_clips_per_subject=2, synthetic_size=16, synthetic_frames=5)
    dm.prepare_data()
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "train/train-0000_000000.safetensors", "train/train-0000_000005.safetensors",
        "val/val-0000_000000.safetensors", "val/val-0000_000005.safetensors"]
    stamps = {f: f.stat().st_mtime_ns for f in files}
    dm.prepare_data()  # clips present: nothing rewritten
    assert {f: f.stat().st_mtime_ns for f in sorted(tmp_path.rglob("*.safetensors"))} == stamps
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == batch["driving_normals"].shape == (2, 5, 3, 16, 16)
    assert batch["reference_image"].shape == batch["reference_normal"].shape == (2, 3, 16, 16)
    assert {s for s in batch["subject_id"]} == {"train-0000"}
    assert {read_clip(f).subject_id for f in dm.val_set.files} == {"val-0000"}


@pytest.mark.parametrize("other", [{"synthetic_clips": 4}, {"sources": ["video.mp4"]}])
def test_datamodule_synthetic_subjects_is_exclusive(tmp_path, other):
    name = next(iter(other))
    first, second = ("sources", "synthetic_subjects") if name == "sources" else ("synthetic_subjects", name)
    with pytest.raises(ValueError, match=f"not both {first} and {second}"):
        VideoDataModule(str(tmp_path), synthetic_subjects=2, **other)
