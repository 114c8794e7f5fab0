"""``fit_subject``: a video, an image folder, an image or tensors -> :class:`PersonalizedHead`.

Stages: read and crop the frames, detect landmarks, track SMPL-X (cached), then the detail fit
under a Lightning ``Trainer`` whose ``last.ckpt`` makes a killed fit resume where it stopped.
Everything lands in ``out_dir`` atomically; the head is ``out_dir/head.{json,safetensors}``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from exphead.head_model import HeadModel
from exphead.media import read_frames, to_tensor
from exphead.personalized import PersonalizedHead
from exphead.tracking.crop import detect_and_crop
from exphead.tracking.landmarks import DlibLandmarkDetector, LandmarkDetector, detect_landmarks
from exphead.tracking.tracker import TrackerConfig, TrackingResult, track_landmarks

from .data import SubjectDataModule
from .module import DetailLossWeights, HeadFitModule
from .targets import FitTargets, maps_from_folder

logger = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Settings of :func:`fit_subject`."""

    image_size: int = 256  # frames are cropped around the face and resized to this square size
    steps: int = 300  # detail-stage optimisation steps
    frames_per_step: int = 4
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    weights: DetailLossWeights = field(default_factory=DetailLossWeights)
    lr_detail: float = 0.1
    lr_params: float = 3e-3
    static_init_mm: float = 2.0
    depth_alignment: Literal["none", "shift", "scale_shift"] = "none"
    checkpoint_every: int = 50  # steps between checkpoints (resume point of a killed fit)
    crop: bool = True  # False: frames are already aligned square crops (e.g. synthetic subjects)
    on_missing_face: Literal["skip", "fail"] = "skip"
    max_frames: int | None = None
    stride: int = 1
    accelerator: str = "auto"
    show_progress: bool = True


def load_targets(source: str | os.PathLike, image_size: int = 256, maps: str | os.PathLike | None = None,
                 detector: LandmarkDetector | None = None, crop: bool = True,
                 on_missing: Literal["skip", "fail"] = "skip", max_frames: int | None = None,
                 stride: int = 1) -> FitTargets:
    """Frames and landmarks of a video / image folder / image (and maps from ``maps``).

    A folder with ``frames/`` (and optionally ``landmarks.npy``, ``normals/``, ``depth/``), as written
    by ``exp-synth``, is read as it is: its frames are taken as already cropped.
    """
    root = Path(source)
    frames_dir = root / "frames" if (root / "frames").is_dir() else root
    frames, _ = read_frames(frames_dir, stride=stride, max_frames=max_frames)
    lm_file = root / "landmarks.npy" if root.is_dir() else None
    if lm_file is not None and lm_file.is_file():
        landmarks = np.load(lm_file)[::stride][: len(frames)].astype(np.float32)
        valid = np.isfinite(landmarks).all((1, 2))
        crop = False
        if maps is None and ((root / "normals").is_dir() or (root / "depth").is_dir()):
            maps = root
    else:
        detector = detector or DlibLandmarkDetector()
        if crop:
            box = detect_and_crop(frames, detector, image_size, on_missing)
            frames = box.apply(frames, image_size)
        landmarks, valid = detect_landmarks(frames, detector, on_missing)
    h, w = frames.shape[1:3]
    if crop is False and (h, w) != (image_size, image_size):
        logger.info("frames are %dx%d (not cropped): fitting at that size", h, w)
    normal = depth = None
    if maps is not None:
        normal, depth = maps_from_folder(maps, len(frames), stride=stride if Path(maps) != root else stride)
    else:
        logger.warning("no normal/depth targets: fitting landmarks only (pass maps= or a DAViD ONNX model)")
    return FitTargets(torch.from_numpy(landmarks), torch.from_numpy(valid), h, w, normal=normal, depth=depth,
                      frames=to_tensor(frames))


def synthetic_targets(model: HeadModel, seed: int, num_frames: int = 16, image_size: int = 256) -> FitTargets:
    """Exact targets of a generated subject (see :mod:`exphead.synthetic`)."""
    from exphead.synthetic.subject import make_subject, render_subject

    with torch.no_grad():
        subject = make_subject(model, seed, num_frames, height=image_size, width=image_size)
        r = render_subject(model, subject)
    valid = torch.ones(num_frames, dtype=torch.bool)
    return FitTargets(r.landmarks, valid, image_size, image_size, r.normal, r.depth, r.mask, r.rgb)


def track(source: str | os.PathLike | FitTargets, model: HeadModel | None = None,
          config: TrackerConfig | None = None, image_size: int = 256, **kwargs) -> TrackingResult:
    """SMPL-X tracking alone (driving parameters for reenactment, AED/APD)."""
    targets = source if isinstance(source, FitTargets) else load_targets(source, image_size, **kwargs)
    model = model or HeadModel()
    return track_landmarks(model, targets.landmarks, targets.height, targets.width, config, targets.valid)


def fit_subject(source: str | os.PathLike | FitTargets, out_dir: str | os.PathLike | None = None,
                config: FitConfig | None = None, model: HeadModel | None = None, maps: str | None = None,
                detector: LandmarkDetector | None = None) -> PersonalizedHead:
    """Fit a personalized head (Sec. 3.1) to a video, a folder of frames, one image, or targets.

    With ``out_dir``, tracking and Lightning checkpoints are kept there so a killed fit resumes,
    and the head is saved to ``out_dir`` (``head.json`` + ``head.safetensors``) at the end.
    """
    cfg = config or FitConfig()
    model = model or HeadModel()
    if isinstance(source, FitTargets):
        targets = source
    else:
        targets = load_targets(source, cfg.image_size, maps, detector, cfg.crop, cfg.on_missing_face,
                               cfg.max_frames, cfg.stride)
    out = Path(out_dir) if out_dir is not None else None
    data = SubjectDataModule(frames_per_step=cfg.frames_per_step, cache_dir=str(out) if out else None,
                             tracker=cfg.tracker, targets=targets, model=model)
    data.setup("fit")
    static_init = cfg.static_init_mm if targets.has_maps else 0.0  # no dense evidence: no static prior offset
    module = HeadFitModule(targets.num_frames, model=model, weights=cfg.weights, lr_detail=cfg.lr_detail,
                           lr_params=cfg.lr_params, static_init_mm=static_init,
                           depth_alignment=cfg.depth_alignment, image_size=(targets.height, targets.width))
    module.initialize_from(data.tracking.params, data.tracking.camera)
    callbacks, ckpt = [], None
    if out is not None:
        ckpt_dir = out / "checkpoints"
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                                      every_n_train_steps=cfg.checkpoint_every))
        ckpt = str(ckpt_dir / "last.ckpt") if (ckpt_dir / "last.ckpt").is_file() else None
    resumed_from = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"] if ckpt else 0
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU/tip banners per fit
    trainer = pl.Trainer(max_steps=cfg.steps, accelerator=cfg.accelerator, devices=1, logger=False,
                         callbacks=callbacks, enable_checkpointing=out is not None,
                         enable_progress_bar=cfg.show_progress, enable_model_summary=False)
    if cfg.steps > 0:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    head = head_from_module(module, meta={"source": str(source) if not isinstance(source, FitTargets) else "tensors",
                                          "tracking_error_px": float(data.tracking.error_px.nanmean()),
                                          "has_maps": targets.has_maps, "steps": cfg.steps,
                                          "resumed_from_step": int(resumed_from)})
    if out is not None:
        head.save(out)
    return head


@torch.no_grad()
def head_from_module(module: HeadFitModule, meta: dict | None = None) -> PersonalizedHead:
    """Read the fitted variables out of a :class:`HeadFitModule`."""
    module = module.cpu()
    module.model.cpu()
    n = module.expression.shape[0]
    frames = torch.arange(n)
    params = module.params(frames).map(lambda v: v.detach().clone())
    delta_f_face = (module.delta_f_mm.weight.detach().view(n, -1, 3) * 1e-3).clone()
    return PersonalizedHead(module.model, params, (module.delta_g_mm.detach() * 1e-3).clone(), delta_f_face,
                            module.camera, meta or {}, module.hparams.model_path)
