"""``TransferDataModule``: training samples for the transfer module from a folder of fitted heads.

Layout: ``root/<subject>/head.json`` + ``head.safetensors`` (:meth:`exphead.personalized.PersonalizedHead.save`),
one sub-folder per subject. The last ``max(1, round(val_fraction x subjects))`` subjects in sorted order
are held out (identity-disjoint validation). A sample is one subject, a window of consecutive frames
(ψ_i, ω_i and the fitted Δf(i) as target) and a random subset of its face vertices, drawn as the two ends
of random face edges (consecutive pairs ``2k, 2k + 1``) so that the loss can compare local shape.

Synthetic data: with ``synthetic_subjects: N`` and no heads under ``root`` (or ``root`` unset, which
means ``$EXPPORTRAIT_CACHE/exptransfer/synthetic-n{N}-f{F}-s{seed}-r{ρ}``), ``prepare_data`` writes N exact
synthetic heads (:func:`exptransfer.synthetic.write_synthetic_heads`, resting creases ρ =
``synthetic_resting_creases``) so a config runs on a fresh machine.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors import safe_open
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from exphead.head_model import HeadModel, HeadParams
from exphead.personalized import PersonalizedHead

from .identity import IdentityGeometry, face_edges, identity_geometry
from .synthetic import default_synthetic_root, write_synthetic_heads

CACHED_SUBJECTS = 512  # identity features kept per worker (about 1 MB each)


def head_folders(root: Path) -> list[Path]:
    """Sorted sub-folders of ``root`` that hold a saved personalized head."""
    return sorted(p for p in root.iterdir() if (p / "head.json").is_file()) if root.is_dir() else []


class HeadWindowDataset(Dataset):
    """(subject, frame window, face-vertex subset) samples of saved heads.

    Each item is a dict: ``positions``, ``normals`` ``S x 3``, ``detail`` ``S x 4``, ``landmarks``
    ``K x 3``, ``rotation`` ``3 x 3`` (an :class:`IdentityGeometry`), ``expression`` ``F x E``, ``jaw_pose``
    ``F x 3``, ``target`` ``F x S x 3`` (fitted Δf, world metres), ``vertex_index`` ``S`` (face-local ids),
    ``edge_pairs`` (whether vertices ``2k, 2k + 1`` share a mesh edge), ``subject`` and ``start`` (the
    subject's index in ``folders`` and the window's first frame).

    Args:
        folders: subject folders.
        model: the head model the heads were fitted on.
        frames_per_sample: F.
        vertices_per_sample: S (even); ``None`` takes every face vertex (no edge pairs).
        samples: items per epoch when ``random`` (``None``: one per window); deterministic datasets have one
            item per window (the non-overlapping windows of every subject, the last one flush with the end).
        random: draw subject, window and vertices at random (training) or deterministically (validation).
        active_fraction: share of the edges drawn among those touching the subject's *active* vertices (peak
            |Δf| over its frames above the 75th percentile of that peak over the face), the rest uniformly.
            Shifts the loss weight towards the (sparse) wrinkles.
    """

    def __init__(self, folders: list[Path], model: HeadModel, frames_per_sample: int, vertices_per_sample: int | None,
                 samples: int | None, random: bool, seed: int = 0, active_fraction: float = 0.0) -> None:
        if not 0.0 <= active_fraction <= 1.0:
            raise ValueError(f"active_fraction must be in [0, 1], got {active_fraction}")
        self.folders, self.model, self.frames = folders, model, frames_per_sample
        self.active_fraction = active_fraction
        self.vertices, self.random, self.seed = vertices_per_sample, random, seed
        self.face_index = torch.nonzero(model.face_mask > 0).squeeze(1)
        self.edges = face_edges(model)
        self.num_frames = [PersonalizedHead.read_config(f, check_model=False)["num_frames"] for f in folders]
        short = [f.name for f, n in zip(folders, self.num_frames) if n < frames_per_sample]
        if short:
            raise ValueError(f"subjects {short[:5]} have fewer than frames_per_sample={frames_per_sample} frames; "
                             "lower data.init_args.frames_per_sample")
        if vertices_per_sample is not None and vertices_per_sample % 2:
            raise ValueError(f"vertices_per_sample must be even (edge pairs), got {vertices_per_sample}")
        self.windows = [(s, w) for s, n in enumerate(self.num_frames) for w in self._starts(n)]
        self.samples = samples if random and samples is not None else len(self.windows)
        # per-worker caches, bounded (least recently used first out) for folders of thousands of subjects
        self._geometry: OrderedDict[int, IdentityGeometry] = OrderedDict()
        self._active_edges: OrderedDict[int, Tensor] = OrderedDict()

    def _starts(self, n: int) -> list[int]:
        starts = list(range(0, n - self.frames + 1, self.frames))
        return starts + [n - self.frames] if starts[-1] != n - self.frames else starts

    @staticmethod
    def _remember(cache: OrderedDict, key: int, value: Any) -> Any:
        cache[key] = value
        if len(cache) > CACHED_SUBJECTS:
            cache.popitem(last=False)
        return value

    def geometry(self, subject: int) -> IdentityGeometry:
        """The subject's :class:`IdentityGeometry` (cached per worker)."""
        if subject in self._geometry:
            self._geometry.move_to_end(subject)
        else:
            path = self.folders[subject] / "head.safetensors"
            with safe_open(str(path), "pt") as f:
                if not torch.equal(f.get_tensor("face_index"), self.face_index):
                    raise ValueError(f"{path}: face region does not match the head model (fitted on another model?)")
                params = HeadParams.zeros(1, self.model.num_betas, self.model.num_expression)
                params.betas = f.get_slice("params.betas")[0:1]
                delta_g = f.get_tensor("delta_g")
            with torch.no_grad():
                neutral = self.model.canonical(params, delta_g)[0]
                self._remember(self._geometry, subject, identity_geometry(self.model, neutral, params.betas[0]))
        return self._geometry[subject]

    def active_edges(self, subject: int, chunk: int = 64) -> Tensor:
        """Ids (rows of ``edges``) of the edges touching the subject's active vertices (cached per worker)."""
        if subject in self._active_edges:
            self._active_edges.move_to_end(subject)
        else:
            peak = torch.zeros(self.face_index.shape[0])
            with safe_open(str(self.folders[subject] / "head.safetensors"), "pt") as f:
                for s in range(0, self.num_frames[subject], chunk):
                    frames = f.get_slice("delta_f_face")[s:s + chunk].float()
                    peak = torch.maximum(peak, frames.norm(dim=-1).amax(0))
            active = peak > torch.quantile(peak, 0.75)
            ids = torch.nonzero(active[self.edges].any(1)).squeeze(1)
            self._remember(self._active_edges, subject, ids if ids.numel() else torch.arange(self.edges.shape[0]))
        return self._active_edges[subject]

    def _pick_edges(self, subject: int, generator: torch.Generator | None) -> Tensor:
        count = self.vertices // 2
        num_active = round(self.active_fraction * count)
        pick = torch.randint(self.edges.shape[0], (count - num_active,), generator=generator)
        if num_active:
            active = self.active_edges(subject)
            pick = torch.cat([pick, active[torch.randint(active.shape[0], (num_active,), generator=generator)]])
        return self.edges[pick].reshape(-1)

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = None if self.random else torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        if self.random:
            subject = int(torch.randint(len(self.folders), ()))
            start = int(torch.randint(self.num_frames[subject] - self.frames + 1, ()))
        else:
            subject, start = self.windows[index]
        geometry = self.geometry(subject)
        if self.vertices is None:
            vertex_ids = torch.arange(geometry.num_vertices)
        else:
            vertex_ids = self._pick_edges(subject, g)
        window = slice(start, start + self.frames)
        with safe_open(str(self.folders[subject] / "head.safetensors"), "pt") as f:
            target = f.get_slice("delta_f_face")[window][:, vertex_ids]
            expression = f.get_slice("params.expression")[window]
            jaw_pose = f.get_slice("params.jaw_pose")[window]
        return {**geometry.select(vertex_ids).to_dict(), "expression": expression.float(),
                "jaw_pose": jaw_pose.float(), "target": target.float(), "vertex_index": vertex_ids,
                "edge_pairs": self.vertices is not None, "subject": subject, "start": start}


class TransferDataModule(L.LightningDataModule):
    """Batches of :class:`HeadWindowDataset` items (``B x`` each field) with identity-held-out validation.

    Args:
        root: folder of fitted heads; ``None`` with ``synthetic_subjects > 0`` uses the cache (see module doc).
        synthetic_subjects: if > 0 and ``root`` holds no heads, write this many synthetic heads first.
        synthetic_frames: frames per synthetic subject.
        synthetic_resting_creases: ρ of the synthetic subjects (see :mod:`exptransfer.synthetic`).
        val_fraction: share of subjects held out for validation (at least one).
        frames_per_sample: F, consecutive frames per sample.
        vertices_per_sample: S, face vertices per sample (even).
        active_fraction: share of training vertices drawn on the wrinkles (see :class:`HeadWindowDataset`);
            validation always samples uniformly.
        samples_per_epoch: training samples per epoch; ``None``: one per (subject, window).
        batch_size: samples per batch.
        num_workers: DataLoader workers.
        seed: seed of the synthetic subjects and of the validation vertex subsets.

    The head model is rebuilt from the first head's ``head.json``; assign ``head_model`` before ``setup``
    to share an existing :class:`~exphead.head_model.HeadModel`.
    """

    def __init__(self, root: str | None = None, synthetic_subjects: int = 0, synthetic_frames: int = 16,
                 synthetic_resting_creases: float = 0.15, val_fraction: float = 0.2, frames_per_sample: int = 8,
                 vertices_per_sample: int | None = 2048, active_fraction: float = 0.5,
                 samples_per_epoch: int | None = None, batch_size: int = 4, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        if root is None and synthetic_subjects <= 0:
            raise ValueError("TransferDataModule needs data.init_args.root (a folder of fitted heads) or "
                             "data.init_args.synthetic_subjects > 0")
        self.root = Path(root) if root is not None else default_synthetic_root(
            synthetic_subjects, synthetic_frames, seed, synthetic_resting_creases)
        self.head_model: HeadModel | None = None
        self.train_set: HeadWindowDataset | None = None
        self.val_set: HeadWindowDataset | None = None

    @override
    def prepare_data(self) -> None:
        hp = self.hparams
        if hp.synthetic_subjects > 0 and not head_folders(self.root):
            if self.head_model is None:
                self.head_model = HeadModel()
            write_synthetic_heads(self.root, hp.synthetic_subjects, hp.synthetic_frames, hp.seed, self.head_model,
                                  hp.synthetic_resting_creases)

    def split_folders(self) -> dict[str, list[Path]]:
        """Subject folders of the ``train`` and ``val`` splits (disjoint identities)."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.init_args.root={str(self.root)!r} does not exist: point it at a folder of "
                                    "fitted heads (one sub-folder per subject, written by exp-fit), or set "
                                    "data.init_args.synthetic_subjects > 0 to write synthetic ones")
        folders = head_folders(self.root)
        if len(folders) < 2:
            raise FileNotFoundError(f"data.init_args.root={str(self.root)!r} holds {len(folders)} fitted heads "
                                    "(sub-folders with head.json + head.safetensors); need at least 2")
        held_out = min(len(folders) - 1, max(1, round(self.hparams.val_fraction * len(folders))))
        return {"train": folders[:-held_out], "val": folders[-held_out:]}

    def _model(self, folder: Path) -> HeadModel:
        if self.head_model is None:
            self.head_model = PersonalizedHead.load_model(folder)
        return self.head_model

    @override
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        splits = self.split_folders()
        model = self._model(splits["train"][0])
        self.train_set = HeadWindowDataset(splits["train"], model, hp.frames_per_sample, hp.vertices_per_sample,
                                           hp.samples_per_epoch, random=True, seed=hp.seed,
                                           active_fraction=hp.active_fraction)
        self.val_set = HeadWindowDataset(splits["val"], model, hp.frames_per_sample, hp.vertices_per_sample, None,
                                         random=False, seed=hp.seed)

    def _loader(self, dataset: HeadWindowDataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=False)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
