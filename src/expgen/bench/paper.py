"""The paper's Table 1 (Sec. 4.2), copied as printed, for the report to show beside exp-bench's own rows.

These are the paper's numbers on the paper's data (its RAVDESS and NeRSemble test sets, 512 x 512, CSIM from
ArcFace embeddings, AED / APD from the paper's extractor); nothing here is measured by exp-bench, and they
compare with exp-bench's rows only when the data, the embedder and the extractor are the same.
"""

from __future__ import annotations

PAPER_COLUMNS = (("self", "psnr"), ("self", "ssim"), ("self", "lpips"), ("self", "l1"), ("self", "aed"),
                 ("self", "apd"), ("self", "csim"), ("cross", "aed"), ("cross", "apd"), ("cross", "csim"))
_ROWS = (
    ("LivePortrait [12]", (23.2897, 0.82985, 0.37339, 0.04619, 0.12924, 0.02144, 0.82972, 0.28641, 0.23048, 0.72869)),
    ("AniPortrait [40]", (22.2527, 0.80838, 0.30018, 0.04078, 0.17581, 0.01631, 0.76038, 0.25256, 0.02161, 0.62998)),
    ("Follow-Your-Emoji [25]",
     (25.6872, 0.84146, 0.23645, 0.02905, 0.14717, 0.01485, 0.80284, 0.22069, 0.02338, 0.68373)),
    ("Hunyuan Portrait [46]",
     (22.9453, 0.79333, 0.27573, 0.03962, 0.15593, 0.02329, 0.81150, 0.22753, 0.08784, 0.67451)),
    ("X-NeMo [53]", (21.5618, 0.78051, 0.32411, 0.04760, 0.13671, 0.01789, 0.83018, 0.17092, 0.02101, 0.72164)),
    ("Wan-Animate [4]", (26.5109, 0.84360, 0.21397, 0.02183, 0.14415, 0.00955, 0.82566, 0.22156, 0.01745, 0.72637)),
    ("ExpPortrait (the paper's \"Ours\")",
     (26.5507, 0.85908, 0.18394, 0.02160, 0.13185, 0.00948, 0.83506, 0.21092, 0.01277, 0.72917)),
)
PAPER_SOURCE = "paper, Table 1 (their data and extractors; not measured here)"


def paper_table1() -> list[dict]:
    """The paper's rows: ``{"method", "source", "values": {(protocol, metric): value}}``."""
    return [{"method": name, "source": PAPER_SOURCE, "values": dict(zip(PAPER_COLUMNS, values))}
            for name, values in _ROWS]


__all__ = ["PAPER_COLUMNS", "PAPER_SOURCE", "paper_table1"]
