"""``expgen.bench``: the paper's evaluation (Sec. 4.1-4.2, Table 1) as a library and the ``exp-bench`` command.

Layers: dataset adapters (:mod:`~expgen.bench.datasets`: RAVDESS, NeRSemble, listed folders) and fixed
splits shipped with the package (:mod:`~expgen.bench.splits`: the paper's 20 RAVDESS / 80 NeRSemble videos) ->
protocols and manifests (:mod:`~expgen.bench.protocols`: self / cross reenactment, seeded or fixed, cropped) ->
methods (:mod:`~expgen.bench.methods`, :mod:`~expgen.bench.baselines`) -> cached scoring with
``exphead.metrics`` (:mod:`~expgen.bench.scoring`) -> report (:mod:`~expgen.bench.report`, with the paper's
Table 1 beside it, :mod:`~expgen.bench.paper`). Walk-through: ``docs/benchmark.md``.
"""

from expgen.bench.baselines import DrivingCopy, GeneratedVideos, Method, ReferenceCopy
from expgen.bench.datasets import (
    RavdessName,
    VideoRecord,
    folder_videos,
    load_dataset,
    nersemble_videos,
    parse_ravdess_name,
    ravdess_videos,
    read_clip_frames,
)
from expgen.bench.methods import Ours, make_method, uncrop
from expgen.bench.protocols import (
    BenchItem,
    ClipFrames,
    Manifest,
    PreparedItem,
    load_or_make_manifest,
    make_manifest,
    missing_clips,
    prepare_item,
    split_manifest,
)
from expgen.bench.report import aggregate, load_run, write_report
from expgen.bench.scoring import METRICS, RunSummary, Scorer, run_benchmark
from expgen.bench.splits import Split, load_split, validate_split

__all__ = [
    "METRICS",
    "BenchItem",
    "ClipFrames",
    "DrivingCopy",
    "GeneratedVideos",
    "Manifest",
    "Method",
    "Ours",
    "PreparedItem",
    "RavdessName",
    "ReferenceCopy",
    "RunSummary",
    "Scorer",
    "Split",
    "VideoRecord",
    "aggregate",
    "folder_videos",
    "load_dataset",
    "load_or_make_manifest",
    "load_run",
    "load_split",
    "make_manifest",
    "make_method",
    "missing_clips",
    "nersemble_videos",
    "parse_ravdess_name",
    "prepare_item",
    "ravdess_videos",
    "read_clip_frames",
    "run_benchmark",
    "split_manifest",
    "uncrop",
    "validate_split",
    "write_report",
]
