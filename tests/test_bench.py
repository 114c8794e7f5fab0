"""exp-bench end to end on synthetic subjects laid out like RAVDESS and NeRSemble (3 identities, 112 px, 6 frames).

Reported numbers are checked against independent computations (scikit-image PSNR / SSIM on frames
decoded here, a stub motion extractor with a closed form, the subjects' true head pose).
"""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from expgen.bench import (
    DrivingCopy,
    Manifest,
    ReferenceCopy,
    Scorer,
    load_dataset,
    make_manifest,
    prepare_item,
    run_benchmark,
)
from expgen.bench.cli import main
from exphead.media import read_frames, read_image, to_uint8, write_image, write_video
from exphead.metrics import MotionEstimate

torch.set_num_threads(1)
SIZE, FRAMES = 112, 6
SMALL = ["--size", "112", "--stride", "1", "--num_frames", "4", "--crop", "full"]
QUIET = ["--no_progress"]


@pytest.fixture(scope="module")
def subjects(head_model):
    """Three synthetic identities: uint8 frames ``6 x 112 x 112 x 3``, true landmarks and head rotations."""
    from exphead.synthetic.subject import make_subject, render_subject

    out = []
    with torch.no_grad():
        for seed in (1, 2, 3):
            subject = make_subject(head_model, seed, FRAMES, height=SIZE, width=SIZE)
            renders = render_subject(head_model, subject)
            rotation = subject.params.neck_pose + subject.params.head_pose
            out.append({"frames": to_uint8(renders.rgb), "landmarks": renders.landmarks.numpy(), "rotation": rotation})
    return out


@pytest.fixture(scope="module")
def ravdess_root(subjects, tmp_path_factory):
    """``Actor_0k/02-01-0(k+1)-01-01-01-0k.mp4``: one video-only clip per actor."""
    root = tmp_path_factory.mktemp("ravdess")
    for k, subject in enumerate(subjects, start=1):
        write_video(root / f"Actor_{k:02d}" / f"02-01-0{k + 1}-01-01-01-{k:02d}.mp4", subject["frames"])
    return root


@pytest.fixture(scope="module")
def nersemble_root(subjects, tmp_path_factory):
    """Participants 017, 018 (v2 videos) and 019 (v1 PNG frames per timestep), frontal camera."""
    root = tmp_path_factory.mktemp("nersemble")
    for participant, subject in zip(("017", "018"), subjects):
        write_video(root / participant / "sequences" / "EMO-1" / "images" / "cam_222200037.mp4", subject["frames"])
    for t, frame in enumerate(subjects[2]["frames"]):
        write_image(root / "019" / "sequences" / "EMO-1" / "timesteps" / f"frame_{t:05d}" / "images" /
                    "cam_222200037.png", frame)
    return root


def _decoded(path) -> np.ndarray:
    return np.stack([np.asarray(f) for f in iio.imiter(path)])


def _mtimes(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob("*.json"))}


def test_self_run_matches_skimage_and_resumes_from_cache(ravdess_root, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPPORTRAIT_LPIPS_BACKBONE", str(tmp_path / "missing_alexnet.pth"))
    out = tmp_path / "self"
    args = ["run", "--dataset", "ravdess", "--root", str(ravdess_root), "--protocol", "self", *SMALL,
            "--methods", "reference_copy", "driving_copy", "--metrics", "psnr", "ssim", "lpips", "l1", "csim",
            "--out", str(out), *QUIET]
    assert main(args) == 0
    rows = {r["method"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["items"]) == 3 and all(i["driving"]["frames"] == [1, 2, 3, 4] for i in manifest["items"])
    # independent: decode each clip here, reference = frame 0, ground truth = frames 1-4, scikit-image metrics
    psnrs, ssims, l1s = [], [], []
    for item in manifest["items"]:
        frames = _decoded(ravdess_root / item["driving"]["video"])
        ref, truth = frames[0], frames[1:5]
        psnrs.append(np.mean([peak_signal_noise_ratio(t, ref, data_range=255) for t in truth]))
        ssims.append(np.mean([structural_similarity(t, ref, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                                    use_sample_covariance=False, data_range=255) for t in truth]))
        l1s.append(np.mean(np.abs(truth.astype(float) - ref.astype(float))) / 255)
    copy = rows["reference_copy"]
    assert copy["items"] == 3 and copy["psnr_n"] == 3
    assert copy["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-5)
    assert copy["ssim"] == pytest.approx(np.mean(ssims), abs=1e-5)
    assert copy["l1"] == pytest.approx(np.mean(l1s), abs=1e-6)
    assert copy["csim"] == pytest.approx(1.0, abs=1e-4)  # the reference against itself
    oracle = rows["driving_copy"]
    assert oracle["psnr"] is None and oracle["l1"] == 0.0 and oracle["ssim"] == pytest.approx(1.0)  # PSNR inf
    assert oracle["csim"] < copy["csim"]  # other frames of the same face
    assert "missing_alexnet.pth" in copy["unavailable"]["lpips"] and copy["lpips_n"] == 0
    md = (out / "report.md").read_text()
    assert "LPIPS unavailable" in md and "| driving_copy | inf |" in md
    assert (out / "report.csv").read_text().splitlines()[1].startswith("driving_copy,inf,1.0,nan,0.0")
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 6
    assert read_frames(out / "generated" / "reference_copy" / f"{manifest['items'][0]['id']}.mp4")[0].shape == (
        4, SIZE, SIZE, 3)
    # resume: nothing recomputed; a lost result is recomputed alone
    before = _mtimes(out / "results")
    assert main(args) == 0
    assert _mtimes(out / "results") == before
    lost = out / "results" / "driving_copy" / f"{manifest['items'][1]['id']}.json"
    lost.unlink()
    assert main(args) == 0
    after = _mtimes(out / "results")
    assert {k for k in after if after[k] != before[k]} == {lost.relative_to(out / "results").as_posix()}


def test_manifest_is_seeded_and_reused_as_is(ravdess_root, tmp_path):
    split = ["--dataset", "ravdess", "--root", str(ravdess_root), "--protocol", "self", *SMALL, "--num_items", "2"]
    paths = []
    for seed in (0, 0, 1, 2, 3):
        paths.append(tmp_path / f"m{len(paths)}.json")
        assert main(["manifest", *split, "--seed", str(seed), "--out", str(paths[-1])]) == 0
    texts = [p.read_text() for p in paths]
    assert texts[0] == texts[1]  # same seed, same split
    selections = {tuple(i["id"] for i in json.loads(t)["items"]) for t in texts}
    assert len(selections) > 1  # seeds draw different clips
    out = tmp_path / "run"
    assert main(["run", "--manifest", str(paths[0]), "--methods", "reference_copy", "--metrics", "psnr",
                 "--out", str(out), "--no_progress"]) == 0
    assert Manifest.load(out / "manifest.json").to_json() == Manifest.load(paths[0]).to_json()
    held = (out / "manifest.json").read_text()
    # other split options on the same folder: the manifest there is reused as it is
    assert main(["run", *split[:-2], "--num_items", "3", "--seed", "7", "--methods", "reference_copy",
                 "--metrics", "psnr", "--out", str(out), *QUIET]) == 0
    assert (out / "manifest.json").read_text() == held
    assert len(list((out / "results" / "reference_copy").glob("*.json"))) == 2
    other = next(p for p, t in zip(paths, texts) if json.loads(t)["items"] != json.loads(texts[0])["items"])
    assert main(["run", "--manifest", str(other), "--methods", "reference_copy", "--out", str(out)]) == 2
    assert main(["run", *split[:4], "--protocol", "cross", "--out", str(out)]) == 2


def test_face_crop_frames_the_true_landmarks(ravdess_root, subjects):
    records = load_dataset("ravdess", ravdess_root, select={"identity": ["Actor_02"]})
    manifest = make_manifest(records, "ravdess", ravdess_root, "self", size=SIZE, stride=1, num_frames=4)
    left, top, side = manifest.items[0].driving.box
    truth = subjects[1]["landmarks"][:5]  # frames 0-4 of actor 2
    assert (truth[..., 0] > left).all() and (truth[..., 0] < left + side).all()
    assert (truth[..., 1] > top).all() and (truth[..., 1] < top + side).all()
    extent = np.median((truth.max(1) - truth.min(1)).max(1))
    assert 1.8 < side / extent < 3.2  # exphead's portrait framing: 2.4 x the landmark extent


class _MeanColour:
    """Stub extractor: expression = mean colour, head pose = colour std (closed-form AED / APD); counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frames: torch.Tensor) -> MotionEstimate:
        self.calls += 1
        return MotionEstimate(frames.mean((2, 3)), frames.std((2, 3)))


def test_motion_metrics_plumbing_and_driving_motion_cache(ravdess_root, tmp_path):
    records = load_dataset("ravdess", ravdess_root)
    manifest = make_manifest(records, "ravdess", ravdess_root, "self", size=SIZE, stride=2, num_frames=2, crop="full")
    stub = _MeanColour()
    scorer = Scorer(["aed", "apd"], motion=stub, cache_dir=tmp_path / "cache")
    summary = run_benchmark(manifest, [ReferenceCopy(), DrivingCopy()], tmp_path, scorer, save_videos=False,
                            progress=False)
    assert (summary.computed, summary.cached, summary.failed) == (6, 0, 0)
    assert stub.calls == 3 + 6  # driving motion once per item, generated motion once per result
    expected_aed, expected_apd = [], []
    for item in manifest.items:
        frames = _decoded(ravdess_root / item.driving.video).astype(float) / 255
        ref, drv = frames[0], frames[[2, 4]]
        expected_aed.append(np.abs(drv.mean((1, 2)) - ref.mean((0, 1))).mean())
        expected_apd.append(np.abs(drv.std((1, 2), ddof=1) - ref.std((0, 1), ddof=1)).mean())
        record = json.loads((tmp_path / "results" / "reference_copy" / f"{item.id}.json").read_text())
        assert record["metrics"]["aed"] == pytest.approx(expected_aed[-1], abs=1e-6)
        assert record["metrics"]["apd"] == pytest.approx(expected_apd[-1], abs=1e-6)
        oracle = json.loads((tmp_path / "results" / "driving_copy" / f"{item.id}.json").read_text())
        assert oracle["metrics"] == {"aed": 0.0, "apd": 0.0}
    summary = run_benchmark(manifest, [ReferenceCopy(), DrivingCopy()], tmp_path, scorer, progress=False)
    assert (summary.computed, summary.cached) == (0, 6) and stub.calls == 9
    summary = run_benchmark(manifest, [ReferenceCopy()], tmp_path, scorer, force=True, progress=False)
    assert summary.computed == 3 and stub.calls == 12  # driving motion read from the cache


def test_cross_run_with_the_tracker_on_nersemble(nersemble_root, subjects, tmp_path):
    out = tmp_path / "cross"
    args = ["run", "--dataset", "nersemble", "--root", str(nersemble_root), "--protocol", "cross", *SMALL,
            "--num_frames", "5", "--num_items", "1", "--seed", "1", "--methods", "reference_copy", "driving_copy",
            "--motion_steps", "60", "--motion_size", "112", "--out", str(out), *QUIET]
    assert main(args) == 0
    (item,) = Manifest.load(out / "manifest.json").items
    assert item.reference.identity != item.driving.identity
    assert item.driving.frames == [0, 1, 2, 3, 4] and item.reference.frames == [0]
    rows = {r["method"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["driving_copy"]["aed"] == 0.0 and rows["driving_copy"]["apd"] == 0.0  # same frames, same fit
    assert rows["reference_copy"]["csim"] == pytest.approx(1.0, abs=1e-4)
    assert rows["driving_copy"]["csim"] < 0.99  # another identity
    assert rows["reference_copy"]["apd"] > 0.02 and rows["reference_copy"]["aed"] > 0
    # the tracked driving head turns (yaw, the largest motion) follow the subject's true ones
    driver = subjects[["017", "018", "019"].index(item.driving.identity)]
    tracked = torch.tensor(json.loads((out / "cache" / "motion" / f"{item.id}.json").read_text())["head_pose"])
    truth = driver["rotation"][:5]
    assert torch.corrcoef(torch.stack([tracked[:, 1], truth[:, 1]]))[0, 1] > 0.9


def test_ours_runs_in_the_benchmark_crop(ravdess_root, tmp_path):
    out = tmp_path / "ours"
    args = ["run", "--dataset", "ravdess", "--root", str(ravdess_root), "--protocol", "self", *SMALL,
            "--num_items", "1", "--methods", "ours", "--metrics", "psnr", "csim", "--ours.fit_size", "112",
            "--ours.fit_steps", "10", "--ours.tracker.steps", "40", "--out", str(out), *QUIET]
    assert main(args) == 0
    (record_path,) = (out / "results" / "ours").glob("*.json")
    record = json.loads(record_path.read_text())
    assert "error" not in record and record["num_frames"] == 4 and record["generator"] == "geometric"
    assert record["metrics"]["csim"] > 0.9  # the reference identity is kept (dlib: same person ~0.93+)
    assert 10 < record["metrics"]["psnr"] < 40
    frames, _ = read_frames(out / "generated" / "ours" / f"{record_path.stem}.mp4")
    assert frames.shape == (4, SIZE, SIZE, 3)


def test_prepare_then_score_videos_made_elsewhere(ravdess_root, tmp_path):
    manifest_path = tmp_path / "m.json"
    assert main(["manifest", "--dataset", "ravdess", "--root", str(ravdess_root), "--protocol", "self", *SMALL,
                 "--out", str(manifest_path)]) == 0
    assert main(["prepare", "--manifest", str(manifest_path), "--out", str(tmp_path / "inputs")]) == 0
    manifest = Manifest.load(manifest_path)
    first, second, third = manifest.items
    prepared = prepare_item(manifest, first)
    np.testing.assert_array_equal(read_image(tmp_path / "inputs" / first.id / "reference.png"),
                                  to_uint8(prepared.reference[None])[0])
    generated = tmp_path / "copycat"
    generated.mkdir()
    (generated / f"{first.id}.mp4").write_bytes((tmp_path / "inputs" / first.id / "driving.mp4").read_bytes())
    write_video(generated / f"{second.id}.mp4", to_uint8(prepared.driving[:2]))  # too few frames
    out = tmp_path / "scored"
    assert main(["score", "--manifest", str(manifest_path), "--generated", str(generated), "--metrics", "psnr",
                 "l1", "--out", str(out), *QUIET]) == 0
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["method"] == "copycat" and (row["items"], row["failed"]) == (1, 2)
    assert 30 < row["psnr"] < 60  # the ground truth after one H.264 round trip
    record = json.loads((out / "results" / "copycat" / f"{second.id}.json").read_text())
    assert "2 frames" in record["error"]
    assert "no generated video" in json.loads((out / "results" / "copycat" / f"{third.id}.json").read_text())["error"]
    assert "1 of 3 items scored" in (out / "report.md").read_text()


def test_cli_errors_exit_2(tmp_path):
    assert main(["run", "--methods", "reference_copy", "--out", str(tmp_path / "x")]) == 2  # no manifest, no dataset
    assert main(["manifest", "--dataset", "ravdess", "--root", str(tmp_path / "none"), "--protocol", "self",
                 "--out", str(tmp_path / "m.json")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["run", "--methods", "liveportrait", "--out", str(tmp_path)]) == 2
