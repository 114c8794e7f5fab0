"""``SubjectDataModule``: the frames of one subject with their fitting targets and tracking."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from exphead.camera import Camera
from exphead.head_model import HeadModel, HeadParams
from exphead.io_utils import atomic_path
from exphead.tracking.tracker import TrackerConfig, TrackingResult, track_landmarks

from .targets import FitTargets, NormalFrame

logger = logging.getLogger(__name__)


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


def save_tracking(path: str | os.PathLike, result: TrackingResult) -> None:
    tensors = {f"params.{k}": v.contiguous() for k, v in result.params.to_dict().items()}
    tensors.update({"camera.K": result.camera.K, "camera.R": result.camera.R, "camera.t": result.camera.t,
                    "landmarks": result.landmarks, "valid": result.valid.to(torch.uint8), "error_px": result.error_px})
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
                  metadata={"height": str(result.camera.height), "width": str(result.camera.width)})


def load_tracking(path: str | os.PathLike) -> TrackingResult:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    t = load_file(str(path))
    params = HeadParams(**{k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("params.")})
    cam = Camera(t["camera.K"], t["camera.R"], t["camera.t"], int(meta["height"]), int(meta["width"]))
    return TrackingResult(params, cam, t["landmarks"], t["valid"].bool(), t["error_px"])


class SubjectDataModule(pl.LightningDataModule):
    """Frames of one subject for :class:`~exphead.fitting.module.HeadFitModule`.

    Give ``targets`` directly (Python; taken as they are), or a ``source`` (video, image folder or image;
    see :func:`exphead.fitting.fit.load_targets`), or ``synthetic_seed`` for a generated subject with
    exact normal and depth maps (how the configs in ``configs/exphead`` run on a fresh machine).
    Targets of a ``source`` or a seed go through :func:`exphead.fitting.fit.subject_targets`, as in
    ``fit_subject``: DAViD ONNX models (``*_model``, else ``$EXPPORTRAIT_DAVID_*``) estimate the maps a
    source lacks, and an explicit model replaces a synthetic subject's exact maps. Tracking runs in
    :meth:`setup` and is cached in ``cache_dir`` (resumable).

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

    def setup(self, stage: str | None = None) -> None:
        if self.targets is None:
            from .fit import FitConfig, subject_targets, synthetic_targets

            hp = self.hparams
            cfg = FitConfig(image_size=hp.image_size, max_frames=hp.num_frames, normal_model=hp.normal_model,
                            depth_model=hp.depth_model, foreground_model=hp.foreground_model,
                            normal_frame=hp.normal_frame)
            if hp.source is not None:
                self.targets = subject_targets(hp.source, cfg, maps=hp.maps)
            elif hp.synthetic_seed is not None:
                exact = synthetic_targets(self.model, hp.synthetic_seed, hp.num_frames, hp.image_size)
                self.targets = subject_targets(exact, cfg, given=False)
            else:
                raise ValueError("SubjectDataModule needs targets, a source or a synthetic_seed")
        if self.tracking is None:
            cache = Path(self.hparams.cache_dir) / "tracking.safetensors" if self.hparams.cache_dir else None
            if cache is not None and cache.is_file():
                self.tracking = load_tracking(cache)
            else:
                t = self.targets
                self.tracking = track_landmarks(self.model, t.landmarks, t.height, t.width, self.tracker, t.valid)
                if cache is not None:
                    save_tracking(cache, self.tracking)

    def train_dataloader(self) -> DataLoader:
        n = self.targets.num_frames
        bs = min(self.hparams.frames_per_step, n)
        # its own generator: the frame order (and so the fit) does not depend on the global RNG state
        generator = torch.Generator().manual_seed(self.hparams.seed)
        sampler = torch.utils.data.RandomSampler(range(n), replacement=n < bs * 2, num_samples=max(n, bs),
                                                 generator=generator)
        return DataLoader(FrameDataset(self.targets), batch_size=bs, sampler=sampler, drop_last=True)

    def frame_weights(self) -> np.ndarray:
        return self.targets.valid.numpy().astype(np.float32)
