"""exp-bench end to end on synthetic subjects laid out like RAVDESS and NeRSemble (3 identities, 112 px, 6 frames)
and on the real "carphone" clip.

Reported numbers are checked against independent computations (scikit-image PSNR / SSIM on frames
decoded here, a stub motion extractor with a closed form, the subjects' true head pose).
"""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torchvision
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
from exphead.media import read_frames, read_image, to_tensor, to_uint8, write_image, write_video
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
    torch.manual_seed(0)  # a random AlexNet under torchvision's file name: refused by its SHA-256, never scored
    random_backbone = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet().state_dict(), random_backbone)
    monkeypatch.setenv("EXPPORTRAIT_LPIPS_BACKBONE", str(random_backbone))
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
    assert "does not start with 7be5be79" in copy["unavailable"]["lpips"] and copy["lpips_n"] == 0
    assert copy["lpips"] is None  # NaN in strict JSON
    record = json.loads(next((out / "results" / "reference_copy").glob("*.json")).read_text())
    assert "lpips" not in record["metrics"] and record["key"]["scorer"]["lpips"] is None
    md = (out / "report.md").read_text()
    assert "LPIPS unavailable" in md and "| driving_copy | measured here | inf |" in md
    assert "CSIM embedder: dlib (not comparable to ArcFace)" in md
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
            "--motion", "tracker", "--motion_steps", "60", "--motion_size", "112", "--out", str(out), *QUIET]
    assert main(args) == 0
    (item,) = Manifest.load(out / "manifest.json").items
    assert item.reference.identity != item.driving.identity
    assert item.driving.frames == [0, 1, 2, 3, 4] and item.reference.frames == [0]
    rows = {r["method"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["driving_copy"]["aed"] == 0.0 and rows["driving_copy"]["apd"] == 0.0  # same frames, same fit
    assert rows["reference_copy"]["csim"] == pytest.approx(1.0, abs=1e-4)
    assert rows["driving_copy"]["csim"] < 0.99  # another identity
    assert rows["reference_copy"]["apd"] > 0.02 and rows["reference_copy"]["aed"] > 0
    assert "the motion extractor TrackerMotionExtractor gives no landmarks" in rows["driving_copy"]["unavailable"][
        "jitter"]
    assert "exphead SMPL-X tracker (ExpPortrait's own tracker: favours ours)" in (out / "report.md").read_text()
    # the tracked driving head turns (yaw, the largest motion) follow the subject's true ones
    driver = subjects[["017", "018", "019"].index(item.driving.identity)]
    tracked = torch.tensor(json.loads((out / "cache" / "motion" / f"{item.id}.json").read_text())["head_pose"])
    truth = driver["rotation"][:5]
    assert torch.corrcoef(torch.stack([tracked[:, 1], truth[:, 1]]))[0, 1] > 0.9


def test_ours_runs_in_the_benchmark_crop(ravdess_root, tmp_path):
    out = tmp_path / "ours"
    args = ["run", "--dataset", "ravdess", "--root", str(ravdess_root), "--protocol", "self", *SMALL,
            "--num_items", "1", "--methods", "ours", "reference_copy", "--metrics", "psnr", "csim", "aed", "apd",
            "--motion", "tracker", "--motion_steps", "60", "--motion_size", "112", "--ours.fit_size", "112",
            "--ours.fit_steps", "10", "--ours.tracker.steps", "40", "--out", str(out), *QUIET]
    assert main(args) == 0
    (record_path,) = (out / "results" / "ours").glob("*.json")
    record = json.loads(record_path.read_text())
    copy = json.loads((out / "results" / "reference_copy" / record_path.name).read_text())
    assert "error" not in record and record["num_frames"] == 4 and record["generator"] == "geometric"
    assert record["components"]["reference_maps"] == "landmarks only"
    assert record["key"]["method"]["components"]["generator"]["generator"] == "geometric"
    md = (out / "report.md").read_text()
    assert "- **ours**: generator geometric (no weights); transfer none" in md and "reference maps" in md
    assert record["metrics"]["csim"] > 0.9  # the reference identity is kept (dlib: same person ~0.93+)
    assert 10 < record["metrics"]["psnr"] < 40
    # ... and it moves as the ground truth does, which a copy of the reference does not (measured 0.62 vs 0.85
    # expression and 0.054 vs 0.063 pose distance to the ground truth's tracked motion)
    ours, still = record["metrics"], copy["metrics"]
    assert ours["aed"] < 0.85 * still["aed"] and ours["apd"] < still["apd"], (ours, still)
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
                 "l1", "--describe", "copied driving videos", "--out", str(out), *QUIET]) == 0
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    assert row["method"] == "copycat" and (row["items"], row["failed"]) == (1, 2)
    assert 30 < row["psnr"] < 60  # the ground truth after one H.264 round trip
    record = json.loads((out / "results" / "copycat" / f"{second.id}.json").read_text())
    assert "2 frames" in record["error"]
    assert "no generated video" in json.loads((out / "results" / "copycat" / f"{third.id}.json").read_text())["error"]
    md = (out / "report.md").read_text()
    assert "1 of 3 items scored" in md and "- **copycat**: copied driving videos (read from" in md


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["run", "--methods", "reference_copy", "--out", str(tmp_path / "x")]) == 2  # no manifest, no dataset
    assert main(["manifest", "--dataset", "ravdess", "--root", str(tmp_path / "none"), "--protocol", "self",
                 "--out", str(tmp_path / "m.json")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert main(["run", "--methods", "liveportrait", "--out", str(tmp_path)]) == 2
    manifest = tmp_path / "m.json"
    Manifest("folder", str(tmp_path), "self", 64).save(manifest)
    capsys.readouterr()
    for bad, reason in ((["--csim", "arcface"], "--csim arcface needs --arcface_model PATH"),
                        (["--arcface_model", str(manifest)], "add --csim arcface"),
                        (["--motion", "openface"], "openface")):
        assert main(["run", "--manifest", str(manifest), "--methods", "reference_copy", *bad,
                     "--out", str(tmp_path / "y")]) == 2
        assert reason in capsys.readouterr().err


class _TinyArcFace(torch.nn.Module):
    """A stand-in ArcFace: 112 x 112 crop -> 2 x 2 average colours -> fixed linear map to 8 values."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 8)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(8, 12, generator=torch.Generator().manual_seed(7)))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1))


def _split_file(path, dataset: str, clips: list[tuple[str, str, str]], stride: int, num_frames: int) -> str:
    """A test-only split: every clip in self, each clip driving the next one's identity in cross."""
    ids = [c[0] for c in clips]
    data = {"format": "exp-bench-split/1", "name": "test", "dataset": dataset, "rule": ["all clips of the tree"],
            "clips": [{"id": i, "video": v, "identity": who} for i, v, who in clips],
            "self": {"stride": stride, "num_frames": num_frames, "reference_frame": 0, "items": ids},
            "cross": {"stride": stride, "num_frames": num_frames, "reference_frame": 0,
                      "pairs": [{"driving": a, "reference": b} for a, b in zip(ids, ids[1:] + ids[:1])]}}
    path.write_text(json.dumps(data))
    return str(path)


def test_nersemble_split_cross_run_with_arcface_and_the_independent_extractor(nersemble_root, tmp_path):
    from exphead.metrics.face_embedding import align_arcface
    from exphead.tracking.faces import main_faces, make_face_detector

    pytest.importorskip("onnxruntime")
    net = _TinyArcFace().eval()
    model = tmp_path / "tiny_arcface.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(model), input_names=["input.1"], dynamo=False)
    sources = {"017": "017/sequences/EMO-1/images/cam_222200037.mp4",
               "018": "018/sequences/EMO-1/images/cam_222200037.mp4",
               "019": "019/sequences/EMO-1/timesteps/*/images/cam_222200037.png"}  # v1 frames: a pattern
    split = _split_file(tmp_path / "split.json", "nersemble", [(f"{p}_EMO-1", v, p) for p, v in sources.items()],
                        1, 5)
    out = tmp_path / "cross"
    args = ["run", "--dataset", "nersemble", "--root", str(nersemble_root), "--protocol", "cross", "--split", split,
            "--size", "112", "--methods", "reference_copy", "driving_copy", "--metrics", "aed", "apd", "csim",
            "jitter", "face_missing", "--csim", "arcface", "--arcface_model", str(model), "--out", str(out), *QUIET]
    assert main(args) == 0
    manifest = Manifest.load(out / "manifest.json")
    assert [i.id for i in manifest.items] == ["017_EMO-1__018_EMO-1", "018_EMO-1__019_EMO-1", "019_EMO-1__017_EMO-1"]
    assert manifest.split.startswith("test: split.json (sha256") and manifest.stride == 1
    assert all(i.driving.frames == [0, 1, 2, 3, 4] and i.reference.frames == [0] for i in manifest.items)
    assert all(i.driving.box[2] < 112 for i in manifest.items)  # face crops found on the data, pinned here
    rows = {r["method"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    copy, oracle = rows["reference_copy"], rows["driving_copy"]
    assert (oracle["aed"], oracle["apd"], oracle["jitter"], oracle["face_missing"]) == (0.0, 0.0, 1.0, 0.0)
    assert copy["jitter"] == 0.0 and copy["face_missing"] == 0.0 and copy["aed"] > 0.005 and copy["apd"] > 0.01
    assert copy["csim"] == pytest.approx(1.0, abs=1e-6) and copy["csim_n"] == 3
    # CSIM of the driving frames, recomputed here: MTCNN's five points, ArcFace's template, the torch net
    detector, sims = make_face_detector("mtcnn"), []
    for item in manifest.items:
        prepared = prepare_item(manifest, item)
        images = to_uint8(torch.cat([prepared.reference[None], prepared.driving]))
        crops = [align_arcface(image, face.five) for image, face in zip(images, main_faces(detector, images))]
        with torch.no_grad():
            emb = net((torch.from_numpy(np.stack(crops)).float().permute(0, 3, 1, 2) - 127.5) / 127.5)
        sims.append(torch.nn.functional.cosine_similarity(emb[1:], emb[:1]).mean().item())
    assert oracle["csim"] == pytest.approx(np.mean(sims), abs=1e-4) and oracle["csim"] < 0.999
    md = (out / "report.md").read_text()
    assert "| Cross AED ↓ | Cross APD ↓ | Cross CSIM ↑ | Cross Jitter ↓ | Cross No-face ↓ |" in md
    assert "| items averaged (every method scored) |  | 3 | 3 | 3 | 3 | 3 |" in md
    assert "CSIM embedder: ArcFace (tiny_arcface.onnx, sha256" in md and "mediapipe face mesh" in md
    assert "| X-NeMo [53] | paper, Table 1" in md and "0.17092 | 0.02101 | 0.72164 | — | — |" in md
    before = _mtimes(out / "results")
    assert main(args) == 0 and _mtimes(out / "results") == before  # the pinned manifest and results are reused
    assert main([a if a != "cross" else "self" for a in args]) == 2  # another protocol on the same folder


def test_ravdess_split_self_run_scores_the_split_frames(ravdess_root, tmp_path):
    clips = [(p.stem, p.relative_to(ravdess_root).as_posix(), p.parent.name)
             for p in sorted(ravdess_root.rglob("*.mp4"))]
    split = _split_file(tmp_path / "split.json", "ravdess", clips, 2, 2)
    out = tmp_path / "self"
    assert main(["run", "--dataset", "ravdess", "--root", str(ravdess_root), "--protocol", "self", "--split", split,
                 "--size", "112", "--crop", "full", "--methods", "reference_copy", "--metrics", "psnr", "aed",
                 "face_missing", "--out", str(out), *QUIET]) == 0
    manifest = Manifest.load(out / "manifest.json")
    assert [i.id for i in manifest.items] == [c[0] for c in clips]
    assert all(i.driving.frames == [2, 4] and i.reference.frames == [0] for i in manifest.items)
    (row,) = json.loads((out / "report.json").read_text())["rows"]
    expected = [np.mean([peak_signal_noise_ratio(f, frames[0], data_range=255) for f in frames[[2, 4]]])
                for frames in (_decoded(ravdess_root / c[1]) for c in clips)]
    assert row["psnr"] == pytest.approx(np.mean(expected), rel=1e-5) and row["face_missing"] == 0.0


def _warped(frames: torch.Tensor, sigma_px: float, seed: int = 0) -> torch.Tensor:
    """Each frame bent by its own smooth random warp (3 x 3 control offsets of ``sigma_px``): the faces' shapes
    flicker as a generator's do, which no similarity transform can undo."""
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = frames.shape
    grid = torch.nn.functional.affine_grid(torch.eye(2, 3)[None].expand(n, -1, -1), frames.shape, align_corners=False)
    offsets = torch.randn(n, 2, 3, 3, generator=gen) * sigma_px * 2 / w
    offsets = torch.nn.functional.interpolate(offsets, size=(h, w), mode="bicubic", align_corners=True)
    return torch.nn.functional.grid_sample(frames, grid + offsets.permute(0, 2, 3, 1), padding_mode="border",
                                           align_corners=False)


def test_jitter_ranks_a_jittered_copy_of_a_real_video_below_the_video(tmp_path):
    from expgen.examples import real_driving_video

    frames, fps = read_frames(real_driving_video())
    write_video(tmp_path / "data" / "carphone" / "carphone.mp4", frames[:30], fps)
    manifest = tmp_path / "m.json"
    assert main(["manifest", "--dataset", "folder", "--root", str(tmp_path / "data"), "--protocol", "self", "--size",
                 "128", "--stride", "1", "--num_frames", "24", "--out", str(manifest)]) == 0
    assert main(["prepare", "--manifest", str(manifest), "--out", str(tmp_path / "inputs")]) == 0
    (item,) = Manifest.load(manifest).items
    driving = tmp_path / "inputs" / item.id / "driving.mp4"
    (tmp_path / "steady").mkdir()
    (tmp_path / "steady" / f"{item.id}.mp4").write_bytes(driving.read_bytes())
    write_video(tmp_path / "shaken" / f"{item.id}.mp4", _warped(to_tensor(read_frames(driving)[0]), 1.0), fps)
    for name in ("steady", "shaken"):
        assert main(["score", "--manifest", str(manifest), "--generated", str(tmp_path / name), "--metrics", "jitter",
                     "face_missing", "aed", "--out", str(tmp_path / "run"), *QUIET]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "run" / "report.json").read_text())["rows"]}
    steady, shaken = rows["steady"], rows["shaken"]
    assert steady["face_missing"] == shaken["face_missing"] == 0.0
    assert 0.8 < steady["jitter"] < 1.3  # the driving video itself, after one more H.264 round trip: ~1.15
    assert shaken["jitter"] > 2 * steady["jitter"]  # ~2.85: a 1-pixel wobble of the face's shape
    table = [line.split(" | ") for line in (tmp_path / "run" / "report.md").read_text().splitlines()[2:6]]
    column = table[0].index("Self Jitter ↓")
    assert {cells[0]: cells[column] for cells in table[2:]} == {"| steady": f"**{steady['jitter']:.5f}**",
                                                                "| shaken": f"{shaken['jitter']:.5f}"}
