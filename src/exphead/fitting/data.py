"""``SubjectDataModule``: the frames of one subject with their fitting targets and tracking."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from typing_extensions import override

from exphead.head_model import HeadModel
from exphead.tracking.tracker import TrackerConfig, TrackingResult
from exphead.tracking.video import VideoTracker

from .config import FitConfig
from .onnx_maps import NormalFrame
from .sources import subject_targets, synthetic_targets
from .targets import FitTargets

logger = logging.getLogger(__name__)
TRACKING_FILE = "tracking.safetensors"


class FrameDataset(Dataset):
    """One item per frame: its index and targets."""

    def __init__(self, targets: FitTargets) -> None:
        self.t = targets

    def __len__(self) -> int:
        return self.t.num_frames

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = self.t
        item = {"index": torch.tensor(i), "landmarks": torch.nan_to_num(t.landmarks[i]), "valid": t.valid[i]}
        for name in ("normal", "depth", "mask"):
            value = getattr(t, name)
            if value is not None and t.has_maps:
                item[name] = value[i]
        return item


def tracking_key(targets: FitTargets, config: TrackerConfig, model: HeadModel) -> str:
    """Fingerprint of what a tracking result depends on: the landmarks, the frame size, the tracker's
    settings and the head model (a cached result with another key is recomputed)."""
    digest = hashlib.sha256(torch.nan_to_num(targets.landmarks, nan=-1.0).float().numpy().tobytes())
    digest.update(targets.valid.numpy().tobytes())
    settings = {k: v for k, v in asdict(config).items() if k != "show_progress"}
    digest.update(json.dumps([targets.height, targets.width, settings, model.level, model.num_vertices,
                              model.num_betas, model.num_expression, float(model.v_template.sum())]).encode())
    return digest.hexdigest()[:20]


class SubjectDataModule(pl.LightningDataModule):
    """Frames of one subject for :class:`~exphead.fitting.module.HeadFitModule`.

    Give ``targets`` directly (Python; taken as they are), or a ``source`` (video, image folder or image;
    see :func:`~exphead.fitting.sources.load_targets`), or ``synthetic_seed`` for a generated subject with
    exact normal and depth maps (how the configs in ``configs/exphead`` run on a fresh machine).
    Targets of a ``source`` or a seed go through :func:`~exphead.fitting.sources.subject_targets`, as in
    ``fit_subject``: DAViD ONNX models (``*_model``, else ``$EXPPORTRAIT_DAVID_*``) estimate the maps a
    source lacks, and an explicit model replaces a synthetic subject's exact maps. Tracking runs in
    :meth:`setup` and is cached in ``cache_dir`` under a fingerprint of its inputs (resumable; a cache of
    other landmarks or settings is recomputed, never reused).

    An epoch draws ``trainer.max_steps`` batches (one progress bar over the whole fit), or one batch per
    frame without a step limit.

    Args:
        frames_per_step: frames rendered per optimisation step (the batch size).
        normal_model, depth_model, foreground_model: DAViD ONNX models (see ``FitConfig``); depth from a
            model is relative, which ``HeadFitModule(depth_alignment="auto")`` fits by scale and shift.
        normal_frame: axes of the normal model's output (``auto``, ``opengl`` or ``opencv``).
        seed: seed of the frame sampler's own generator (the fit does not depend on the global RNG).
    """

    def __init__(self, source: str | None = None, synthetic_seed: int | None = None, num_frames: int = 16,
                 image_size: int = 256, maps: str | None = None, frames_per_step: int = 4,
                 cache_dir: str | None = None, tracker: TrackerConfig | None = None,
                 targets: FitTargets | None = None, model: HeadModel | None = None,
                 normal_model: str | None = None, depth_model: str | None = None,
                 foreground_model: str | None = None, normal_frame: NormalFrame = "auto", seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["targets", "model", "tracker"])
        self.targets, self.tracker = targets, tracker or TrackerConfig()
        self.tracking: TrackingResult | None = None
        self._model = model

    @property
    def model(self) -> HeadModel:
        if self._model is None:
            self._model = HeadModel()
        return self._model

    def _targets(self) -> FitTargets:
        hp = self.hparams
        cfg = FitConfig(image_size=hp.image_size, max_frames=hp.num_frames, normal_model=hp.normal_model,
                        depth_model=hp.depth_model, foreground_model=hp.foreground_model,
                        normal_frame=hp.normal_frame, tracker=self.tracker)
        if hp.source is not None:
            return subject_targets(hp.source, cfg, maps=hp.maps)
        if hp.synthetic_seed is not None:
            exact = synthetic_targets(self.model, hp.synthetic_seed, hp.num_frames, hp.image_size)
            return subject_targets(exact, cfg, given=False)
        raise ValueError("SubjectDataModule needs targets, a source or a synthetic_seed")

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.targets is None:
            self.targets = self._targets()
        if self.tracking is not None:
            return
        t = self.targets
        key = tracking_key(t, self.tracker, self.model)
        cache = Path(self.hparams.cache_dir) / TRACKING_FILE if self.hparams.cache_dir else None
        if cache is not None and cache.is_file():
            result, meta = TrackingResult.load(cache)
            if meta.get("key") == key:
                self.tracking = result
                return
            logger.info("%s holds the tracking of other frames or settings: tracking again", cache)
        self.tracking = VideoTracker(self.tracker, model=self.model).fit(t.landmarks, t.valid, t.height, t.width)
        if cache is not None:
            self.tracking.save(cache, {"key": key})

    @override
    def train_dataloader(self) -> DataLoader:
        n = self.targets.num_frames
        bs = min(self.hparams.frames_per_step, n)
        trainer = getattr(self, "trainer", None)
        steps = trainer.max_steps if trainer is not None and trainer.max_steps and trainer.max_steps > 0 else None
        samples = steps * bs if steps else max(n, bs)
        # its own generator: the frame order (and so the fit) does not depend on the global RNG state
        generator = torch.Generator().manual_seed(self.hparams.seed)
        sampler = RandomSampler(range(n), replacement=n < bs * 2, num_samples=samples,
                                generator=generator)
        return DataLoader(FrameDataset(self.targets), batch_size=bs, sampler=sampler, drop_last=True)
