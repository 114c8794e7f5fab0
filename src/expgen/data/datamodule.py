"""``VideoDataModule``: a folder of precomputed clips (format in ``expgen.data.clips``).

Layout: either ``data_dir/train/*.safetensors`` and ``data_dir/val/*.safetensors`` (optionally
``data_dir/test/``, which ``test`` and ``predict`` read, else ``val``), or a flat ``data_dir/*.safetensors``
split by subject: the last ``ceil(val_fraction x subjects)`` subject ids in sorted order are held
out for validation.
With ``synthetic_subjects > 0`` and no clips present, ``prepare_data`` writes clips of synthetic subjects with exact
ground truth (``expgen.data.subjects``: textured heads, N^D of the true posed meshes), so the tiny configuration runs on
a fresh machine; ``synthetic_clips > 0`` writes toy ellipsoid clips (``expgen.data.synthetic``) instead.
With ``sources`` (videos, frame folders or ``exp-synth`` subjects), ``prepare_data`` builds the clips of the paper
(``expgen.data.clip_builder.build_clips``: fitted heads, N^D from the frozen expression transfer module) into the flat
``data_dir``. That build is resumable and skips finished sources, so it runs on every ``prepare_data``: an
interrupted build continues, and sources added to the list are built.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader
from typing_extensions import override

from expgen.data.clip_builder import ClipBuildConfig, build_clips
from expgen.data.clips import ClipDataset, read_metadata
from expgen.data.subjects import write_subject_clips
from expgen.data.synthetic import write_synthetic_dataset
from exphead.fitting import FitConfig

logger = logging.getLogger(__name__)


def _clip_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


class VideoDataModule(L.LightningDataModule):
    """Batches of ``frames`` / ``driving_normals`` ``B x F x 3 x H x W`` and ``reference_image`` /
    ``reference_normal`` ``B x 3 x H x W`` in ``[0, 1]``, plus ``subject_id``.

    Args:
        data_dir: the clip folder.
        batch_size: clips per batch (per device).
        num_workers: DataLoader workers.
        num_frames: frames per training window (``1 + 4k``); ``None`` uses whole clips.
        resolution: required clip side in pixels (checked, not resized); ``None`` accepts any.
        val_fraction: share of subjects held out when ``data_dir`` is flat.
        synthetic_subjects: if > 0 and the folder holds no clips, write clips of this many synthetic training
            subjects (plus ``max(1, synthetic_subjects // 8)`` held-out ones), ``synthetic_clips_per_subject`` each.
        synthetic_clips_per_subject: clips per synthetic subject.
        synthetic_clips: if > 0 and the folder holds no clips, write this many toy ellipsoid training clips
            (plus ``max(1, synthetic_clips // 8)`` held-out ones).
        synthetic_size: side in pixels of the synthetic clips (subjects or toy).
        synthetic_frames: frames per synthetic clip (subjects or toy).
        seed: seed of the synthetic clips and of the reference-frame choice of built and subject clips.
        sources: videos / frame folders / ``exp-synth`` subject folders to build clips from (one subject each).
        heads_dir: where fitted heads are saved and reused (``heads_dir/<name>/head.json``, e.g. ``exp-fit``
            outputs); default ``data_dir/heads``.
        transfer_checkpoint: the trained expression transfer module (a ``TransferModule`` ``.ckpt`` or an
            ``ExpressionTransfer.save_pretrained`` folder), loaded frozen; needed for ``driving="transfer"``.
        driving: ``"transfer"`` (paper: N^D from the transfer module) or ``"fitted"`` (the fitted Δf(i)).
        clip_frames: frames per built clip (``1 + 4k``); default ``num_frames``.
        frame_stride: use every n-th source frame.
        clip_hop: frames between built clip starts; default ``clip_frames`` (no overlap).
        fit_size: side of the square crops the heads are fitted at.
        fit_steps: detail-fit steps per head.
        skip_bad_sources: skip sources that cannot be used (no face, unreadable, too short) instead of failing.
    """

    def __init__(self, data_dir: str = "data/expgen", batch_size: int = 1, num_workers: int = 0,
                 num_frames: int | None = None, resolution: int | None = None, val_fraction: float = 0.1,
                 synthetic_subjects: int = 0, synthetic_clips_per_subject: int = 4, synthetic_clips: int = 0,
                 synthetic_size: int = 64, synthetic_frames: int = 9, seed: int = 0,
                 sources: list[str] | None = None, heads_dir: str | None = None,
                 transfer_checkpoint: str | None = None, driving: Literal["transfer", "fitted"] = "transfer",
                 clip_frames: int | None = None, frame_stride: int = 1, clip_hop: int | None = None,
                 fit_size: int = 256, fit_steps: int = 300, skip_bad_sources: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        chosen = [name for name, on in (("sources", bool(sources)), ("synthetic_subjects", synthetic_subjects > 0),
                                        ("synthetic_clips", synthetic_clips > 0)) if on]
        if len(chosen) > 1:
            which = ("both " if len(chosen) == 2 else "all of ") + " and ".join(chosen)
            raise ValueError("set one of data.init_args.sources (clips built from fitted heads), synthetic_subjects "
                             f"(synthetic heads) or synthetic_clips (toy ellipsoids), not {which}")
        self.data_dir = Path(data_dir)
        self.train_set: ClipDataset | None = None
        self.val_set: ClipDataset | None = None
        self.test_set: ClipDataset | None = None

    def _has_clips(self) -> bool:
        return bool(_clip_files(self.data_dir) or _clip_files(self.data_dir / "train"))

    def build_config(self) -> ClipBuildConfig:
        """The :class:`ClipBuildConfig` of the ``sources`` path."""
        hp = self.hparams
        frames = hp.clip_frames or hp.num_frames
        if frames is None or hp.resolution is None:
            raise ValueError("building clips from data.init_args.sources needs resolution and clip_frames (or "
                             "num_frames) set")
        return ClipBuildConfig(num_frames=frames, size=hp.resolution, stride=hp.frame_stride, hop=hp.clip_hop,
                               driving=hp.driving, on_error="skip" if hp.skip_bad_sources else "fail", seed=hp.seed,
                               fit=FitConfig(image_size=hp.fit_size, steps=hp.fit_steps, show_progress=False))

    @override
    def prepare_data(self) -> None:
        hp = self.hparams
        if hp.sources:
            logger.info("building clips of %d source(s) in %s", len(hp.sources), self.data_dir)
            build_clips(hp.sources, self.data_dir, hp.transfer_checkpoint, self.build_config(), hp.heads_dir)
        if hp.synthetic_subjects > 0 and not self._has_clips():
            val = max(1, hp.synthetic_subjects // 8)
            logger.info("writing clips of %d + %d synthetic subjects to %s", hp.synthetic_subjects, val, self.data_dir)
            write_subject_clips(self.data_dir, hp.synthetic_subjects, hp.synthetic_clips_per_subject,
                                hp.synthetic_frames, hp.synthetic_size, hp.seed, num_val_subjects=val)
        if hp.synthetic_clips > 0 and not self._has_clips():
            logger.info("writing %d synthetic clips to %s", hp.synthetic_clips, self.data_dir)
            write_synthetic_dataset(self.data_dir, hp.synthetic_clips, max(1, hp.synthetic_clips // 8),
                                    hp.synthetic_frames, hp.synthetic_size, hp.seed)

    def split_files(self) -> dict[str, list[Path]]:
        """Clip files of the ``train``, ``val`` and ``test`` splits."""
        if (self.data_dir / "train").is_dir():
            return {s: _clip_files(self.data_dir / s) for s in ("train", "val", "test")}
        files = _clip_files(self.data_dir)
        if not files:
            raise FileNotFoundError(
                f"no *.safetensors clips in {self.data_dir} or {self.data_dir / 'train'}: build clips there "
                "(exp-clips, or data.init_args.sources), or set data.init_args.synthetic_subjects > 0 to write "
                "synthetic subject clips (synthetic_clips > 0: toy clips)"
            )
        subject = {f: str(read_metadata(f)["subject_id"]) for f in files}
        subjects = sorted(set(subject.values()))
        held_out = set(subjects[len(subjects) - math.ceil(self.hparams.val_fraction * len(subjects)):])
        if len(held_out) == len(subjects):
            held_out = set()
        return {"train": [f for f in files if subject[f] not in held_out],
                "val": [f for f in files if subject[f] in held_out], "test": []}

    @override
    def setup(self, stage: str | None = None) -> None:
        splits = self.split_files()
        if not splits["train"] and stage in (None, "fit"):
            raise FileNotFoundError(f"no training clips found under {self.data_dir}")
        n, res = self.hparams.num_frames, self.hparams.resolution
        self.train_set = ClipDataset(splits["train"], n, random_window=True, resolution=res)
        self.val_set = ClipDataset(splits["val"], n, resolution=res)
        self.test_set = ClipDataset(splits["test"] or splits["val"], n, resolution=res)

    def _loader(self, dataset: ClipDataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    @override
    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
