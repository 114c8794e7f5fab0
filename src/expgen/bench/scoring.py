"""Scoring generated videos against the protocol (paper Sec. 4.1, Table 1), cached per item.

Per item, every metric is the mean over frames of exphead.metrics' per-frame value:

* PSNR, SSIM, LPIPS, L1 — self-reenactment only, generated vs ground-truth driving frames;
* CSIM — generated frames vs the reference image (dlib's face descriptor by default);
* AED, APD — motion parameters of the generated frames vs those of the driving frames
  (:class:`~expgen.bench.motion.TrackerMotionExtractor`; the driving clip's parameters are computed
  once per item and cached).

A metric that cannot run on this machine (LPIPS without its backbone file) is recorded as unavailable
with the reason, not fatal. Results go to ``OUT/results/<method>/<item>.json``; a result whose key
(manifest fingerprint, method settings, scorer settings) matches is reused, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from exphead.io_utils import atomic_path
from exphead.media import MediaError, contact_sheet, resize_frames, to_uint8, write_image, write_video
from exphead.metrics import (
    LPIPS,
    FaceEmbedder,
    MotionEstimate,
    MotionExtractor,
    csim,
    expression_distance,
    l1_distance,
    pose_distance,
    psnr,
    ssim,
)
from exphead.tracking.landmarks import NoFaceError

from .baselines import GeneratedVideos, Method
from .protocols import Manifest, PreparedItem, prepare_item

logger = logging.getLogger(__name__)

METRICS = ("psnr", "ssim", "lpips", "l1", "aed", "apd", "csim")
PROTOCOL_METRICS = {"self": METRICS, "cross": ("aed", "apd", "csim")}
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "l1": False, "aed": False, "apd": False,
                    "csim": True}
_RECOVERABLE = (FileNotFoundError, ValueError, MediaError, NoFaceError, RuntimeError)


def _dumps(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True)


class Scorer:
    """Computes the metrics of one item; heavy models (LPIPS, face embedder, tracker) are built once.

    Args:
        metrics: metric names (subset of :data:`METRICS`); None: all that the protocol reports.
        lpips_backbone: LPIPS backbone file (default: ``$EXPPORTRAIT_LPIPS_BACKBONE`` or the torch hub cache).
        embedder: face embedder of CSIM (default: dlib's descriptor).
        motion: motion extractor of AED / APD (default, built when AED or APD is asked:
            :class:`~expgen.bench.motion.TrackerMotionExtractor`).
        cache_dir: folder for the driving clips' motion parameters.
    """

    def __init__(self, metrics: Sequence[str] | None = None, lpips_backbone: str | None = None,
                 embedder: FaceEmbedder | None = None, motion: MotionExtractor | None = None,
                 cache_dir: str | Path | None = None) -> None:
        unknown = set(metrics or ()) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}: choose from {list(METRICS)}")
        self.metrics = tuple(metrics) if metrics else METRICS
        self.unavailable: dict[str, str] = {}
        self.lpips: LPIPS | None = None
        if "lpips" in self.metrics:
            try:
                self.lpips = LPIPS(backbone_path=lpips_backbone)
            except FileNotFoundError as err:
                self.unavailable["lpips"] = str(err)
                logger.warning("LPIPS unavailable: %s", err)
        self._embedder = embedder
        self._motion = motion
        if motion is None and {"aed", "apd"} & set(self.metrics):
            from exphead.metrics import TrackerMotionExtractor

            self._motion = TrackerMotionExtractor()
        self.cache_dir = Path(cache_dir) if cache_dir else None

    @property
    def embedder(self) -> FaceEmbedder:
        """CSIM's face embedder (built on first use)."""
        if self._embedder is None:
            from exphead.metrics import DlibFaceEmbedder

            self._embedder = DlibFaceEmbedder()
        return self._embedder

    @property
    def motion(self) -> MotionExtractor:
        """AED / APD's motion extractor."""
        if self._motion is None:
            raise ValueError("this Scorer computes neither AED nor APD: it has no motion extractor")
        return self._motion

    def settings(self) -> dict:
        """What determines the scores (part of every cached result's key)."""
        motion = getattr(self._motion, "settings", None)
        return {"metrics": list(self.metrics), "unavailable": sorted(self.unavailable),
                "embedder": type(self._embedder).__name__ if self._embedder else "DlibFaceEmbedder",
                "motion": motion() if motion else type(self._motion).__name__}

    def metrics_for(self, protocol: str) -> list[str]:
        """The requested metrics that ``protocol`` reports."""
        return [m for m in self.metrics if m in PROTOCOL_METRICS[protocol]]

    def driving_motion(self, prepared: PreparedItem, key: str) -> MotionEstimate:
        """Motion parameters of the item's driving frames, from the cache when its ``key`` matches."""
        path = self.cache_dir / f"{prepared.item.id}.json" if self.cache_dir else None
        if path is not None and path.is_file():
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return MotionEstimate(torch.tensor(data["expression"]), torch.tensor(data["head_pose"]))
        estimate = self.motion(prepared.driving)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps({"key": key, "expression": estimate.expression.tolist(),
                                                 "head_pose": estimate.head_pose.tolist()}))
        return estimate

    def score(self, prepared: PreparedItem, generated: Tensor, motion_key: str = "") -> dict:
        """Per-frame and mean values of each metric for generated frames ``F x 3 x S x S``.

        Returns:
            ``{"metrics": {name: mean}, "per_frame": {name: [F values]}, "errors": {name: reason}}``;
            a metric that failed on this item (no face found, ...) is NaN with its reason.
        """
        out: dict[str, dict] = {"metrics": {}, "per_frame": {}, "errors": {}}
        truth = prepared.ground_truth
        motion: tuple[MotionEstimate, MotionEstimate] | None = None
        for name in self.metrics_for(prepared.protocol):
            if name in self.unavailable:
                continue
            try:
                if name in ("aed", "apd"):
                    motion = motion or (self.motion(generated), self.driving_motion(prepared, motion_key))
                    values = (expression_distance(motion[0].expression, motion[1].expression) if name == "aed"
                              else pose_distance(motion[0].head_pose, motion[1].head_pose))
                elif name == "csim":
                    values = csim(generated, prepared.reference[None], self.embedder, reduction="none")
                elif name == "lpips":
                    with torch.no_grad():
                        values = self.lpips.per_frame(generated, truth)
                else:
                    values = {"psnr": psnr, "ssim": ssim, "l1": l1_distance}[name](generated, truth, reduction="none")
            except _RECOVERABLE as err:
                logger.warning("%s on %s: %s", name, prepared.item.id, err)
                out["metrics"][name] = math.nan
                out["errors"][name] = f"{type(err).__name__}: {err}"
                continue
            values = values.double()
            finite = values[~values.isnan()]
            out["per_frame"][name] = values.tolist()
            out["metrics"][name] = float(finite.mean()) if finite.numel() else math.nan
        return out


@dataclass
class RunSummary:
    """What :func:`run_benchmark` did: results ``computed`` now, ``cached`` ones reused, ``failed`` items."""

    computed: int = 0
    cached: int = 0
    failed: int = 0


def _thumbnail(prepared: PreparedItem, generated: Tensor, rows: int = 3, side: int = 128) -> np.ndarray:
    """Contact sheet ``rows`` frames high: reference | driving | generated (| ground truth)."""
    n = generated.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int)).tolist()
    panels = [prepared.reference[None].expand(len(idx), -1, -1, -1), prepared.driving[idx], generated[idx]]
    if prepared.ground_truth is not None:
        panels.append(prepared.ground_truth[idx])
    small = [to_uint8(resize_frames(p.float(), min(side, p.shape[-1]))) for p in panels]
    return contact_sheet([[p[r] for p in small] for r in range(len(idx))])


def run_benchmark(manifest: Manifest, methods: Sequence[Method], out_dir: str | Path, scorer: Scorer,
                  force: bool = False, save_videos: bool = True, progress: bool = True) -> RunSummary:
    """Generate (or read) and score every item of ``manifest`` for every method, resuming from cached results.

    Writes ``OUT/results/<method>/<item>.json`` (scores, per-frame values, timings), a thumbnail
    ``OUT/thumbs/<method>/<item>.png`` and, for methods run here with ``save_videos``, the generated
    video ``OUT/generated/<method>/<item>.mp4``. Items that fail are recorded with their error and
    retried on the next run.
    """
    out_dir = Path(out_dir)
    summary = RunSummary()
    fingerprint = manifest.fingerprint()
    motion_key = _dumps({"manifest": fingerprint, "motion": scorer.settings()["motion"]})
    bar = tqdm(total=len(manifest.items) * len(methods), desc="exp-bench", disable=not progress)
    for item in manifest.items:
        prepared = None
        for method in methods:
            bar.set_postfix_str(f"{method.name}: {item.id}")
            path = out_dir / "results" / method.name / f"{item.id}.json"
            key = {"manifest": fingerprint, "method": method.settings(), "scorer": scorer.settings()}
            if not force and path.is_file():
                held = json.loads(path.read_text())
                if held.get("key") == json.loads(_dumps(key)) and "error" not in held:
                    summary.cached += 1
                    bar.update()
                    continue
            record = {"item": item.id, "method": method.name, "protocol": manifest.protocol, "key": key}
            try:
                prepared = prepared or prepare_item(manifest, item)
                clock = time.perf_counter()
                generated = method(prepared).float().clamp(0, 1)
                if generated.shape != prepared.driving.shape:
                    raise ValueError(f"{method.name} returned frames {tuple(generated.shape)}, expected "
                                     f"{tuple(prepared.driving.shape)}")
                record["seconds_generate"] = time.perf_counter() - clock
                if getattr(method, "last_generator", None):
                    record["generator"] = method.last_generator
                clock = time.perf_counter()
                record.update(scorer.score(prepared, generated, motion_key))
                record["seconds_score"] = time.perf_counter() - clock
                record["num_frames"] = int(generated.shape[0])
                record["unavailable"] = dict(scorer.unavailable)
                _write_outputs(out_dir, method, prepared, generated, save_videos)
                summary.computed += 1
            except _RECOVERABLE as err:
                logger.warning("%s failed on %s: %s", method.name, item.id, err)
                record["error"] = f"{type(err).__name__}: {err}"
                summary.failed += 1
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(_dumps(record))
            bar.update()
    bar.close()
    logger.info("exp-bench: %d computed, %d cached, %d failed", summary.computed, summary.cached, summary.failed)
    return summary


def _write_outputs(out_dir: Path, method: Method, prepared: PreparedItem, generated: Tensor, save_video: bool) -> None:
    item_id = prepared.item.id
    thumb = out_dir / "thumbs" / method.name / f"{item_id}.png"
    thumb.parent.mkdir(parents=True, exist_ok=True)
    write_image(thumb, _thumbnail(prepared, generated))
    if save_video and not isinstance(method, GeneratedVideos):
        video = out_dir / "generated" / method.name / f"{item_id}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        write_video(video, generated, prepared.fps)


__all__ = ["HIGHER_IS_BETTER", "METRICS", "PROTOCOL_METRICS", "RunSummary", "Scorer", "run_benchmark"]
