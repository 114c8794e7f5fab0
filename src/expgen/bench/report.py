"""The benchmark report: a Table-1-style table (rows = methods, columns = protocol x metric) as Markdown, CSV
and JSON, and an HTML page with each item's reference | driving | generated | ground-truth frames.

A method's value in a column is the mean, over the items that **every** method reporting that metric scored
(a finite value: no failure, a face found), of the per-item values; the count is shown in the row "items
averaged". Several run folders (e.g. a self- and a cross-reenactment run) make one table, as in the paper.
Beside the measured rows the report prints the paper's Table 1 rows, marked as the paper's numbers on the
paper's data, and it names for every method what ran (generator, weights and their fingerprints, head
model, map source) and what scored (CSIM embedder, motion extractor, LPIPS backbone file and hash). LPIPS values
of results not scored with the hash-verified torchvision backbone are refused.
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

from .paper import PAPER_SOURCE, paper_table1
from .protocols import Manifest
from .scoring import HIGHER_IS_BETTER, PROTOCOL_METRICS, scoring_labels

LABELS = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "l1": "L1", "aed": "AED", "apd": "APD", "csim": "CSIM",
          "jitter": "Jitter", "face_missing": "No-face"}
COPIES = ("reference_copy", "driving_copy")
MEASURED = "measured here"
COUNT_ROW = "items averaged (every method scored)"


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


def _verified_lpips(record: dict) -> bool:
    backbone = (record.get("key") or {}).get("scorer", {}).get("lpips")
    if not isinstance(backbone, dict) or not backbone.get("verified"):
        return False
    prefix = torch.hub.HASH_REGEX.search(str(backbone.get("file", "")))
    return bool(prefix and prefix.group(1) and str(backbone.get("sha256", "")).startswith(prefix.group(1)))


def _value(record: dict, name: str) -> float | None:
    """A record's finite (or infinite) value of ``name``; None when absent, NaN or refused."""
    value = record.get("metrics", {}).get(name)
    if value is None or math.isnan(value) or (name == "lpips" and not _verified_lpips(record)):
        return None
    return value


def aggregate(run: RunResults) -> list[dict]:
    """One row per method: ``method``, ``protocol``, ``items`` (scored), ``total``, ``failed``; per metric its mean
    over the items every method reporting it scored, ``<metric>_n`` that count, ``<metric>_own`` /
    ``<metric>_own_n`` the mean over the method's own items; ``unavailable`` / ``errors`` reasons."""
    protocol = run.manifest.protocol
    ok = {m: {i: r for i, r in records.items() if "error" not in r} for m, records in run.records.items()}
    rows = {m: {"method": m, "protocol": protocol, "items": len(ok[m]), "total": len(run.manifest.items),
                "failed": len(records) - len(ok[m]), "unavailable": {}, "errors": {}}
            for m, records in run.records.items()}
    for name in PROTOCOL_METRICS[protocol]:
        scored = {m: {i: v for i, r in recs.items() if (v := _value(r, name)) is not None} for m, recs in ok.items()}
        reporting = [m for m, recs in ok.items()
                     if any(name in r.get("metrics", {}) and (name != "lpips" or _verified_lpips(r))
                            for r in recs.values())]
        common = set.intersection(*(set(scored[m]) for m in reporting)) if reporting else set()
        for method, row in rows.items():
            values = [scored[method][i] for i in sorted(common)] if method in reporting else []
            own = list(scored[method].values())
            row[name] = sum(values) / len(values) if values else math.nan
            row[f"{name}_n"] = len(values)
            row[f"{name}_own"] = sum(own) / len(own) if own else math.nan
            row[f"{name}_own_n"] = len(own)
            records = ok[method].values()
            reasons = [r["unavailable"][name] for r in records if name in r.get("unavailable", {})]
            if name == "lpips" and any(name in r.get("metrics", {}) and not _verified_lpips(r) for r in records):
                reasons.append("results not scored with the hash-verified torchvision backbone are refused")
            if reasons:
                row["unavailable"][name] = reasons[0]
            errors = [r["errors"][name] for r in records if name in r.get("errors", {})]
            if errors:
                row["errors"][name] = f"{len(errors)} item(s), e.g. {errors[0]}"
    return list(rows.values())


def _fmt(name: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}" if name == "psnr" else f"{value:.5f}"


def _columns(rows: list[dict]) -> list[tuple[str, str]]:
    protocols = [p for p in ("self", "cross") if any(r["protocol"] == p for r in rows)]
    return [(p, m) for p in protocols for m in PROTOCOL_METRICS[p]]


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """Header, body (strings; best measured non-copy value per column in bold; the count row; the paper's rows)
    and the column keys."""
    columns = _columns(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by_key = {(r["method"], r["protocol"]): r for r in rows}
    header = ["Method", "Source"] + [f"{p.capitalize()} {LABELS[m]} {'↑' if HIGHER_IS_BETTER[m] else '↓'}"
                                     for p, m in columns]
    best = {}
    for p, m in columns:
        values = [(by_key[(k, p)][m], k) for k in methods if (k, p) in by_key and k not in COPIES]
        values = [(v, k) for v, k in values if not math.isnan(v)]
        if len(values) > 1:
            best[(p, m)] = (max if HIGHER_IS_BETTER[m] else min)(values)[1]
    body = []
    for k in methods:
        cells = [k, MEASURED]
        for p, m in columns:
            text = _fmt(m, by_key[(k, p)][m]) if (k, p) in by_key else ""
            cells.append(f"**{text}**" if best.get((p, m)) == k else text)
        body.append(cells)
    counts = {(p, m): max(r[f"{m}_n"] for r in rows if r["protocol"] == p) for p, m in columns}
    body.append([COUNT_ROW, ""] + [str(counts[c]) for c in columns])
    for paper in paper_table1():
        body.append([paper["method"], PAPER_SOURCE] + [_fmt(m, paper["values"].get((p, m))).replace("n/a", "—")
                                                       for p, m in columns])
    return header, body, columns


def _scoring(runs: list[RunResults]) -> dict[str, dict]:
    """Per run folder: the scorer settings of its results and their labels (csim, motion, lpips)."""
    out = {}
    for run in runs:
        settings = [r["key"]["scorer"] for recs in run.records.values() for r in recs.values() if "key" in r]
        distinct = list({json.dumps(s, sort_keys=True): s for s in settings}.values())
        labels = [scoring_labels(s) for s in distinct]
        out[str(run.out_dir)] = {"settings": distinct, "labels": {k: sorted({lab[k] for lab in labels})
                                                                  for k in ("csim", "motion", "lpips")}}
    return out


def _summary(settings: dict, components: dict, map_sources: list[str]) -> str:
    """One line saying what a method is: its generator, weights, head model and map source, or what it copies."""
    if "bound" in settings:
        return f"bound, no model: {settings['bound']}"
    if "folder" in settings:
        return f"{settings.get('description') or 'videos made elsewhere'} (read from {settings['folder']})"
    if "config" not in settings:
        return json.dumps(settings, sort_keys=True)
    parts = {**settings.get("components", {}), **components}
    gen = parts.get("generator", {})
    weights = (f"weights {gen.get('weights')} (fingerprint {gen.get('weights_fingerprint')})" if gen.get("weights")
               else "no weights")
    transfer = parts.get("transfer")
    transfer = (f"{transfer.get('weights')} (fingerprint {transfer.get('fingerprint')})" if isinstance(transfer, dict)
                else str(transfer))
    head = parts.get("head_model", {})
    config = settings["config"]
    return (f"generator {gen.get('generator')} ({weights}); transfer {transfer}; head model "
            f"{head.get('model_path')} (level {head.get('level')}); reference maps "
            f"{', '.join(map_sources) or 'not recorded'}; fit {config.get('fit_size')} px / {config.get('fit_steps')} "
            f"steps, tracker {config.get('tracker', {}).get('steps')} steps, {config.get('device')} "
            f"{config.get('dtype')}, seed {config.get('seed')}")


def _methods(runs: list[RunResults]) -> dict[str, dict]:
    """Per method: its settings (the cache key's), the components its results recorded and a one-line summary."""
    out: dict[str, dict] = {}
    for run in runs:
        for method, records in run.records.items():
            keyed = [r for r in records.values() if "key" in r]
            entry = out.setdefault(method, {"settings": keyed[0]["key"]["method"] if keyed else {}, "components": {},
                                            "map_sources": []})
            for record in records.values():
                entry["components"] = entry["components"] or record.get("components", {})
                source = record.get("components", {}).get("reference_maps")
                if source and json.dumps(source) not in entry["map_sources"]:
                    entry["map_sources"].append(json.dumps(source))
    for entry in out.values():
        entry["summary"] = _summary(entry["settings"], entry["components"], entry["map_sources"])
    return out


def _notes(runs: list[RunResults], rows: list[dict]) -> list[str]:
    notes = []
    for run in runs:
        m = run.manifest
        split = f", split {m.split}" if m.split else f", seed {m.seed}"
        notes.append(f"{m.protocol}-reenactment: {m.dataset} ({m.root}), {len(m.items)} items, {m.size}x{m.size}, "
                     f"stride {m.stride}, up to {m.num_frames} frames, crop {m.crop}{split}.")
        for item_id, reason in m.skipped.items():
            notes.append(f"{m.protocol}: split item {item_id} left out: {reason}")
    for row in rows:
        if row["items"] < row["total"]:
            notes.append(f"{row['method']} ({row['protocol']}): {row['items']} of {row['total']} items scored, "
                         f"{row['failed']} failed.")
        for name, reason in row["unavailable"].items():
            notes.append(f"{LABELS[name]} unavailable: {reason}")
        for name, reason in row["errors"].items():
            notes.append(f"{LABELS[name]} not computed for {reason} ({row['method']}, {row['protocol']}).")
    notes.append("Each value averages the items every method reporting the metric scored (row 'items averaged'); "
                 "Jitter = landmark jitter of the output over that of the driving frames (1 = as smooth as the "
                 "driver); No-face = fraction of output frames without a detected face. Copies (reference_copy, "
                 "driving_copy) are bounds, never bold.")
    notes.append(f"Rows marked '{PAPER_SOURCE}' are copied from the paper (Sec. 4.2): other data, ArcFace CSIM and "
                 "the paper's AED / APD extractor; they are not comparable to the measured rows.")
    return list(dict.fromkeys(notes))


def markdown_report(rows: list[dict], notes: list[str], scoring: dict[str, dict], methods: dict[str, dict]) -> str:
    """The Markdown report: the table, what scored, what each method is, and notes."""
    header, body, _ = _table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + [":---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines += ["", "## Scoring", ""]
    for out_dir, entry in scoring.items():
        labels = entry["labels"]
        lines += [f"- {out_dir}: CSIM embedder: {'; '.join(labels['csim']) or 'n/a'}. AED / APD / jitter / "
                  f"no-face extractor: {'; '.join(labels['motion']) or 'n/a'}. LPIPS: "
                  f"{'; '.join(labels['lpips']) or 'n/a'}."]
    lines += ["", "## Methods", ""] + [f"- **{name}**: {entry['summary']}" for name, entry in methods.items()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _json_value(value: object) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cell(text: str, tag: str = "td") -> str:
    bold = text.startswith("**")
    text = html.escape(text.strip("*"))
    return f"<{tag}><b>{text}</b></{tag}>" if bold else f"<{tag}>{text}</{tag}>"


def _html(runs: list[RunResults], rows: list[dict], markdown: str, max_items: int) -> str:
    header, body, _ = _table(rows)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>exp-bench</title><style>"
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:center}img{display:block}tr.paper{color:#777}"
             ".item{margin:1.5em 0}.methods{display:flex;flex-wrap:wrap;gap:1em}</style></head><body>",
             "<h1>exp-bench</h1><table><tr>" + "".join(_cell(h, "th") for h in header) + "</tr>"]
    parts += [f"<tr{' class=paper' if cells[1] == PAPER_SOURCE else ''}>" + "".join(_cell(c) for c in cells) + "</tr>"
              for cells in body]
    parts.append("</table>")
    for section in markdown.split("\n## ")[1:]:
        title, _, text = section.partition("\n")
        items = [line[2:] for line in text.splitlines() if line.startswith("- ")]
        parts.append(f"<h2>{html.escape(title)}</h2><ul>" + "".join(f"<li>{html.escape(i.replace('**', ''))}</li>"
                                                                     for i in items) + "</ul>")
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
    notes, scoring, methods = _notes(runs, rows), _scoring(runs), _methods(runs)
    markdown = markdown_report(rows, notes, scoring, methods)
    dest = Path(dest or out_dirs[0])
    dest.mkdir(parents=True, exist_ok=True)
    paths = {kind: dest / f"report.{kind}" for kind in ("md", "csv", "json", "html")}
    with atomic_path(paths["md"]) as tmp:
        Path(tmp).write_text("# exp-bench\n\n" + markdown)
    columns = _columns(rows)
    by_key = {(r["method"], r["protocol"]): r for r in rows}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method"] + [f"{p}_{m}" for p, m in columns])
        for method in dict.fromkeys(r["method"] for r in rows):
            writer.writerow([method] + [repr(float(by_key[(method, p)][m])) if (method, p) in by_key else ""
                                        for p, m in columns])
    meta = {"runs": [{"out_dir": str(r.out_dir), "fingerprint": r.manifest.fingerprint(),
                      **{k: v for k, v in r.manifest.to_json().items() if k != "items"},
                      "num_items": len(r.manifest.items)} for r in runs],
            "notes": notes, "python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine(), "platform": platform.platform()}
    paper = [{"method": p["method"], "source": p["source"], **{f"{k[0]}_{k[1]}": v for k, v in p["values"].items()}}
             for p in paper_table1()]
    data = {"benchmark": "exp-bench", "rows": [{k: _json_value(v) for k, v in row.items()} for row in rows],
            "paper_table1": paper, "scoring": scoring, "methods": methods, "meta": meta}
    with atomic_path(paths["json"]) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, allow_nan=False))
    with atomic_path(paths["html"]) as tmp:
        Path(tmp).write_text(_html(runs, rows, markdown, max_html_items))
    return paths


__all__ = ["RunResults", "aggregate", "load_run", "markdown_report", "write_report"]
