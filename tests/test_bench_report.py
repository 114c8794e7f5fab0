"""exp-bench report: aggregation over items, one Table-1-style table over a self and a cross run."""

import csv
import json
import math

import pytest

from expgen.bench.protocols import BenchItem, ClipFrames, Manifest
from expgen.bench.report import aggregate, load_run, write_report


def _run(folder, protocol, scores):
    """A run folder written by hand: ``scores[method][item] = {metric: value}`` (None = failed item)."""
    items = sorted({i for per_item in scores.values() for i in per_item})
    clip = ClipFrames("a.mp4", "A", [0], [0, 0, 64])
    Manifest("folder", "/data", protocol, 64, items=[BenchItem(i, clip, clip) for i in items]).save(
        folder / "manifest.json")
    for method, per_item in scores.items():
        for item, metrics in per_item.items():
            record = {"item": item, "method": method}
            record.update({"error": "ValueError: boom"} if metrics is None else
                          {"metrics": metrics, "unavailable": {"lpips": "no backbone file"}})
            path = folder / "results" / method / f"{item}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
    return folder


def test_table_one_over_a_self_and_a_cross_run(tmp_path):
    self_dir = _run(tmp_path / "self", "self", {
        "ours": {"i1": {"psnr": 20.0, "ssim": 0.5, "l1": 0.1, "csim": 0.9},
                 "i2": {"psnr": 30.0, "ssim": 0.7, "l1": 0.3, "csim": math.nan},  # no face: left out of CSIM
                 "i3": None},
        "other": {"i1": {"psnr": 22.0, "ssim": 0.4, "l1": 0.05, "csim": 0.8},
                  "i2": {"psnr": 21.0, "ssim": 0.4, "l1": 0.05, "csim": 0.8},
                  "i3": {"psnr": 23.0, "ssim": 0.4, "l1": 0.05, "csim": 0.8}},
        "driving_copy": {"i1": {"psnr": math.inf, "ssim": 1.0, "l1": 0.0, "csim": 0.95}}})
    cross_dir = _run(tmp_path / "cross", "cross", {"ours": {"c1": {"aed": 0.2, "apd": 0.01, "csim": 0.7},
                                                            "c2": {"aed": 0.4, "apd": 0.03, "csim": 0.9}}})
    rows = {r["method"]: r for r in aggregate(load_run(self_dir))}
    ours = rows["ours"]
    assert (ours["items"], ours["failed"], ours["total"]) == (2, 1, 3)
    assert ours["psnr"] == pytest.approx(25.0) and ours["l1"] == pytest.approx(0.2)
    assert ours["csim"] == pytest.approx(0.9) and ours["csim_n"] == 1
    assert math.isnan(ours["lpips"]) and ours["unavailable"]["lpips"] == "no backbone file"
    assert math.isinf(rows["driving_copy"]["psnr"])

    paths = write_report([self_dir, cross_dir], tmp_path / "table")
    md = paths["md"].read_text()
    header = md.splitlines()[2]
    assert header.startswith("| Method | Self PSNR ↑ | Self SSIM ↑ | Self LPIPS ↓ | Self L1 ↓ | Self AED ↓")
    assert header.endswith("| Cross AED ↓ | Cross APD ↓ | Cross CSIM ↑ |")
    ours_line = next(line for line in md.splitlines() if line.startswith("| ours |"))
    # best non-copy value in bold: ours wins PSNR and SSIM, other wins L1; driving_copy's inf is never bold
    assert "**25.0000**" in ours_line and "**0.60000**" in ours_line and "0.20000 |" in ours_line
    assert ours_line.endswith("| 0.30000 | 0.02000 | 0.80000 |")
    assert "| driving_copy | inf |" in md and "**0.05000**" in md
    assert "ours (self): 2 of 3 items scored, 1 failed." in md and "LPIPS unavailable: no backbone file" in md
    with paths["csv"].open() as handle:
        table = {row["method"]: row for row in csv.DictReader(handle)}
    assert float(table["ours"]["self_psnr"]) == 25.0 and float(table["ours"]["cross_aed"]) == pytest.approx(0.3)
    assert table["other"]["cross_aed"] == "" and table["driving_copy"]["self_psnr"] == "inf"
    data = json.loads(paths["json"].read_text())
    assert data["benchmark"] == "exp-bench" and len(data["rows"]) == 4
    assert next(r for r in data["rows"] if r["method"] == "driving_copy")["psnr"] is None  # strict JSON
    assert [run["protocol"] for run in data["meta"]["runs"]] == ["self", "cross"]
    assert "<b>25.0000</b>" in paths["html"].read_text()
