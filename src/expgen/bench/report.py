"""The benchmark report: a Table-1-style table (rows = methods, columns = protocol x metric) as Markdown,
CSV and JSON, and an HTML page with each item's reference | driving | generated | ground-truth frames.

A method's value is the mean over the items it was scored on of the per-item means over frames
(items whose value is NaN, e.g. no face found, are left out and counted). Several run folders (e.g. a
self- and a cross-reenactment run) make one table, as in the paper.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from exphead.io_utils import atomic_path

from .protocols import Manifest
from .scoring import HIGHER_IS_BETTER, PROTOCOL_METRICS

LABELS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "l1": "L1", "aed": "AED", "apd": "APD", "csim": "CSIM"}
COPIES = ("reference_copy", "driving_copy")


@dataclass
class RunResults:
    """A run folder: its manifest and the cached result records, ``records[method][item_id]``."""

    out_dir: Path
    manifest: Manifest
    records: dict[str, dict[str, dict]] = field(default_factory=dict)


def load_run(out_dir: str | Path) -> RunResults:
    """Read ``OUT/manifest.json`` and ``OUT/results/<method>/<item>.json`` (items of the manifest only)."""
    out_dir = Path(out_dir)
    manifest = Manifest.load(out_dir / "manifest.json")
    ids = {item.id for item in manifest.items}
    run = RunResults(out_dir, manifest)
    results = out_dir / "results"
    for folder in sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []:
        records = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.stem in ids}
        if records:
            run.records[folder.name] = records
    if not run.records:
        raise FileNotFoundError(f"no results under {results}: run `exp-bench run` or `exp-bench score` first")
    return run


def aggregate(run: RunResults) -> list[dict]:
    """One row per method: ``method``, ``protocol``, ``items`` (scored), ``total``, ``failed``, each metric's mean,
    ``<metric>_n`` items averaged, and ``unavailable`` / ``errors`` reasons."""
    protocol = run.manifest.protocol
    rows = []
    for method, records in run.records.items():
        ok = [r for r in records.values() if "error" not in r]
        row: dict = {"method": method, "protocol": protocol, "items": len(ok), "total": len(run.manifest.items),
                     "failed": len(records) - len(ok), "unavailable": {}, "errors": {}}
        for name in PROTOCOL_METRICS[protocol]:
            values = [r["metrics"][name] for r in ok if name in r.get("metrics", {})]
            values = [v for v in values if v is not None and not math.isnan(v)]
            reasons = [r["unavailable"][name] for r in ok if name in r.get("unavailable", {})]
            if reasons:
                row["unavailable"][name] = reasons[0]
            errors = [r["errors"][name] for r in ok if name in r.get("errors", {})]
            if errors:
                row["errors"][name] = f"{len(errors)} item(s), e.g. {errors[0]}"
            row[name] = sum(values) / len(values) if values else math.nan
            row[f"{name}_n"] = len(values)
        rows.append(row)
    return rows


def _fmt(name: str, value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}" if name == "psnr" else f"{value:.5f}"


def _columns(rows: list[dict]) -> list[tuple[str, str]]:
    protocols = [p for p in ("self", "cross") if any(r["protocol"] == p for r in rows)]
    return [(p, m) for p in protocols for m in PROTOCOL_METRICS[p]]


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """Header, body (strings, best method values in bold) and the column keys."""
    columns = _columns(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by_key = {(r["method"], r["protocol"]): r for r in rows}
    header = ["Method"] + [f"{p.capitalize()} {LABELS[m]} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for p, m in columns]
    best = {}
    for p, m in columns:
        values = [(by_key[(k, p)][m], k) for k in methods if (k, p) in by_key and k not in COPIES]
        values = [(v, k) for v, k in values if not math.isnan(v)]
        if len(values) > 1:
            best[(p, m)] = (max if HIGHER_IS_BETTER[m] else min)(values)[1]
    body = []
    for k in methods:
        cells = [k]
        for p, m in columns:
            text = _fmt(m, by_key[(k, p)][m]) if (k, p) in by_key else ""
            cells.append(f"**{text}**" if best.get((p, m)) == k else text)
        body.append(cells)
    return header, body, columns


def _notes(runs: list[RunResults], rows: list[dict]) -> list[str]:
    notes = []
    for run in runs:
        m = run.manifest
        notes.append(f"{m.protocol}-reenactment: {m.dataset} ({m.root}), {len(m.items)} items, {m.size}x{m.size}, "
                     f"stride {m.stride}, up to {m.num_frames} frames, crop {m.crop}, seed {m.seed}.")
    for row in rows:
        if row["items"] < row["total"]:
            notes.append(f"{row['method']} ({row['protocol']}): {row['items']} of {row['total']} items scored, "
                         f"{row['failed']} failed.")
        for name, reason in row["unavailable"].items():
            notes.append(f"{LABELS[name]} unavailable: {reason}")
        for name, reason in row["errors"].items():
            notes.append(f"{LABELS[name]} not computed for {reason} ({row['method']}, {row['protocol']}).")
    notes.append("CSIM: dlib's face descriptor unless another embedder was given, not comparable to ArcFace CSIM; "
                 "AED / APD: exphead's SMPL-X tracker (psi + jaw; head rotation, radians), not comparable to "
                 "EMOCA/DECA-based figures. Copies (reference_copy, driving_copy) are bounds, never bold.")
    return list(dict.fromkeys(notes))


def markdown_table(rows: list[dict], notes: list[str] | None = None) -> str:
    """The Table-1-style Markdown table (best non-copy value per column in bold) and notes."""
    header, body, _ = _table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _json_value(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cell(text: str, tag: str = "td") -> str:
    bold = text.startswith("**")
    text = html.escape(text.strip("*"))
    return f"<{tag}><b>{text}</b></{tag}>" if bold else f"<{tag}>{text}</{tag}>"


def _html(runs: list[RunResults], rows: list[dict], notes: list[str], max_items: int) -> str:
    header, body, _ = _table(rows)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>exp-bench</title><style>"
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:center}img{display:block}"
             ".item{margin:1.5em 0}.methods{display:flex;flex-wrap:wrap;gap:1em}</style></head><body>",
             "<h1>exp-bench</h1><table><tr>" + "".join(_cell(h, "th") for h in header) + "</tr>"]
    parts += ["<tr>" + "".join(_cell(c) for c in cells) + "</tr>" for cells in body]
    parts.append("</table><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for run in runs:
        m = run.manifest
        parts.append(f"<h2>{html.escape(m.protocol)}-reenactment ({html.escape(m.dataset)})</h2>"
                     "<p>Each strip: reference | driving | generated" + (" | ground truth" if m.protocol == "self"
                                                                          else "") + ", three frames.</p>")
        for item in m.items[:max_items]:
            parts.append(f"<div class='item'><h3>{html.escape(item.id)}</h3><div class='methods'>")
            for method, records in run.records.items():
                record = records.get(item.id)
                thumb = run.out_dir / "thumbs" / method / f"{item.id}.png"
                if record is None or not thumb.is_file():
                    continue
                scores = ", ".join(f"{LABELS[k]} {_fmt(k, v)}" for k, v in record.get("metrics", {}).items())
                data = base64.b64encode(thumb.read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(method)}'>"
                             f"<figcaption><b>{html.escape(method)}</b><br>{html.escape(scores)}</figcaption></figure>")
            parts.append("</div></div>")
        if len(m.items) > max_items:
            parts.append(f"<p>({len(m.items) - max_items} more items not shown)</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dirs: list[str | Path], dest: str | Path | None = None, max_html_items: int = 24
                 ) -> dict[str, Path]:
    """Aggregate run folders into ``report.md``, ``report.csv``, ``report.json`` and ``report.html`` in ``dest``
    (default: the first run folder). Returns the paths by kind."""
    runs = [load_run(d) for d in out_dirs]
    rows = [row for run in runs for row in aggregate(run)]
    notes = _notes(runs, rows)
    dest = Path(dest or out_dirs[0])
    dest.mkdir(parents=True, exist_ok=True)
    paths = {kind: dest / f"report.{kind}" for kind in ("md", "csv", "json", "html")}
    with atomic_path(paths["md"]) as tmp:
        Path(tmp).write_text("# exp-bench\n\n" + markdown_table(rows, notes))
    header, body, columns = _table(rows)
    by_key = {(r["method"], r["protocol"]): r for r in rows}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method"] + [f"{p}_{m}" for p, m in columns])
        for cells in body:
            method = cells[0]
            writer.writerow([method] + [repr(float(by_key[(method, p)][m])) if (method, p) in by_key else ""
                                        for p, m in columns])
    meta = {"runs": [{"out_dir": str(r.out_dir), "fingerprint": r.manifest.fingerprint(),
                      **{k: v for k, v in r.manifest.to_json().items() if k != "items"},
                      "num_items": len(r.manifest.items)} for r in runs],
            "notes": notes, "python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine(), "platform": platform.platform()}
    json_rows = [{k: _json_value(v) for k, v in row.items()} for row in rows]
    with atomic_path(paths["json"]) as tmp:
        Path(tmp).write_text(json.dumps({"benchmark": "exp-bench", "rows": json_rows, "meta": meta}, indent=1,
                                        allow_nan=False))
    with atomic_path(paths["html"]) as tmp:
        Path(tmp).write_text(_html(runs, rows, notes, max_html_items))
    return paths


__all__ = ["RunResults", "aggregate", "load_run", "markdown_table", "write_report"]
