"""``fit_subject``: a video, an image folder, an image or tensors -> :class:`PersonalizedHead`.

Stages: read and crop the frames, detect landmarks, track SMPL-X (cached), then the detail fit
under a Lightning ``Trainer`` whose ``last.ckpt`` makes a killed fit resume where it stopped.
Everything lands in ``out_dir`` atomically; the head is ``out_dir/head.{json,safetensors}``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
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
from .targets import (
    FOREGROUND_THRESHOLD,
    FitTargets,
    NormalFrame,
    OnnxMapEstimator,
    maps_from_folder,
    resolve_depth_alignment,
    resolve_map_model,
)

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
    # "auto": scale_shift when the depth comes from an ONNX model (relative depth), else none (metric depth)
    depth_alignment: Literal["auto", "none", "shift", "scale_shift"] = "auto"
    normal_model: str | None = None  # DAViD normal ONNX model (default $EXPPORTRAIT_DAVID_NORMAL)
    depth_model: str | None = None  # DAViD depth ONNX model (default $EXPPORTRAIT_DAVID_DEPTH)
    # DAViD foreground-segmentation ONNX model (default: the multi-task graph giving the maps, else
    # $EXPPORTRAIT_DAVID_FOREGROUND): its matte > 0.5 limits maps from models to the person
    foreground_model: str | None = None
    normal_frame: NormalFrame = "auto"  # axes of the normal model's output (auto: from the visible side)
    checkpoint_every: int = 50  # steps between checkpoints (resume point of a killed fit)
    crop: bool = True  # False: frames are already aligned square crops (e.g. synthetic subjects)
    on_missing_face: Literal["skip", "fail"] = "skip"
    max_frames: int | None = None
    stride: int = 1
    accelerator: str = "auto"
    show_progress: bool = True
    seed: int = 0  # order in which frames are drawn for the detail steps (fits are reproducible)


def _matte_model(explicit: str | os.PathLike | None, use_env: bool, sources: dict[str, str],
                 estimators: dict[str, OnnxMapEstimator]) -> Path | None:
    """The foreground model of :func:`add_maps`: explicit, else the multi-task graph that estimated maps in
    this call, else ``$EXPPORTRAIT_DAVID_FOREGROUND``; the last two only for model maps not yet matted."""
    if explicit is not None:
        if "foreground" in sources:
            raise ValueError(f"foreground given twice: from {sources['foreground']} and from the ONNX model "
                             f"{explicit}; drop one")
        return resolve_map_model(explicit, "foreground")
    model_maps = [k for k in ("normal", "depth") if sources.get(k, "").startswith("onnx:")]
    if "foreground" in sources or not model_maps:
        return None
    multi = [e.path for e in estimators.values() if e.multi_task]
    if multi:
        logger.info("foreground: the matte of the multi-task model %s", multi[0])
        return multi[0]
    return resolve_map_model(None, "foreground", use_env)


def add_maps(targets: FitTargets, normal_model: str | os.PathLike | None = None,
             depth_model: str | os.PathLike | None = None, foreground_model: str | os.PathLike | None = None,
             normal_frame: NormalFrame = "auto", given: bool = True, use_env: bool = True) -> FitTargets:
    """``targets`` with normal / depth maps and their foreground estimated by DAViD ONNX models on
    ``targets.frames``.

    A model is ``normal_model`` / ``depth_model`` / ``foreground_model``, else (``use_env``)
    ``$EXPPORTRAIT_DAVID_NORMAL`` / ``_DEPTH`` / ``_FOREGROUND``; a model from the environment only fills a
    map kind that is missing. Where ``targets`` already holds a map of the same kind, an explicit model is
    an error with ``given=True`` (maps the user passed) and replaces the maps with ``given=False`` (maps
    found in an ``exp-synth`` folder). A DAViD multi-task graph may be passed as any of the three.

    The mask: model maps cover every pixel, so maps from models are limited to the foreground matte
    thresholded at ``FOREGROUND_THRESHOLD`` (from ``foreground_model``, else the multi-task graph that
    gave maps here, else ``$EXPPORTRAIT_DAVID_FOREGROUND``); without one, every pixel counts and the
    background enters the losses wherever the rendered head covers it. Maps from folders keep the mask
    of their non-zero pixels (times the matte of an explicit ``foreground_model``). With no maps at all
    the foreground model is not run (and not recorded in ``map_source``).

    Raises:
        ValueError: a map kind given both as maps and as an explicit model, or no frames to run on.
    """
    maps, sources = {"normal": targets.normal, "depth": targets.depth}, dict(targets.map_source)
    estimators: dict[str, OnnxMapEstimator] = {}
    estimated = {}
    for kind, arg in (("normal", normal_model), ("depth", depth_model)):
        if maps[kind] is not None and arg is None:
            continue  # a model from the environment only fills a missing kind
        path = resolve_map_model(arg, kind, use_env)
        if path is None:
            continue
        if maps[kind] is not None:
            if given:
                raise ValueError(f"{kind} maps given twice: from {sources.get(kind, 'the targets')} and from the "
                                 f"ONNX model {path}; drop one (--maps folder's {kind} maps or --{kind}-model)")
            logger.info("%s maps: the ONNX model %s replaces %s", kind, path, sources.get(kind, "the folder's maps"))
        if targets.frames is None:
            raise ValueError(f"the {kind} ONNX model {path} needs the frames, but these targets have none")
        estimators[kind] = OnnxMapEstimator(path, kind, normal_frame)
        estimated[kind] = estimators[kind](targets.frames)
        sources[kind] = f"onnx:{path}"
    had = [k for k, m in maps.items() if m is not None]
    maps.update(estimated)
    matte_path = _matte_model(foreground_model, use_env, sources, estimators)
    if maps["normal"] is None and maps["depth"] is None:
        matte_path = None  # nothing to mask
    if not estimated and matte_path is None:
        return targets
    # the foreground of the targets stays unless every map it came from was replaced
    mask = targets.mask
    if mask is None or (had and all(k in estimated for k in had)):
        mask = torch.ones(targets.num_frames, 1, targets.height, targets.width)
    if matte_path is not None:
        if targets.frames is None:
            raise ValueError(f"the foreground ONNX model {matte_path} needs the frames, but these targets have none")
        matte = OnnxMapEstimator(matte_path, "foreground")(targets.frames)
        mask = mask * (matte > FOREGROUND_THRESHOLD).to(mask.dtype)
        sources["foreground"] = f"onnx:{matte_path}"
        logger.info("foreground: %.0f%% of the pixels (matte of %s > %.1f)", 100 * mask.mean().item(),
                    matte_path.name, FOREGROUND_THRESHOLD)
    return replace(targets, normal=maps["normal"], depth=maps["depth"], mask=mask, map_source=sources)


def warn_unmasked(targets: FitTargets) -> None:
    """Log a warning when maps from a model have no foreground (neither a matte nor a kept mask)."""
    models = [k for k in ("normal", "depth") if targets.map_source.get(k, "").startswith("onnx:")]
    if models and "foreground" not in targets.map_source and (targets.mask is None or targets.mask.min() > 0):
        logger.warning("%s maps from a model without a foreground matte: background pixels enter the losses where "
                       "the rendered head covers them (pass --foreground-model or set $EXPPORTRAIT_DAVID_FOREGROUND)",
                       " and ".join(models))


def read_source_frames(source: str | os.PathLike, stride: int = 1, max_frames: int | None = None) -> np.ndarray:
    """``F x H x W x 3`` uint8 frames of a video, an image, a frame folder or an ``exp-synth`` folder
    (its ``frames/``)."""
    root = Path(source)
    frames, _ = read_frames(root / "frames" if (root / "frames").is_dir() else root, stride=stride,
                            max_frames=max_frames)
    return frames


def load_targets(source: str | os.PathLike, image_size: int = 256, maps: str | os.PathLike | None = None,
                 detector: LandmarkDetector | None = None, crop: bool = True,
                 on_missing: Literal["skip", "fail"] = "skip", max_frames: int | None = None,
                 stride: int = 1, normal_model: str | os.PathLike | None = None,
                 depth_model: str | os.PathLike | None = None, normal_frame: NormalFrame = "auto",
                 foreground_model: str | os.PathLike | None = None) -> FitTargets:
    """Frames and landmarks of a video / image folder / image, with maps from ``maps`` and/or ONNX models.

    A folder with ``frames/`` (and optionally ``landmarks.npy``, ``normals/``, ``depth/``), as written
    by ``exp-synth``, is read as it is: its frames are taken as already cropped, and its maps are
    used unless ``maps`` or a model of the same kind is given (see :func:`add_maps`). The
    ``$EXPPORTRAIT_DAVID_*`` variables are not read here (tracking needs no maps): :func:`fit_subject` reads them.
    """
    root, given = Path(source), maps is not None
    frames = read_source_frames(source, stride, max_frames)
    box = None
    lm_file = root / "landmarks.npy" if root.is_dir() else None
    if lm_file is not None and lm_file.is_file():
        landmarks = np.load(lm_file)[::stride][: len(frames)].astype(np.float32)
        valid = np.isfinite(landmarks).all((1, 2))
        crop = False
        if maps is None and ((root / "normals").is_dir() or (root / "depth").is_dir()):
            maps = root  # the subject folder's own maps: not "given" (a model may replace them)
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
    sources = {}
    if maps is not None:
        normal, depth = maps_from_folder(maps, len(frames), stride=stride)
        sources = {k: f"folder:{Path(maps) / sub}" for k, sub, m in (("normal", "normals", normal),
                                                                    ("depth", "depth", depth)) if m is not None}
    targets = FitTargets(torch.from_numpy(landmarks), torch.from_numpy(valid), h, w, normal=normal, depth=depth,
                         frames=to_tensor(frames), map_source=sources, crop_box=box)
    return add_maps(targets, normal_model, depth_model, foreground_model, normal_frame, given=given, use_env=False)


def subject_targets(source: str | os.PathLike | FitTargets, config: FitConfig | None = None,
                    maps: str | os.PathLike | None = None, detector: LandmarkDetector | None = None,
                    given: bool = True) -> FitTargets:
    """The targets a fit runs on (:func:`fit_subject` and :class:`SubjectDataModule` alike).

    A path goes through :func:`load_targets` with ``config``'s models, then :func:`add_maps` fills the
    kinds still missing from ``$EXPPORTRAIT_DAVID_*``; :class:`FitTargets` go through :func:`add_maps`
    (``given``: their maps were passed by the user, so a model of the same kind is an error; False: a
    model replaces them). Warns when the fit will use landmarks only, or model maps without a matte.
    """
    cfg = config or FitConfig()
    models = {"normal_model": cfg.normal_model, "depth_model": cfg.depth_model,
              "foreground_model": cfg.foreground_model, "normal_frame": cfg.normal_frame}
    if isinstance(source, FitTargets):
        targets = add_maps(source, **models, given=given)
    else:
        targets = load_targets(source, cfg.image_size, maps, detector, cfg.crop, cfg.on_missing_face,
                               cfg.max_frames, cfg.stride, **models)
        # $EXPPORTRAIT_DAVID_* for missing kinds; an explicit matte not used yet (no maps before them) now
        foreground = None if "foreground" in targets.map_source else cfg.foreground_model
        targets = add_maps(targets, foreground_model=foreground, normal_frame=cfg.normal_frame)
    if not targets.has_maps:
        logger.warning("no normal/depth maps: fitting landmarks only (pass maps, --normal-model/--depth-model, or "
                       "set $EXPPORTRAIT_DAVID_NORMAL/$EXPPORTRAIT_DAVID_DEPTH)%s",
                       f"; the foreground model {cfg.foreground_model} is unused" if cfg.foreground_model else "")
    warn_unmasked(targets)
    return targets


def synthetic_targets(model: HeadModel, seed: int, num_frames: int = 16, image_size: int = 256) -> FitTargets:
    """Exact targets of a generated subject (see :mod:`exphead.synthetic`)."""
    from exphead.synthetic.subject import make_subject, render_subject

    with torch.no_grad():
        subject = make_subject(model, seed, num_frames, height=image_size, width=image_size)
        r = render_subject(model, subject)
    valid = torch.ones(num_frames, dtype=torch.bool)
    return FitTargets(r.landmarks, valid, image_size, image_size, r.normal, r.depth, r.mask, r.rgb,
                      {"normal": f"synthetic:{seed}", "depth": f"synthetic:{seed}"})


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
    and the head is saved to ``out_dir`` (``head.json`` + ``head.safetensors``) at the end. Normal and
    depth targets come from ``maps`` (a folder), from the DAViD ONNX models of ``config`` (or
    ``$EXPPORTRAIT_DAVID_NORMAL`` / ``_DEPTH``, limited to the matte of ``_FOREGROUND``), or the fit uses
    landmarks alone; ``head.meta["map_source"]`` says which (see :func:`subject_targets`).
    """
    cfg = config or FitConfig()
    model = model or HeadModel()
    targets = subject_targets(source, cfg, maps, detector)
    depth_alignment = resolve_depth_alignment(cfg.depth_alignment, targets)
    out = Path(out_dir) if out_dir is not None else None
    data = SubjectDataModule(frames_per_step=cfg.frames_per_step, cache_dir=str(out) if out else None,
                             tracker=cfg.tracker, targets=targets, model=model, seed=cfg.seed)
    data.setup("fit")
    static_init = cfg.static_init_mm if targets.has_maps else 0.0  # no dense evidence: no static prior offset
    module = HeadFitModule(targets.num_frames, model=model, weights=cfg.weights, lr_detail=cfg.lr_detail,
                           lr_params=cfg.lr_params, static_init_mm=static_init,
                           depth_alignment=depth_alignment, image_size=(targets.height, targets.width))
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
                                          "map_source": dict(targets.map_source) or "landmarks only",
                                          "depth_alignment": depth_alignment,
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
