"""``fit_subject``: a video, an image folder, an image or targets -> :class:`PersonalizedHead`.

Stages: read and crop the frames, detect landmarks, track SMPL-X (cached), then the detail fit
under a Lightning ``Trainer`` whose ``last.ckpt`` makes a killed fit resume where it stopped.
Everything lands in ``out_dir`` atomically; the head is ``out_dir/head.{json,safetensors}``. What is
reused from ``out_dir`` (the tracking, the checkpoint) is keyed by a fingerprint of the inputs and
settings it depends on: a folder holding another subject's fit is refitted, never resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import lightning.pytorch as pl
import torch

from exphead.head_model import HeadModel
from exphead.io_utils import atomic_path
from exphead.personalized import PersonalizedHead
from exphead.tracking.landmarks import LandmarkDetector

from .config import FitConfig
from .data import SubjectDataModule, tracking_key
from .module import HeadFitModule
from .sources import subject_targets
from .targets import FitTargets, resolve_depth_alignment

logger = logging.getLogger(__name__)
FIT_KEY_FILE = "fit.json"
_THIRD_PARTY_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)",)  # Lightning's use of torch's pytree


def _maps_digest(targets: FitTargets) -> str:
    digest = hashlib.sha256()
    for t in (targets.normal, targets.depth, targets.mask):
        if t is not None:
            digest.update(t.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def fit_key(targets: FitTargets, config: FitConfig, model: HeadModel, depth_alignment: str) -> dict:
    """What a detail-fit checkpoint depends on, part by part (compared part by part on resume)."""
    settings = {k: v for k, v in asdict(config).items()
                if k in ("weights", "lr_detail", "lr_params", "static_init_mm", "frames_per_step", "seed")}
    return {"tracking": tracking_key(targets, config.tracker, model), "maps": _maps_digest(targets),
            "frames": targets.num_frames, "depth_alignment": depth_alignment,
            "settings": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]}


def _resume_point(ckpt_dir: Path, key: dict) -> str | None:
    """``last.ckpt`` when it belongs to a fit with ``key``; stale checkpoints are removed (with a message)."""
    last, record = ckpt_dir / "last.ckpt", ckpt_dir / FIT_KEY_FILE
    if not last.is_file():
        return None
    held = json.loads(record.read_text()) if record.is_file() else None
    if held == key:
        return str(last)
    differs = sorted(k for k in key if held is None or held.get(k) != key[k]) or ["fingerprint missing"]
    logger.warning("%s holds a fit of other inputs or settings (differs in: %s): fitting afresh", ckpt_dir,
                   ", ".join(differs))
    shutil.rmtree(ckpt_dir)
    return None


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's banners (accelerator, tips) and its known deprecation notices hidden while a fit runs; the
    logger level and warning filters are restored afterwards."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            for pattern in _THIRD_PARTY_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        log.setLevel(level)


def _checkpoint_step(path: str) -> int:
    """The global step of a Lightning checkpoint, read without unpickling code (``weights_only``)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def fit_subject(source: str | os.PathLike | FitTargets, out_dir: str | os.PathLike | None = None,
                config: FitConfig | None = None, model: HeadModel | None = None, maps: str | None = None,
                detector: LandmarkDetector | None = None) -> PersonalizedHead:
    """Fit a personalized head (Sec. 3.1) to a video, a folder of frames, one image, or targets.

    With ``out_dir``, tracking and Lightning checkpoints are kept there so a killed fit resumes,
    and the head is saved to ``out_dir`` (``head.json`` + ``head.safetensors``) at the end. Normal and
    depth targets come from ``maps`` (a folder), from the DAViD ONNX models of ``config`` (or
    ``$EXPPORTRAIT_DAVID_NORMAL`` / ``_DEPTH``, limited to the matte of ``_FOREGROUND``), or the fit uses
    landmarks alone; ``head.meta["map_source"]`` says which (see :func:`subject_targets`).
    """
    cfg = config or FitConfig()
    model = model or HeadModel()
    tracker = replace(cfg.tracker, show_progress=cfg.show_progress)
    targets = subject_targets(source, replace(cfg, tracker=tracker), maps, detector)
    depth_alignment = resolve_depth_alignment(cfg.depth_alignment, targets)
    out = Path(out_dir) if out_dir is not None else None
    data = SubjectDataModule(frames_per_step=cfg.frames_per_step, cache_dir=str(out) if out else None,
                             tracker=tracker, targets=targets, model=model, seed=cfg.seed)
    data.setup("fit")
    static_init = cfg.static_init_mm if targets.has_maps else 0.0  # no dense evidence: no static prior offset
    module = HeadFitModule(targets.num_frames, weights=cfg.weights, lr_detail=cfg.lr_detail,
                           lr_params=cfg.lr_params, static_init_mm=static_init, depth_alignment=depth_alignment,
                           camera=data.tracking.camera, model=model)
    module.initialize_from(data.tracking.params, data.tracking.camera)
    callbacks, ckpt, resumed_from = [], None, 0
    if out is not None:
        ckpt_dir = out / "checkpoints"
        key = fit_key(targets, cfg, model, depth_alignment)
        ckpt = _resume_point(ckpt_dir, key)
        resumed_from = _checkpoint_step(ckpt) if ckpt else 0
        with atomic_path(ckpt_dir / FIT_KEY_FILE) as tmp:
            tmp.write_text(json.dumps(key, indent=1))
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                                      every_n_train_steps=cfg.checkpoint_every))
    with _quiet_lightning():
        trainer = pl.Trainer(max_steps=cfg.steps, accelerator=cfg.accelerator, devices=1, logger=False,
                             callbacks=callbacks, enable_checkpointing=out is not None,
                             enable_progress_bar=cfg.show_progress, enable_model_summary=False)
        if cfg.steps > 0:
            device = model.v_template.device
            trainer.fit(module, datamodule=data, ckpt_path=ckpt, weights_only=True)
            model.to(device)  # Lightning's teardown leaves the module (the caller's head model in it) on the CPU
    head = head_from_module(module, meta={"source": str(source) if not isinstance(source, FitTargets) else "tensors",
                                          "tracking_error_px": float(data.tracking.error_px.nanmean()),
                                          "has_maps": targets.has_maps, "steps": cfg.steps,
                                          "map_source": dict(targets.map_source) or "landmarks only",
                                          "depth_alignment": depth_alignment,
                                          "resumed_from_step": resumed_from})
    if out is not None:
        head.save(out)
    return head


@torch.no_grad()
def head_from_module(module: HeadFitModule, meta: dict | None = None) -> PersonalizedHead:
    """Read the fitted variables out of a :class:`HeadFitModule` (tensors copied to the CPU; the module and its
    head model stay where they are)."""
    n = module.expression.shape[0]
    frames = torch.arange(n, device=module.expression.device)
    params = module.params(frames).map(lambda v: v.detach().cpu().clone())
    delta_f_face = (module.delta_f_mm.weight.detach().view(n, -1, 3) * 1e-3).cpu().clone()
    return PersonalizedHead(module.model, params, (module.delta_g_mm.detach() * 1e-3).cpu().clone(), delta_f_face,
                            module.camera.to("cpu"), meta or {})
