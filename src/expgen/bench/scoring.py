"""Scoring generated videos against the protocol (paper Sec. 4.1, Table 1), cached per item.

Per item, every metric is the mean over frames of exphead.metrics' per-frame value:

* PSNR, SSIM, LPIPS, L1 — self-reenactment only, generated vs ground-truth driving frames; LPIPS only with
  torchvision's AlexNet weights, checked by their SHA-256 hash prefix (a random backbone is refused);
* CSIM — generated frames vs the reference image: dlib's face descriptor by default (offline; "dlib, not
  comparable to ArcFace"), or an ArcFace ONNX model (the paper's embedder) given by path;
* AED, APD — motion parameters of the generated frames vs those of the driving frames, from an extractor:
  mediapipe's face mesh by default (:class:`~exphead.metrics.MediaPipeMotionExtractor`, independent of
  ExpPortrait), or exphead's SMPL-X tracker (ExpPortrait's own eyes); the driving clip's parameters are
  computed once per item and cached;
* jitter — landmark jitter of the generated frames over that of the driving frames
  (:func:`~exphead.metrics.jitter_ratio`, landmarks of the mesh; 1 = as smooth as the driver);
* face_missing — fraction of generated frames in which the extractor finds no face.

A metric that cannot run on this machine (LPIPS without its verified backbone file, jitter with an extractor
that gives no landmarks) is recorded as unavailable with the reason, not fatal. Results go to
``OUT/results/<method>/<item>.json``; a result whose key (manifest fingerprint, method settings, scorer
settings: metrics, embedder, extractor, LPIPS file and hash) matches is reused, so an interrupted run resumes
where it stopped.
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
    ArcFaceOnnxEmbedder,
    DlibFaceEmbedder,
    FaceEmbedder,
    MeshMotionEstimate,
    MotionEstimate,
    MotionExtractor,
    csim,
    expression_distance,
    jitter_ratio,
    l1_distance,
    pose_distance,
    psnr,
    ssim,
)
from exphead.metrics.jitter import landmark_jitter_per_frame
from exphead.metrics.lpips import file_sha256
from exphead.tracking.landmarks import NoFaceError

from .baselines import GeneratedVideos, Method
from .protocols import Manifest, PreparedItem, prepare_item

logger = logging.getLogger(__name__)

METRICS = ("psnr", "ssim", "lpips", "l1", "aed", "apd", "csim", "jitter", "face_missing")
MOTION_METRICS = ("aed", "apd", "jitter", "face_missing")
PROTOCOL_METRICS = {"self": METRICS, "cross": ("aed", "apd", "csim", "jitter", "face_missing")}
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "l1": False, "aed": False, "apd": False,
                    "csim": True, "jitter": False, "face_missing": False}
_RECOVERABLE = (FileNotFoundError, ValueError, MediaError, NoFaceError, RuntimeError)


def _dumps(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True)


def describe_embedder(embedder: FaceEmbedder | None) -> dict:
    """CSIM's embedder as recorded in keys and reports: ``{"name": "dlib"}`` (the default), ``{"name": "arcface",
    "model": path, "sha256": ...}``, or the class name of another embedder."""
    if embedder is None or isinstance(embedder, DlibFaceEmbedder):
        return {"name": "dlib"}
    if isinstance(embedder, ArcFaceOnnxEmbedder):
        return {"name": "arcface", "model": str(Path(embedder.model_path).resolve()),
                "sha256": file_sha256(embedder.model_path)}
    return {"name": type(embedder).__name__}


def scoring_labels(settings: dict) -> dict[str, str]:
    """How a report names what scored (from :meth:`Scorer.settings`): ``csim``, ``motion`` and ``lpips`` labels."""
    embedder = settings.get("csim") or {"name": "dlib"}
    if embedder.get("name") == "arcface":
        csim_label = f"ArcFace ({Path(embedder['model']).name}, sha256 {embedder['sha256'][:12]})"
    elif embedder.get("name") == "dlib":
        csim_label = "dlib (not comparable to ArcFace)"
    else:
        csim_label = f"{embedder.get('name')} (not comparable to ArcFace)"
    motion = settings.get("motion")
    if isinstance(motion, dict) and motion.get("extractor") == "mediapipe":
        motion_label = f"mediapipe face mesh {motion.get('mediapipe', '?')} (independent of ExpPortrait)"
    elif isinstance(motion, dict) and motion.get("extractor") == "tracker":
        motion_label = "exphead SMPL-X tracker (ExpPortrait's own tracker: favours ours)"
    else:
        motion_label = str(motion.get("extractor") if isinstance(motion, dict) else motion)
    backbone = settings.get("lpips")
    lpips_label = (f"{backbone['net_type']} backbone {backbone['path']} (sha256 {backbone['sha256'][:16]}, "
                   f"{'verified' if backbone['verified'] else 'NOT verified'})" if backbone else "not computed")
    return {"csim": csim_label, "motion": motion_label, "lpips": lpips_label}


class Scorer:
    """Computes the metrics of one item; heavy models (LPIPS, face embedder, motion extractor) are built once.

    Args:
        metrics: metric names (subset of :data:`METRICS`); None: all that the protocol reports.
        lpips_backbone: LPIPS backbone file (default: ``$EXPPORTRAIT_LPIPS_BACKBONE`` or the torch hub cache);
            its SHA-256 must match torchvision's hash prefix, else LPIPS is unavailable.
        embedder: face embedder of CSIM (default: dlib's descriptor).
        motion: motion extractor of AED / APD / jitter / face_missing (default, built when one of them is asked:
            :class:`~exphead.metrics.MediaPipeMotionExtractor`).
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
            except (FileNotFoundError, ValueError) as err:
                self.unavailable["lpips"] = str(err)
                logger.warning("LPIPS unavailable: %s", err)
        self._embedder = embedder
        self.embedder_settings = describe_embedder(embedder) if "csim" in self.metrics else None
        self._motion = motion
        if motion is None and set(MOTION_METRICS) & set(self.metrics):
            from exphead.metrics import MediaPipeMotionExtractor

            self._motion = MediaPipeMotionExtractor()
        if self._motion is not None and not getattr(self._motion, "provides_landmarks", False):
            name = type(self._motion).__name__
            reasons = {"jitter": f"the motion extractor {name} gives no landmarks: use --motion mediapipe",
                       "face_missing": f"the motion extractor {name} does not report frames without a face: use "
                                       "--motion mediapipe"}
            self.unavailable.update({k: v for k, v in reasons.items() if k in self.metrics})
        self.cache_dir = Path(cache_dir) if cache_dir else None

    @property
    def embedder(self) -> FaceEmbedder:
        """CSIM's face embedder (built on first use)."""
        if self._embedder is None:
            self._embedder = DlibFaceEmbedder()
        return self._embedder

    @property
    def motion(self) -> MotionExtractor:
        """The motion extractor of AED / APD / jitter / face_missing."""
        if self._motion is None:
            raise ValueError("this Scorer computes no motion metric: it has no motion extractor")
        return self._motion

    def settings(self) -> dict:
        """What determines the scores (part of every cached result's key)."""
        motion = getattr(self._motion, "settings", None)
        return {"metrics": list(self.metrics), "unavailable": sorted(self.unavailable), "csim": self.embedder_settings,
                "motion": motion() if motion else type(self._motion).__name__,
                "lpips": self.lpips.backbone if self.lpips is not None else None}

    def metrics_for(self, protocol: str) -> list[str]:
        """The requested metrics that ``protocol`` reports."""
        return [m for m in self.metrics if m in PROTOCOL_METRICS[protocol]]

    def driving_motion(self, prepared: PreparedItem, key: str) -> MotionEstimate:
        """Motion parameters of the item's driving frames, from the cache when its ``key`` matches."""
        path = self.cache_dir / f"{prepared.item.id}.json" if self.cache_dir else None
        if path is not None and path.is_file():
            data = json.loads(path.read_text())
            if data.get("key") == key:
                arrays = {k: torch.tensor(v, dtype=torch.bool if k == "has_face" else torch.float32)
                          for k, v in data.items() if k != "key"}
                return (MeshMotionEstimate(**arrays) if "landmarks" in arrays else MotionEstimate(**arrays))
        estimate = self.motion(prepared.driving)
        if path is not None:
            fields = ("expression", "head_pose", "landmarks", "has_face")
            data = {k: getattr(estimate, k).tolist() for k in fields if getattr(estimate, k, None) is not None}
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps({"key": key, **data}))
        return estimate

    def _values(self, name: str, prepared: PreparedItem, generated: Tensor,
                motion: tuple[MotionEstimate, MotionEstimate] | None) -> tuple[float, Tensor]:
        """The item's value of metric ``name`` and its per-frame values."""
        truth = prepared.ground_truth
        if name in ("aed", "apd"):
            gen, drv = motion
            values = (expression_distance(gen.expression, drv.expression) if name == "aed"
                      else pose_distance(gen.head_pose, drv.head_pose))
        elif name == "jitter":
            gen, drv = motion
            return float(jitter_ratio(gen.landmarks, drv.landmarks)), landmark_jitter_per_frame(gen.landmarks)
        elif name == "face_missing":
            values = (~motion[0].has_face).double()
        elif name == "csim":
            values = csim(generated, prepared.reference[None], self.embedder, reduction="none")
        elif name == "lpips":
            with torch.no_grad():
                values = self.lpips.per_frame(generated, truth)
        else:
            values = {"psnr": psnr, "ssim": ssim, "l1": l1_distance}[name](generated, truth, reduction="none")
        values = values.double()
        finite = values[~values.isnan()]
        return (float(finite.mean()) if finite.numel() else math.nan), values

    def score(self, prepared: PreparedItem, generated: Tensor, motion_key: str = "") -> dict:
        """Item and per-frame values of each metric for generated frames ``F x 3 x S x S``.

        Returns:
            ``{"metrics": {name: value}, "per_frame": {name: [values]}, "errors": {name: reason}}``; a metric
            that failed on this item (no face found, ...) is NaN with its reason.
        """
        out: dict[str, dict] = {"metrics": {}, "per_frame": {}, "errors": {}}
        motion: tuple[MotionEstimate, MotionEstimate] | None = None
        for name in self.metrics_for(prepared.protocol):
            if name in self.unavailable:
                continue
            try:
                if name in MOTION_METRICS and motion is None:
                    motion = (self.motion(generated), self.driving_motion(prepared, motion_key))
                value, values = self._values(name, prepared, generated, motion)
            except _RECOVERABLE as err:
                logger.warning("%s on %s: %s", name, prepared.item.id, err)
                out["metrics"][name] = math.nan
                out["errors"][name] = f"{type(err).__name__}: {err}"
                continue
            out["per_frame"][name] = values.tolist()
            out["metrics"][name] = value
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
                if getattr(method, "last_components", None):
                    record["components"] = method.last_components
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


__all__ = ["HIGHER_IS_BETTER", "METRICS", "MOTION_METRICS", "PROTOCOL_METRICS", "RunSummary", "Scorer",
           "describe_embedder", "run_benchmark", "scoring_labels"]
