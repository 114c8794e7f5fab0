"""exp-bench report: averages over the items every method scored, one Table-1-style table over a self and a cross
run, the paper's rows beside it, what ran and what scored, and LPIPS refused without the verified backbone."""

import csv
import json
import math

import pytest

from expgen.bench.paper import paper_table1
from expgen.bench.protocols import BenchItem, ClipFrames, Manifest
from expgen.bench.report import aggregate, load_run, write_report

VERIFIED = {"net_type": "alex", "file": "alexnet-owt-7be5be79.pth", "path": "/w/alexnet-owt-7be5be79.pth",
            "sha256": "7be5be79" + "0" * 56, "verified": True}
SCORER = {"csim": {"name": "arcface", "model": "/m/w600k_r50.onnx", "sha256": "abcdef0123456789" * 4},
          "motion": {"extractor": "mediapipe", "mediapipe": "0.10.21"}, "lpips": VERIFIED}
OURS = {"config": {"size": 64, "fit_size": 96, "fit_steps": 60, "tracker": {"steps": 200}, "device": "cpu",
                   "dtype": "float32", "seed": 0},
        "components": {"generator": {"generator": "diffusion", "weights": "/w/gen", "weights_fingerprint": "f00d"},
                       "transfer": {"weights": "/w/transfer", "fingerprint": "beef"},
                       "head_model": {"model_path": "/w/SMPLX_NEUTRAL.npz", "level": 2}}}
SETTINGS = {"ours": OURS, "other": {"folder": "/videos/lp", "description": "LivePortrait 1.0, default options"},
            "driving_copy": {"bound": "the driving frames"}}


def _run(folder, protocol, scores, scorer=SCORER):
    """A run folder written by hand: ``scores[method][item] = {metric: value}`` (None = failed item)."""
    items = sorted({i for per_item in scores.values() for i in per_item})
    clip = ClipFrames("a.mp4", "A", [0], [0, 0, 64])
    Manifest("folder", "/data", protocol, 64, items=[BenchItem(i, clip, clip) for i in items]).save(
        folder / "manifest.json")
    for method, per_item in scores.items():
        for item, metrics in per_item.items():
            record = {"item": item, "method": method, "key": {"method": SETTINGS[method], "scorer": scorer}}
            record.update({"error": "ValueError: boom"} if metrics is None else {"metrics": metrics})
            if method == "ours":
                record["components"] = {"reference_maps": {"normal": "onnx:/w/david_normal.onnx"}}
            path = folder / "results" / method / f"{item}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
    return folder


def _self_run(folder):
    oracle = {"psnr": math.inf, "ssim": 1.0, "l1": 0.0, "csim": 0.95}
    return _run(folder, "self", {
        "ours": {"i1": {"psnr": 20.0, "ssim": 0.5, "lpips": 0.2, "l1": 0.1, "csim": 0.9},
                 "i2": {"psnr": 30.0, "ssim": 0.7, "lpips": 0.4, "l1": 0.3, "csim": math.nan},  # no face
                 "i3": None},
        "other": {"i1": {"psnr": 22.0, "ssim": 0.4, "l1": 0.05, "csim": 0.8},
                  "i2": {"psnr": 21.0, "ssim": 0.4, "l1": 0.05, "csim": 0.8},
                  "i3": {"psnr": 50.0, "ssim": 0.4, "l1": 0.05, "csim": 0.8}},
        "driving_copy": {"i1": oracle, "i2": oracle, "i3": oracle}})


def test_values_average_the_items_every_method_scored(tmp_path):
    rows = {r["method"]: r for r in aggregate(load_run(_self_run(tmp_path)))}
    ours, other = rows["ours"], rows["other"]
    assert (ours["items"], ours["failed"], ours["total"]) == (2, 1, 3)
    # ours failed on i3: every column averages i1 and i2 only, for every method
    assert ours["psnr"] == pytest.approx(25.0) and other["psnr"] == pytest.approx(21.5) and other["psnr_n"] == 2
    assert other["psnr_own"] == pytest.approx(31.0) and other["psnr_own_n"] == 3
    # ours found no face in i2: CSIM averages i1 alone
    assert ours["csim"] == pytest.approx(0.9) and other["csim"] == pytest.approx(0.8) and ours["csim_n"] == 1
    assert math.isinf(rows["driving_copy"]["psnr"]) and rows["driving_copy"]["psnr_n"] == 2
    # LPIPS: only ours reports it (the copies do not), so it averages ours' items
    assert ours["lpips"] == pytest.approx(0.3) and ours["lpips_n"] == 2 and math.isnan(other["lpips"])
    assert math.isnan(ours["aed"]) and ours["aed_n"] == 0


def test_lpips_of_an_unverified_backbone_is_refused(tmp_path):
    unverified = {**SCORER, "lpips": {**VERIFIED, "verified": False}}
    forged = {**SCORER, "lpips": {**VERIFIED, "sha256": "0" * 64}}  # says verified, hash does not match
    for name, scorer in (("unverified", unverified), ("forged", forged)):
        run = _run(tmp_path / name, "self", {"ours": {"i1": {"psnr": 20.0, "lpips": 0.2}}}, scorer)
        (row,) = aggregate(load_run(run))
        assert math.isnan(row["lpips"]) and row["lpips_n"] == 0 and row["psnr"] == 20.0
        assert "hash-verified torchvision backbone" in row["unavailable"]["lpips"]


def test_table_one_over_a_self_and_a_cross_run(tmp_path):
    self_dir = _self_run(tmp_path / "self")
    cross_dir = _run(tmp_path / "cross", "cross", {
        "ours": {"c1": {"aed": 0.2, "apd": 0.01, "csim": 0.7, "jitter": 1.2, "face_missing": 0.0},
                 "c2": {"aed": 0.4, "apd": 0.03, "csim": 0.9, "jitter": 1.4, "face_missing": 0.25}}})
    paths = write_report([self_dir, cross_dir], tmp_path / "table")
    md = paths["md"].read_text()
    lines = md.splitlines()
    assert lines[2] == ("| Method | Source | Self PSNR ↑ | Self SSIM ↑ | Self LPIPS ↓ | Self L1 ↓ | Self AED ↓ | "
                        "Self APD ↓ | Self CSIM ↑ | Self Jitter ↓ | Self No-face ↓ | Cross AED ↓ | Cross APD ↓ | "
                        "Cross CSIM ↑ | Cross Jitter ↓ | Cross No-face ↓ |")
    ours_line = next(line for line in lines if line.startswith("| ours |"))
    # best non-copy value in bold: ours wins PSNR and SSIM, other wins L1; driving_copy's inf is never bold
    assert ours_line.startswith("| ours | measured here | **25.0000** | **0.60000** | 0.30000 | 0.20000 | n/a |")
    assert ours_line.endswith("| 0.30000 | 0.02000 | 0.80000 | 1.30000 | 0.12500 |")
    assert "| driving_copy | measured here | inf |" in md and "| other | measured here | 21.5000 |" in md
    assert "| items averaged (every method scored) |  | 2 | 2 | 2 | 2 | 0 | 0 | 1 | 0 | 0 | 2 | 2 | 2 | 2 | 2 |" in md
    assert ("| Wan-Animate [4] | paper, Table 1 (their data and extractors; not measured here) | 26.5109 | 0.84360 | "
            "0.21397 | 0.02183 | 0.14415 | 0.00955 | 0.82566 | — | — | 0.22156 | 0.01745 | 0.72637 | — | — |") in md
    assert len([line for line in lines if "| paper, Table 1" in line]) == 7
    assert "ours (self): 2 of 3 items scored, 1 failed." in md
    assert ("CSIM embedder: ArcFace (w600k_r50.onnx, sha256 abcdef012345). AED / APD / jitter / no-face extractor: "
            "mediapipe face mesh 0.10.21 (independent of ExpPortrait). LPIPS: alex backbone "
            "/w/alexnet-owt-7be5be79.pth (sha256 7be5be7900000000, verified).") in md
    assert ("- **ours**: generator diffusion (weights /w/gen (fingerprint f00d)); transfer /w/transfer (fingerprint "
            'beef); head model /w/SMPLX_NEUTRAL.npz (level 2); reference maps {"normal": '
            '"onnx:/w/david_normal.onnx"}; fit 96 px / 60 steps, tracker 200 steps, cpu float32, seed 0') in md
    assert "- **other**: LivePortrait 1.0, default options (read from /videos/lp)" in md
    assert "- **driving_copy**: bound, no model: the driving frames" in md
    with paths["csv"].open() as handle:
        table = {row["method"]: row for row in csv.DictReader(handle)}
    assert float(table["ours"]["self_psnr"]) == 25.0 and float(table["ours"]["cross_aed"]) == pytest.approx(0.3)
    assert table["other"]["cross_aed"] == "" and table["driving_copy"]["self_psnr"] == "inf"
    data = json.loads(paths["json"].read_text())
    assert data["benchmark"] == "exp-bench" and len(data["rows"]) == 4
    assert next(r for r in data["rows"] if r["method"] == "driving_copy")["psnr"] is None  # strict JSON
    assert [run["protocol"] for run in data["meta"]["runs"]] == ["self", "cross"]
    assert data["paper_table1"][0] == {"method": "LivePortrait [12]", "source": paper_table1()[0]["source"],
                                       "self_psnr": 23.2897, "self_ssim": 0.82985, "self_lpips": 0.37339,
                                       "self_l1": 0.04619, "self_aed": 0.12924, "self_apd": 0.02144,
                                       "self_csim": 0.82972, "cross_aed": 0.28641, "cross_apd": 0.23048,
                                       "cross_csim": 0.72869}
    assert data["methods"]["ours"]["settings"]["components"]["generator"]["weights_fingerprint"] == "f00d"
    assert data["scoring"][str(self_dir)]["labels"]["csim"] == ["ArcFace (w600k_r50.onnx, sha256 abcdef012345)"]
    page = paths["html"].read_text()
    assert "<b>25.0000</b>" in page and "<tr class=paper>" in page and "<h2>Methods</h2>" in page
