"""What the main job writes: the video, a side-by-side preview video and a contact sheet.

:func:`animate_to_file` streams an :class:`~expgen.animator.Animator`'s chunks to disk, so memory does not
grow with the video, and resumably: each chunk's segments and the state after it go to a work folder beside
the output (``.OUT.parts/``); a killed job leaves no ``OUT.mp4`` and, run again with the same inputs and
settings, continues after the last finished chunk. The segments are joined (ffmpeg's concat demuxer, no
re-encoding) and renamed onto the outputs at the end; the work folder is then removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from exphead.head_model import HeadModel, HeadParams
from exphead.io_utils import atomic_path
from exphead.media import (
    VideoWriter,
    contact_sheet,
    read_image,
    resize_frames,
    resize_uint8,
    to_uint8,
    write_image,
    write_video,
)
from exphead.personalized import PersonalizedHead
from exphead.tracking import CropBox

from .animator import AnimateResult, Animator, ProgressFn
from .stream import Chunk, Plan, StreamState

logger = logging.getLogger(__name__)
SHEET_ROWS = 4


@dataclass
class OutputConfig:
    """What ``exp-animate`` writes beside ``OUT.mp4``.

    Attributes:
        preview_video: also write OUT_preview.mp4 (reference | driving | condition | result, each panel
            preview_size pixels).
        preview_size: side of each panel of the preview video (default: the output size, at most 256).
        crop_only: write the square crop around the face instead of the whole reference image with the animated
            crop composited into it.
        max_side: the whole-image output is scaled down to at most this many pixels on its longer side.
    """

    preview_video: bool = True
    preview_size: int | None = None
    crop_only: bool = False
    max_side: int = 1920

    def full_frame(self, frames: Tensor, image: np.ndarray, box: CropBox) -> np.ndarray:
        """``F x H' x W' x 3`` uint8: ``frames`` (crops of ``box``) composited into ``image`` (scaled down to
        ``max_side``), or the crops themselves with ``crop_only``."""
        if self.crop_only:
            return to_uint8(frames)
        factor = min(1.0, self.max_side / max(image.shape[:2]))
        if factor < 1:
            image = resize_uint8(image[None], (round(image.shape[0] * factor), round(image.shape[1] * factor)))[0]
            box = box.scaled(factor)
        return np.concatenate([box.paste(frames[s:s + 8], image) for s in range(0, frames.shape[0], 8)])

    def panel_size(self, size: int) -> int:
        """The preview panels' side for output frames of ``size`` pixels."""
        return self.preview_size or min(size, 256)


def preview_panels(reference: Tensor, driving: Tensor, normals: Tensor, frames: Tensor, size: int | None = None
                   ) -> Tensor:
    """``F x 3 x s x 4s`` frames: reference | driving | condition normal map | result (``s = size`` or theirs)."""
    n = frames.shape[0]
    size = size or frames.shape[-1]
    panels = [reference[None].expand(n, -1, -1, -1), driving, normals, frames]
    return torch.cat([resize_frames(p.float(), size).clamp(0, 1) for p in panels], dim=-1)


def sheet_rows(num_frames: int, rows: int = SHEET_ROWS) -> list[int]:
    """The frames shown in the contact sheet: ``rows`` evenly spaced ones."""
    return np.unique(np.linspace(0, num_frames - 1, min(rows, num_frames)).round().astype(int)).tolist()


def describe(components: dict) -> list[str]:
    """One line per component that ran, for the contact sheet's caption."""
    model, generator = components["head_model"], components["generator"]
    transfer = components["transfer"]
    transfer = transfer if isinstance(transfer, str) else f"{transfer['weights']} ({transfer['fingerprint']})"
    weights = f", weights {generator['weights_fingerprint']}" if "weights_fingerprint" in generator else ""
    return [f"head model: {model['model_path']} (subdivision level {model['level']})",
            f"reference fit: {components.get('reference_maps', 'landmarks only')}, {components['fit_steps']} steps",
            f"transfer: {transfer}",
            f"generator: {generator['generator']}{weights} ({components['generator_reason']})",
            "columns: reference | driving | driving normal map N^D | result"]


def _caption(sheet: np.ndarray, lines: list[str]) -> np.ndarray:
    """``sheet`` with ``lines`` of text above it (Pillow's built-in font: nothing to install)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line_height = 14
    top = np.full((line_height * len(lines) + 8, sheet.shape[1], 3), 255, np.uint8)
    canvas = Image.fromarray(top)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, 4 + i * line_height), line, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(canvas), sheet])


def _sheet(panels: list[np.ndarray], components: dict | None = None) -> np.ndarray:
    s = panels[0].shape[0]
    sheet = contact_sheet([[p[:, k * s:(k + 1) * s] for k in range(4)] for p in panels])
    return _caption(sheet, describe(components)) if components else sheet


def preview_sheet(result: AnimateResult, rows: int = SHEET_ROWS) -> np.ndarray:
    """A PNG-ready contact sheet: ``rows`` evenly spaced frames, each reference | driving | condition | result,
    captioned with what ran."""
    idx = sheet_rows(result.frames.shape[0], rows)
    panels = to_uint8(preview_panels(result.reference, result.driving[idx], result.driving_normals[idx],
                                     result.frames[idx]))
    return _sheet(list(panels), result.components)


def write_outputs(result: AnimateResult, out_path: str | Path, config: OutputConfig | None = None
                  ) -> dict[str, Path]:
    """Write OUT.mp4, OUT_preview.mp4 and OUT_preview.png of an in-memory result (each atomically)."""
    cfg = config or OutputConfig()
    out_path = Path(out_path)
    stem = out_path.with_suffix("")
    frames = cfg.full_frame(result.frames, result.reference_image, result.reference_box)
    paths = {"video": write_video(out_path, frames, result.fps)}
    if cfg.preview_video:
        panels = preview_panels(result.reference, result.driving, result.driving_normals, result.frames,
                                cfg.panel_size(result.frames.shape[-1]))
        paths["preview_video"] = write_video(f"{stem}_preview.mp4", panels, result.fps)
    paths["preview_sheet"] = write_image(f"{stem}_preview.png", preview_sheet(result))
    return paths


def _digest(value: object) -> str:
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:16]
    path = Path(str(value))
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def job_key(animator: Animator, reference: object, driving: object, mode: str | None) -> dict:
    """What a job's outputs depend on: the inputs (path, size, modification time; or a hash of arrays), the
    configuration (not its progress display) and what runs (weights fingerprints)."""
    config = {k: v for k, v in asdict(animator.config).items() if k != "show_progress"}
    config["tracker"].pop("show_progress", None)
    mode = mode or animator.config.mode
    return {"reference": None if mode == "self" or reference is None else _digest(reference),
            "driving": _digest(driving), "mode": mode, "config": config, "components": animator.components()}


class _WorkFolder:
    """The resumable state of one job: ``job.json``, the reference head, and per chunk its video segments, sheet
    panels and the stream state after it (``state_<start>.safetensors``, written last)."""

    def __init__(self, out: Path, key: dict) -> None:
        self.root = out.parent / f".{out.stem}.parts"
        self.key = json.loads(json.dumps(key, default=str))
        held = self.root / "job.json"
        if held.is_file() and json.loads(held.read_text()).get("key") != self.key:
            logger.info("%s belongs to another job (other inputs or settings): starting afresh", self.root)
            shutil.rmtree(self.root)

    def create(self) -> None:
        """Make the folder (once the job's inputs have proved usable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / "job.json").is_file():
            with atomic_path(self.root / "job.json") as tmp:
                tmp.write_text(json.dumps({"key": self.key}, indent=1))

    def head(self, model: HeadModel) -> tuple[PersonalizedHead, dict] | None:
        """The reference head (on ``model``) and crop boxes of an earlier run, or None."""
        if not (self.root / "head" / "head.json").is_file() or not (self.root / "plan.json").is_file():
            return None
        return PersonalizedHead.load(self.root / "head", model), json.loads((self.root / "plan.json").read_text())

    def save_head(self, plan: Plan) -> None:
        plan.head.save(self.root / "head")
        with atomic_path(self.root / "plan.json") as tmp:
            tmp.write_text(json.dumps({"reference_box": plan.reference_box.to_list(),
                                       "driving_box": plan.driving_box.to_list()}))

    def finished(self) -> tuple[list[int], StreamState | None]:
        """Starts of the chunks done (in order) and the state after the last of them."""
        if not self.root.is_dir():
            return [], None
        starts = sorted(int(p.stem.split("_")[1]) for p in self.root.glob("state_*.safetensors"))
        if not starts:
            return [], None
        t = load_file(str(self.root / f"state_{starts[-1]:06d}.safetensors"))
        state = StreamState.resume(int(t["next_frame"]), HeadParams.from_tensors(t, "origin."),
                                   HeadParams.from_tensors(t, "tail."))
        return starts, state

    def save_state(self, start: int, state: StreamState, emitted: int) -> None:
        tensors = {**state.origin.to_tensors("origin."), **state.written_tail().to_tensors("tail."),
                   "next_frame": torch.tensor(emitted)}
        with atomic_path(self.root / f"state_{start:06d}.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))

    def join(self, kind: str, starts: list[int], out: Path) -> Path:
        """Join the ``kind`` segments of ``starts`` into ``out`` (no re-encoding), atomically."""
        import imageio_ffmpeg

        listing = self.root / f"{kind}.txt"
        listing.write_text("".join(f"file '{self.root / f'{kind}_{s:06d}.mp4'}'\n" for s in starts))
        with atomic_path(out) as tmp:
            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
                   "-i", str(listing), "-c", "copy", "-f", "mp4", str(tmp)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"ffmpeg could not join the segments of {out}: {done.stderr.strip()}")
        return out


def animate_to_file(animator: Animator, reference: str | np.ndarray | None, driving: str | np.ndarray,
                    out_path: str | os.PathLike, config: OutputConfig | None = None, driving_fps: float = 25.0,
                    mode: str | None = None, fitted: tuple[PersonalizedHead, dict] | None = None,
                    progress: ProgressFn | None = None) -> dict:
    """Run one job chunk by chunk into OUT.mp4 (+ previews), resumably (see the module docstring).

    ``fitted``: a reference fit to reuse (:meth:`Animator.prepare`; the work folder's own fit wins);
    ``progress(stage, frame, total)`` hears each stage start (:data:`~expgen.animator.ProgressFn`).

    Returns:
        ``{"paths": {...}, "frames": F, "timings": {...}, "resumed_at": frame, "components": {...}, "fps": fps,
        "fitted": (head, boxes)}`` (``fitted`` as :meth:`Animator.prepare` takes it).
    """
    cfg = config or OutputConfig()
    report = progress or (lambda stage, frame, total: None)
    out = Path(out_path)
    stem = out.with_suffix("")
    work = _WorkFolder(out, {**job_key(animator, reference, driving, mode), "output": asdict(cfg)})
    starts, state = work.finished()
    saved = work.head(animator.model)
    report("fit", 0, 0)
    plan = animator.prepare(reference, driving, driving_fps, mode, fitted=saved or fitted)
    work.create()
    if saved is None:
        work.save_head(plan)
    resumed_at = state.next_frame if state is not None else 0
    if resumed_at:
        logger.info("resuming after frame %d of %d (%s)", resumed_at, plan.num_frames, work.root)
    rows = sheet_rows(plan.num_frames)
    timings = plan.timings
    state = state or StreamState()
    for chunk in animator.chunks(plan, state, timings, progress):
        report("write", chunk.start, plan.num_frames)
        _write_chunk(work, plan, chunk, rows, cfg)
        work.save_state(chunk.start, state, chunk.start + chunk.frames.shape[0])
        starts.append(chunk.start)
        logger.info("frames %d-%d of %d done", chunk.start, chunk.start + chunk.frames.shape[0] - 1, plan.num_frames)
    report("write", plan.num_frames, plan.num_frames)
    clock = time.perf_counter()
    paths = {"video": work.join("video", starts, out)}
    if cfg.preview_video:
        paths["preview_video"] = work.join("preview", starts, Path(f"{stem}_preview.mp4"))
    panels = [read_image(work.root / f"sheet_{i:06d}.png") for i in rows]
    paths["preview_sheet"] = write_image(f"{stem}_preview.png", _sheet(panels, animator.components(plan.head)))
    timings["write"] = timings.get("write", 0.0) + time.perf_counter() - clock
    shutil.rmtree(work.root, ignore_errors=True)
    return {"paths": paths, "frames": plan.num_frames, "timings": timings, "resumed_at": resumed_at,
            "components": animator.components(plan.head), "fps": plan.fps,
            "fitted": (plan.head, {"reference_box": plan.reference_box.to_list(),
                                   "driving_box": plan.driving_box.to_list()})}


def _write_chunk(work: _WorkFolder, plan: Plan, chunk: Chunk, rows: list[int], cfg: OutputConfig) -> None:
    clock = time.perf_counter()
    with VideoWriter(work.root / f"video_{chunk.start:06d}.mp4", plan.fps) as writer:
        writer.write(cfg.full_frame(chunk.frames, plan.reference_image, plan.reference_box))
    if cfg.preview_video:
        panels = preview_panels(plan.reference, chunk.driving, chunk.driving_normals, chunk.frames,
                                cfg.panel_size(chunk.frames.shape[-1]))
        with VideoWriter(work.root / f"preview_{chunk.start:06d}.mp4", plan.fps) as writer:
            writer.write(panels)
    for i in rows:  # the contact sheet at the output size
        if chunk.start <= i < chunk.start + chunk.frames.shape[0]:
            k = slice(i - chunk.start, i - chunk.start + 1)
            panel = preview_panels(plan.reference, chunk.driving[k], chunk.driving_normals[k], chunk.frames[k])
            write_image(work.root / f"sheet_{i:06d}.png", to_uint8(panel)[0])
    plan.timings["write"] = plan.timings.get("write", 0.0) + time.perf_counter() - clock


__all__ = ["OutputConfig", "animate_to_file", "job_key", "preview_panels", "preview_sheet", "sheet_rows",
           "write_outputs"]
