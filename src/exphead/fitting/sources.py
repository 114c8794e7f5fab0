"""Fit targets from a source: a video, a frame folder, an image, an ``exp-synth`` folder or a synthetic seed.

:func:`subject_targets` is what :func:`~exphead.fitting.fit_subject` and
:class:`~exphead.fitting.SubjectDataModule` (``exp-train``) both run: frames are read
(:class:`exphead.media.FrameSource`), cropped and given landmarks by the library's one tracking entry
(:class:`exphead.tracking.VideoTracker`), and maps are added from a folder and/or DAViD ONNX models.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from exphead.head_model import HeadModel
from exphead.media import FrameSource, to_tensor
from exphead.tracking.landmarks import LandmarkDetector
from exphead.tracking.video import VideoTracker

from .config import FitConfig
from .map_files import maps_from_folder
from .map_models import add_maps, warn_unmasked
from .targets import FitTargets

logger = logging.getLogger(__name__)


def load_targets(source: str | os.PathLike, config: FitConfig | None = None, maps: str | os.PathLike | None = None,
                 detector: LandmarkDetector | None = None) -> FitTargets:
    """Frames and landmarks of a source, with maps from ``maps`` and/or the ONNX models named in ``config``.

    A folder with ``frames/`` (and optionally ``landmarks.npy``, ``normals/``, ``depth/``), as written
    by ``exp-synth``, is read as it is: its frames are taken as already cropped, and its maps are
    used unless ``maps`` or a model of the same kind is given (see :func:`add_maps`). The
    ``$EXPPORTRAIT_DAVID_*`` variables are not read here (tracking needs no maps): :func:`subject_targets`
    reads them.
    """
    cfg = config or FitConfig()
    root, given = Path(source), maps is not None
    frames = FrameSource(source, cfg.stride, cfg.max_frames).read()
    lm_file = root / "landmarks.npy" if root.is_dir() else None
    box = None
    if lm_file is not None and lm_file.is_file():
        landmarks = np.load(lm_file)[::cfg.stride][: len(frames)].astype(np.float32)
        valid = np.isfinite(landmarks).all((1, 2))
        if maps is None and ((root / "normals").is_dir() or (root / "depth").is_dir()):
            maps = root  # the subject folder's own maps: not "given" (a model may replace them)
    else:
        tracker = VideoTracker(cfg.tracker, cfg.image_size, detector)
        face = tracker.detect(frames, crop=cfg.crop, on_missing=cfg.on_missing_face, source=str(source))
        frames, landmarks, valid, box = face.frames, face.landmarks, face.valid, face.box
    h, w = frames.shape[1:3]
    if box is None and (h, w) != (cfg.image_size, cfg.image_size):
        logger.info("frames are %dx%d (not cropped): fitting at that size", h, w)
    normal = depth = None
    sources = {}
    if maps is not None:
        normal, depth = maps_from_folder(maps, len(frames), stride=cfg.stride)
        sources = {k: f"folder:{Path(maps) / sub}" for k, sub, m in (("normal", "normals", normal),
                                                                    ("depth", "depth", depth)) if m is not None}
    targets = FitTargets(torch.from_numpy(landmarks), torch.from_numpy(valid), h, w, normal=normal, depth=depth,
                         frames=to_tensor(frames), map_source=sources, crop_box=box)
    return add_maps(targets, cfg.normal_model, cfg.depth_model, cfg.foreground_model, cfg.normal_frame,
                    given=given, use_env=False)


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
        targets = load_targets(source, cfg, maps, detector)
        # $EXPPORTRAIT_DAVID_* for missing kinds; an explicit matte not used yet (no maps before them) now
        foreground = None if "foreground" in targets.map_source else cfg.foreground_model
        targets = add_maps(targets, foreground_model=foreground, normal_frame=cfg.normal_frame)
    if not targets.has_maps:
        logger.warning("no normal/depth maps: fitting landmarks only (pass maps, --normal_model/--depth_model, or "
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
