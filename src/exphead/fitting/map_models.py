"""Which DAViD ONNX models estimate a fit's maps, and the foreground they are limited to.

A model comes from an argument (``--normal-model`` ...), else from ``$EXPPORTRAIT_DAVID_NORMAL`` /
``_DEPTH`` / ``_FOREGROUND``; :func:`add_maps` runs them on the targets' frames. Maps from a model cover
every pixel, so they are limited to DAViD's foreground matte thresholded at :data:`FOREGROUND_THRESHOLD`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

from .onnx_maps import MODEL_ENV, MapKind, NormalFrame, OnnxMapEstimator
from .targets import FitTargets

logger = logging.getLogger(__name__)
FOREGROUND_THRESHOLD = 0.5  # matte value above which a pixel is foreground (DAViD's binarization_threshold)


def resolve_map_model(path: str | os.PathLike | None, kind: MapKind, use_env: bool = True) -> Path | None:
    """The ONNX model for ``kind`` (``"normal"``, ``"depth"`` or ``"foreground"``) maps: ``path``, else
    (with ``use_env``) ``$EXPPORTRAIT_DAVID_<KIND>``, else None.

    Raises:
        FileNotFoundError: the named file is missing (names the option and the environment variable).
    """
    if kind not in MODEL_ENV:
        raise ValueError(f"map kind must be one of {tuple(MODEL_ENV)}, got {kind!r}")
    env, origin = MODEL_ENV[kind], "argument"
    if path is None and use_env and os.environ.get(env):
        path, origin = os.environ[env], f"${env}"
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"DAViD {kind} model not found: {p} (from {origin}). Download the {kind} ONNX model listed at "
            f"https://github.com/microsoft/DAViD and pass it with --{kind}-model (FitConfig.{kind}_model) or ${env}.")
    return p


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
