"""Training clips of the video generator from fitted personalized heads (paper Sec. 3.3, 4.1).

For each source video (a video file, a folder of frames, or an ``exp-synth`` subject folder: exactly what
:func:`exphead.fitting.load_targets` reads) :func:`build_clips`

1. fits the subject's :class:`~exphead.personalized.PersonalizedHead` (``fit_subject``), or reuses the head
   saved under ``heads_dir/<name>/`` (by an earlier run or by ``exp-fit``);
2. cuts the cropped frames into clips of ``num_frames = 1 + 4k`` frames, every ``hop`` frames;
3. renders, with the head's camera scaled to ``size x size``, the driving normals N^D of every frame and the
   reference normal N^R of V_neutral; picks the reference image I_R among the video's frames;
4. writes each clip (format of :mod:`expgen.data.clips`) atomically to ``out_dir/<name>_<start>.safetensors``.

Driving meshes (``ClipBuildConfig.driving``):

* ``"transfer"`` (the paper): Δf(i) predicted by the frozen expression transfer module from the subject's own
  V_neutral and its per-frame ψ_i, ω_i, posed by LBS with the frame's pose (:func:`exptransfer.transfer`);
* ``"fitted"``: the subject's own fitted Δf(i) (:meth:`PersonalizedHead.frame`).

N^R is V_neutral (ψ = 0, ω = 0, Δg, no Δf) posed by LBS with the pose of the reference frame, as
``exp-animate`` renders it at inference, so N^R lines up with I_R. I_R is by default a random frame *outside*
the clip (seeded by subject and clip start): a frame inside the clip would let the generator copy that frame
instead of following N^D, and at inference the reference is not one of the driven frames either.

Resumable: finished sources are recorded in ``out_dir/manifests/<name>.json`` and skipped; existing clips and
heads are never rebuilt. Clips are keyed by the build settings (including a fingerprint of the transfer weights):
a clip on disk built with other settings raises ``ValueError`` instead of being mixed in.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from exphead.fitting import FitConfig, FitTargets, fit_subject, load_targets
from exphead.head_model import HeadModel
from exphead.io_utils import atomic_path
from exphead.media import FrameSource, resize_frames, to_tensor
from exphead.personalized import PersonalizedHead
from exphead.render import render_normal_images
from exphead.tracking import LandmarkDetector
from exptransfer import (
    ExpressionTransfer,
    freeze_transfer,
    load_transfer,
    temporal_context,
    transfer,
    transfer_fingerprint,
)

from .clips import Clip, read_metadata, write_clip
from .synthetic import clip_bytes

logger = logging.getLogger(__name__)

Driving = Literal["transfer", "fitted"]


@dataclass
class ClipBuildConfig:
    """Settings of the training clips (:func:`build_clips`, ``exp-clips``).

    Attributes:
        num_frames: frames per clip, 1 + 4k (Wan's causal VAE).
        size: clip side in pixels.
        stride: use every stride-th source frame.
        hop: frames between clip starts (after striding); none: num_frames (no overlap).
        max_frames: read at most this many frames per source (after striding).
        driving: N^D from the frozen transfer module (the paper) or from the fitted expression details.
        reference: I_R is a random frame outside the clip (outside) or the first frame of the video (first).
        fps: clip frame rate; none: the video's (25 for folders), divided by stride.
        on_error: a bad source (unreadable, no face, too short) fails the build or is skipped.
        seed: seed of the reference-frame choice.
        fit: the head fits (fit.image_size is the fit resolution; fit.stride and fit.max_frames are not used).
    """

    num_frames: int = 81
    size: int = 512
    stride: int = 1
    hop: int | None = None
    max_frames: int | None = None
    driving: Driving = "transfer"
    reference: Literal["outside", "first"] = "outside"
    fps: float | None = None
    on_error: Literal["fail", "skip"] = "fail"
    seed: int = 0
    fit: FitConfig = field(default_factory=lambda: FitConfig(show_progress=False))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` on impossible settings."""
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 1 + 4k for the causal VAE, got {self.num_frames}")
        if self.size < 8 or self.stride < 1 or (self.hop is not None and self.hop < 1):
            raise ValueError(f"need size >= 8, stride >= 1, hop >= 1; got {self.size}, {self.stride}, {self.hop}")
        if self.driving not in ("transfer", "fitted"):
            raise ValueError(f"driving must be 'transfer' or 'fitted', got {self.driving!r}")


@dataclass
class ClipBuildReport:
    """What :func:`build_clips` did: clip files written now / found on disk, heads used, sources skipped."""

    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    heads: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def clips(self) -> list[Path]:
        return sorted(self.written + self.existing)


@torch.no_grad()
def driving_vertices(head: PersonalizedHead, start: int, stop: int, module: ExpressionTransfer | None) -> Tensor:
    """``(stop - start) x N_s x 3`` posed driving meshes of frames ``start:stop`` of ``head``.

    With ``module`` the transfer module predicts Δf(i) from V_neutral and the frames' ψ, ω (the encoder sees
    :func:`temporal_context` extra frames each side, so a clip equals a cut of the whole-video result);
    without it the fitted Δf(i) are used.
    """
    if module is None:
        return head.frame(slice(start, stop)).vertices
    c = temporal_context(module)
    lo, hi = max(0, start - c), min(head.num_frames, stop + c)
    result = transfer(head, head.params.map(lambda v: v[lo:hi]), module)
    return result.vertices[start - lo:stop - lo]


def subject_name(source: str | os.PathLike) -> str:
    """Subject id of a source: the file stem of a video, the folder name of a frame or ``exp-synth`` folder."""
    path = Path(source).resolve()
    if path.name == "frames" and path.is_dir():
        path = path.parent
    return path.stem if path.is_file() else path.name


def _targets(source: str | os.PathLike, size: int, cfg: ClipBuildConfig,
             detector: LandmarkDetector | None) -> FitTargets:
    fit = replace(cfg.fit, image_size=size, max_frames=cfg.max_frames, stride=cfg.stride)
    return load_targets(source, fit, detector=detector)


def _clip_frames(source: str | os.PathLike, targets: FitTargets | None, cfg: ClipBuildConfig,
                 detector: LandmarkDetector | None) -> tuple[Tensor, Tensor]:
    """``F x 3 x size x size`` frames in [0, 1] and the ``F`` face-found flags, cropped like the fit's frames."""
    if targets is not None and targets.crop_box is not None and (targets.height, targets.width) != (cfg.size,) * 2:
        # the fit's crop box at the clip size: no second face detection
        frames = FrameSource(source, cfg.stride, cfg.max_frames).read()
        return to_tensor(targets.crop_box.apply(frames, cfg.size)), targets.valid
    if targets is None or (targets.height, targets.width) != (cfg.size, cfg.size):
        targets = _targets(source, cfg.size, cfg, detector)  # same crop box (found on the full frames), new size
    frames = targets.frames
    if (targets.height, targets.width) != (cfg.size, cfg.size):  # an uncropped folder (e.g. exp-synth)
        if targets.height != targets.width:
            raise ValueError(f"{source}: uncropped frames are {targets.height}x{targets.width}; clips are square "
                             "(crop the frames to a square first)")
        frames = resize_frames(frames, cfg.size).clamp(0, 1)
    return frames, targets.valid


def _check_length(source: str | os.PathLike, frames: int, cfg: ClipBuildConfig) -> None:
    if frames < cfg.num_frames:
        raise ValueError(f"{source}: {frames} frame(s) (stride {cfg.stride}), fewer than one clip of {cfg.num_frames}")


def _head(source: str | os.PathLike, head_dir: Path, model: HeadModel, cfg: ClipBuildConfig,
          detector: LandmarkDetector | None) -> tuple[PersonalizedHead, FitTargets]:
    targets = _targets(source, cfg.fit.image_size, cfg, detector)
    _check_length(source, targets.num_frames, cfg)
    logger.info("fitting %s (%d frames at %dx%d) into %s", source, targets.num_frames, targets.height,
                targets.width, head_dir)
    head = fit_subject(targets, head_dir, cfg.fit, model=model)
    head.meta["source"] = str(source)
    head.save(head_dir)
    return head, targets


def reference_frame(valid: Tensor, start: int, cfg: ClipBuildConfig, name: str) -> tuple[int, bool]:
    """Index of I_R and whether it lies outside the clip ``start : start + num_frames``."""
    frames = torch.nonzero(valid).squeeze(1)
    if cfg.reference == "first":
        return int(frames[0]), not start <= int(frames[0]) < start + cfg.num_frames
    outside = frames[(frames < start) | (frames >= start + cfg.num_frames)]
    pool = outside if outside.numel() else frames
    g = torch.Generator().manual_seed(cfg.seed + zlib.crc32(f"{name}:{start}".encode()))
    return int(pool[torch.randint(len(pool), (1,), generator=g)]), bool(outside.numel())


def _check_existing(path: Path, settings: dict[str, Any]) -> None:
    built = read_metadata(path).get("build")
    if built != settings:
        raise ValueError(f"{path} exists but was built with {built}, not {settings}: write to another out_dir "
                         "or delete the old clips")


class _Builder:
    """Per-source work of :func:`build_clips` (shared state: model, transfer module, settings)."""

    def __init__(self, out: Path, heads: Path, cfg: ClipBuildConfig, model: HeadModel | None,
                 module: ExpressionTransfer | None, detector: LandmarkDetector | None) -> None:
        self.out, self.heads, self.cfg, self.model = out, heads, cfg, model
        self.module, self.detector, self.rank = module, detector, 0
        self._models: dict[str, HeadModel] = {}
        build = {k: v for k, v in asdict(cfg).items() if k in ("num_frames", "size", "stride", "hop", "max_frames",
                                                                "driving", "reference", "seed")}
        build["transfer"] = transfer_fingerprint(module) if module is not None else None
        self.settings = build

    def head_model(self, head_dir: Path | None) -> HeadModel:
        """The given model; else the one the saved head in ``head_dir`` was fitted on; else ``HeadModel()``.
        Built once per kind and shared between heads."""
        if self.model is not None:
            return self.model
        config = {}  # HeadModel()'s defaults
        if head_dir is not None:
            config = {k: v for k, v in PersonalizedHead.read_config(head_dir).items()
                      if k in ("model_path", "level", "num_betas", "num_expression")}
        key = json.dumps(config, sort_keys=True)
        if key not in self._models:
            self._models[key] = HeadModel.from_config(config)
        return self._models[key]

    def manifest(self, name: str) -> Path:
        return self.out / "manifests" / f"{name}.json"

    def done(self, name: str) -> list[Path] | None:
        """Clip files of a source already finished with these settings (None: not finished).

        Raises ``ValueError`` first if a clip of ``name`` on disk was built with other settings.
        """
        for clip in self.out.glob(f"{name}_{'[0-9]' * 6}.safetensors"):
            _check_existing(clip, self.settings)
        path = self.manifest(name)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        clips = [self.out / c for c in record["clips"]]
        return clips if record["settings"] == self.settings and all(c.is_file() for c in clips) else None

    def load(self, source: str | os.PathLike, name: str) -> tuple[PersonalizedHead, Tensor, Tensor]:
        """Fit or load the head; the frames and face flags at clip size. Errors here mean a bad source."""
        cfg = self.cfg
        head_dir, fit_targets = self.heads / name, None
        if (head_dir / "head.json").is_file():
            logger.info("reusing the head in %s", head_dir)
            head = PersonalizedHead.load(head_dir, model=self.head_model(head_dir))
        else:
            head, fit_targets = _head(source, head_dir, self.head_model(None), cfg, self.detector)
        frames, valid = _clip_frames(source, fit_targets, cfg, self.detector)
        if frames.shape[0] != head.num_frames:
            raise ValueError(f"{source}: {frames.shape[0]} frames but the head in {self.heads / name} has "
                             f"{head.num_frames}; refit it (delete that folder) or use the stride/max_frames it "
                             "was fitted with")
        _check_length(source, frames.shape[0], cfg)
        return head, frames, valid

    def write(self, source: str | os.PathLike, name: str, head: PersonalizedHead, frames: Tensor,
              valid: Tensor, report: ClipBuildReport) -> list[Path]:
        cfg, n = self.cfg, self.cfg.num_frames
        camera = head.camera.scaled(cfg.size, cfg.size)
        fps = cfg.fps or FrameSource(source, cfg.stride).fps
        hop, total = cfg.hop or n, frames.shape[0]
        starts = list(range(0, total - n + 1, hop))
        if starts[-1] + n < total:
            logger.info("%s: the last %d frame(s) do not fill a clip and are left out", name, total - starts[-1] - n)
        paths = []
        for start in starts:
            path = self.out / f"{name}_{start:06d}.safetensors"
            if not valid[start:start + n].all():
                logger.warning("%s: no face in %d frame(s) of the clip at frame %d: clip left out", name,
                               int((~valid[start:start + n]).sum()), start)
                continue
            paths.append(path)
            if path.is_file():  # settings checked by done()
                report.existing.append(path)
                continue
            ref, outside = reference_frame(valid, start, cfg, name)
            drv = driving_vertices(head, start, start + n, self.module)
            clip = Clip(clip_bytes(frames[start:start + n]),
                        clip_bytes(render_normal_images(drv, head.model.faces, camera)),
                        clip_bytes(frames[ref:ref + 1])[0],
                        clip_bytes(render_normal_images(head.posed_neutral(ref), head.model.faces, camera))[0],
                        name, fps, extra={"source": str(source), "head": str(self.heads / name), "start": start,
                                          "reference_frame": ref, "reference_outside_clip": outside,
                                          "build": self.settings})
            report.written.append(write_clip(path, clip))
            logger.info("%s: wrote %s (frames %d-%d, I_R = frame %d)", name, path.name, start, start + n - 1, ref)
        with atomic_path(self.manifest(name)) as tmp:
            tmp.write_text(json.dumps({"source": str(source), "settings": self.settings, "rank": self.rank,
                                       "clips": [p.name for p in paths]}, indent=2))
        return paths


def build_clips(sources: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                transfer_module: str | os.PathLike | ExpressionTransfer | None = None,
                config: ClipBuildConfig | None = None, heads_dir: str | os.PathLike | None = None,
                model: HeadModel | None = None, detector: LandmarkDetector | None = None, rank: int = 0,
                world_size: int = 1) -> ClipBuildReport:
    """Fit (or reuse) a head per source and write its clips to ``out_dir`` (see the module docstring).

    Args:
        sources: video files, frame folders or ``exp-synth`` subject folders; one subject each.
        out_dir: the clip folder (flat; ``VideoDataModule`` splits it by subject).
        transfer_module: the trained transfer module (a ``TransferModule`` ``.ckpt``, an
            ``ExpressionTransfer.save_pretrained`` folder, or a module); needed for ``driving="transfer"``. It is
            frozen (eval mode, ``requires_grad = False``) in place.
        config: clip and fitting settings.
        heads_dir: where heads are saved / reused, ``heads_dir/<name>/head.json``; default ``out_dir/heads``.
        model: the dense head model of new fits and of every head. Default: saved heads are loaded with the
            model their ``head.json`` names (built once, shared), new fits use ``HeadModel()``.
        detector: landmark detector for sources without landmarks (default dlib's).
        rank, world_size: this process's share of the sources (source ``k`` goes to rank ``k % world_size``), for a
            build run by ``world_size`` processes (``torchrun``; see ``exp-clips``). Each source's files are its own,
            so the processes never write the same file, and a source a killed process left unfinished is built
            by the next launch.

    Raises:
        ValueError: bad settings, duplicate subject names, clips on disk built with other settings, or (with
            ``on_error="fail"``) a bad source.
        FileNotFoundError: ``transfer_module`` path missing.
    """
    cfg = config or ClipBuildConfig()
    cfg.validate()
    names = [subject_name(s) for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"sources share the subject names {duplicates} (file stem / folder name): rename them")
    module = None
    if cfg.driving == "transfer":
        if transfer_module is None:
            raise ValueError("driving='transfer' needs the trained transfer module (transfer_module= / --transfer "
                             "CKPT); use driving='fitted' to drive with the fitted Δf(i)")
        module = freeze_transfer(transfer_module if isinstance(transfer_module, ExpressionTransfer)
                                 else load_transfer(transfer_module))
    out = Path(out_dir)
    heads = Path(heads_dir) if heads_dir is not None else out / "heads"
    builder = _Builder(out, heads, cfg, model, module, detector)
    builder.rank = rank
    report = ClipBuildReport()
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not one of the {world_size} processes")
    for k, (source, name) in enumerate(zip(sources, names), 1):
        if (k - 1) % world_size != rank:
            continue
        finished = builder.done(name)
        if finished is not None:
            logger.info("[%d/%d] %s: %d clip(s) already built", k, len(names), name, len(finished))
            report.existing.extend(finished)
            report.heads[name] = heads / name
            continue
        try:
            head, frames, valid = builder.load(source, name)
        except ValueError as err:  # MediaError, NoFaceError and short sources are ValueErrors
            if cfg.on_error == "fail":
                raise ValueError(f"cannot build clips from {source}: {err} (on_error='skip' / --on_error skip skips "
                                 "bad sources)") from err
            logger.warning("[%d/%d] %s skipped: %s", k, len(names), source, err)
            report.failed[str(source)] = str(err)
            continue
        report.heads[name] = heads / name
        paths = builder.write(source, name, head, frames, valid, report)
        logger.info("[%d/%d] %s: %d clip(s) of %d frames", k, len(names), name, len(paths), cfg.num_frames)
    return report
