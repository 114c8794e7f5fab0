"""Helpers shared by the benchmark scripts: machine metadata, JSON output, a plain-text table."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine_meta() -> dict[str, Any]:
    """The machine and library versions a benchmark ran with."""
    import torch

    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return meta


def write_json(path: str | os.PathLike, name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write ``{"benchmark": name, "rows": rows, "meta": meta}`` to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"benchmark": name, "rows": rows, "meta": meta}, indent=2) + "\n")


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows (dicts with the same keys) as an aligned text table on stdout."""
    if not rows:
        return
    cols = list(rows[0])
    cells = [[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    sys.stdout.write("\n".join(lines) + "\n")
