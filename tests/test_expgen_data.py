"""Clip format round trip, exact synthetic normals (finite differences), VideoDataModule splits and batches."""

import pytest
import torch

from expgen.data import Clip, ClipDataset, VideoDataModule, read_clip, read_metadata, write_clip
from expgen.data.synthetic import _DEPTH, SyntheticSubject, make_clip, render_ellipsoid, write_synthetic_dataset


def small_clip(subject_id="s0", frames=5, size=16, seed=0):
    return make_clip(SyntheticSubject.random(subject_id, torch.Generator().manual_seed(seed)), frames, size)


def test_clip_round_trip_is_exact(tmp_path):
    clip = small_clip()
    clip.extra["camera"] = "orthographic"
    path = write_clip(tmp_path / "a.safetensors", clip)
    back = read_clip(path)
    for key in ("frames", "driving_normals", "reference_image", "reference_normal"):
        assert torch.equal(getattr(back, key), getattr(clip, key))
    assert (back.subject_id, back.fps, back.extra["camera"]) == ("s0", 25.0, "orthographic")
    assert read_metadata(path)["format_version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temporary file left


def test_clip_validation_errors(tmp_path):
    clip = small_clip()
    bad = Clip(clip.frames.float(), clip.driving_normals, clip.reference_image, clip.reference_normal, "x", 25.0)
    with pytest.raises(ValueError, match="uint8"):
        write_clip(tmp_path / "b.safetensors", bad)
    bad = Clip(clip.frames, clip.driving_normals, clip.reference_image[:, :8], clip.reference_normal, "x", 25.0)
    with pytest.raises(ValueError, match="reference_image must be 3 x 16 x 16"):
        write_clip(tmp_path / "b.safetensors", bad)


def test_synthetic_normals_are_exact_surface_normals():
    """Normals equal normalize(∂Z/∂x, ∂Z/∂y, -1) of the front depth Z = -c sqrt(1 - r²) (central differences)."""
    subject = SyntheticSubject.random("s", torch.Generator().manual_seed(0))
    size, centre, axes = 64, (0.1, -0.05), (0.5, 0.4)
    _, n = render_ellipsoid(subject, centre, axes, size)
    coords = ((torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    h = 1e-5

    def depth(xx, yy):
        r2 = ((xx - centre[0]) / axes[0]) ** 2 + ((yy - centre[1]) / axes[1]) ** 2
        return -_DEPTH * torch.sqrt(1 - r2)

    r2 = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
    inner = r2 < 0.9
    zx = (depth(x + h, y) - depth(x - h, y)) / (2 * h)
    zy = (depth(x, y + h) - depth(x, y - h)) / (2 * h)
    fd = torch.stack([zx, zy, -torch.ones_like(zx)])
    fd = fd / fd.norm(dim=0, keepdim=True)
    torch.testing.assert_close(n.double()[:, inner], fd[:, inner], atol=1e-5, rtol=0)
    assert torch.all(n[:, r2 >= 1] == 0)
    torch.testing.assert_close(n[:, r2 < 1].norm(dim=0), torch.ones(int((r2 < 1).sum())))
    assert torch.all(n[2, r2 < 1] < 0)  # visible surfaces face the camera (-z in OpenCV camera space)


def test_synthetic_frames_are_shaded_by_their_normals():
    subject = SyntheticSubject.random("s", torch.Generator().manual_seed(3))
    image, n = render_ellipsoid(subject, (0.0, 0.0), (0.5, 0.5), 32)
    light = torch.tensor(subject.light) / torch.tensor(subject.light).norm()
    shade = 0.25 + 0.75 * (n * light[:, None, None]).sum(0).clamp_min(0)
    ratio = image / shade
    fg = n.abs().sum(0) > 0
    albedo = torch.tensor(subject.albedo)
    stripe = torch.tensor(subject.stripe)
    is_albedo = (ratio[:, fg] - albedo[:, None]).abs().max(0).values < 1e-5
    is_stripe = (ratio[:, fg] - stripe[:, None]).abs().max(0).values < 1e-5
    assert torch.all(is_albedo | is_stripe) and is_albedo.any() and is_stripe.any()


def test_datamodule_subfolders_and_batches(tmp_path):
    dm = VideoDataModule(str(tmp_path), batch_size=2, num_frames=5, resolution=16, synthetic_clips=4,
                         synthetic_size=16, synthetic_frames=9)
    dm.prepare_data()
    assert len(list((tmp_path / "train").glob("*.safetensors"))) == 4
    assert len(list((tmp_path / "val").glob("*.safetensors"))) == 1
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 5, 3, 16, 16) and batch["driving_normals"].shape == (2, 5, 3, 16, 16)
    assert batch["reference_image"].shape == (2, 3, 16, 16) and batch["reference_normal"].shape == (2, 3, 16, 16)
    assert batch["frames"].dtype == torch.float32 and 0 <= batch["frames"].min() and batch["frames"].max() <= 1
    val = next(iter(dm.val_dataloader()))
    clip = read_clip(dm.val_set.files[0])
    torch.testing.assert_close(val["frames"][0], clip.frames[:5].float() / 255)
    dm.prepare_data()  # clips present: nothing rewritten
    assert len(list(tmp_path.rglob("*.safetensors"))) == 5


def test_datamodule_flat_folder_splits_by_subject(tmp_path):
    for i in range(10):
        write_clip(tmp_path / f"c{i}.safetensors", small_clip(f"subj{i % 5}", seed=i))
    dm = VideoDataModule(str(tmp_path), val_fraction=0.2)
    splits = dm.split_files()
    val_subjects = {read_metadata(f)["subject_id"] for f in splits["val"]}
    train_subjects = {read_metadata(f)["subject_id"] for f in splits["train"]}
    assert val_subjects == {"subj4"} and len(splits["val"]) == 2
    assert not val_subjects & train_subjects and len(splits["train"]) == 8


def test_dataset_errors(tmp_path):
    path = write_clip(tmp_path / "c.safetensors", small_clip(frames=5))
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        ClipDataset([path], num_frames=4)
    with pytest.raises(ValueError, match="fewer than num_frames=9"):
        ClipDataset([path], num_frames=9)[0]
    with pytest.raises(ValueError, match="expected 32x32"):
        ClipDataset([path], resolution=32)[0]
    with pytest.raises(FileNotFoundError, match="synthetic_clips"):
        VideoDataModule(str(tmp_path / "empty")).setup("fit")


def test_write_synthetic_dataset_holds_out_subjects(tmp_path):
    paths = write_synthetic_dataset(tmp_path, num_train=3, num_val=2, num_frames=5, size=16)
    ids = [read_metadata(p)["subject_id"] for p in paths]
    assert ids == ["train-0000", "train-0001", "train-0002", "val-0000", "val-0001"]
