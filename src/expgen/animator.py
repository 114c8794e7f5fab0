"""The main job as an object: reference image + driving video -> animated portrait (paper Fig. 2).

:class:`Animator` loads the detector, the head model, the transfer network and the generator once, then
animates any number of (reference, driving) pairs; ``exp-animate``, ``exp-bench``'s "ours" and the app are
thin shells around it with one :class:`AnimateConfig`. One job:

1. :meth:`Animator.prepare` — the driving video's crop box (the subject followed across sampled frames) and
   the reference identity's personalized head fitted from the single reference image (exphead), N^R;
2. :meth:`Animator.chunks` — the driving video in chunks of ``config.chunk`` frames, from decoding to generated
   frames: track (the tracker's smoothness carried across chunk borders), transfer the expression onto the
   reference identity (exptransfer) and pose it, generate (``geometric`` re-rendering or the ``diffusion`` DiT),
   so memory does not grow with the number of frames;
3. :meth:`Animator.animate` collects the chunks (short videos, tests, the benchmark);
   :func:`expgen.outputs.animate_to_file` streams them to disk, resumably.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from exphead.camera import Camera
from exphead.fitting import FitConfig, FitTargets, fit_subject
from exphead.head_model import HeadModel, HeadParams
from exphead.media import FrameSource, MediaError, read_image, to_tensor
from exphead.personalized import PersonalizedHead
from exphead.render import render_normal_images
from exphead.tracking import CropBox, LandmarkDetector, VideoTracker, smooth_tracking
from exptransfer import (
    driving_params,
    freeze_transfer,
    load_transfer,
    still_params,
    temporal_context,
    transfer,
    transfer_fingerprint,
)
from exptransfer.retarget import BLENDED_REGIONS

from .animate_config import AnimateConfig, Mode
from .generators import GeneratorInputs, make_generator
from .generators.base import keep_padding
from .stream import Chunk, HeldFrames, Plan, StreamState, cat_params, slice_params

logger = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, frame, total)``: stage fit, track, generate or write starts at driving frame ``frame`` of
``total`` (0 while unknown; ``frame == total``: the last step, joining the written segments)."""


@dataclass
class AnimateResult:
    """Everything one call of :meth:`Animator.animate` produced (frames ``F x 3 x S x S`` in [0, 1], CPU).

    Attributes:
        frames: the generated frames; driving: the driving frames cropped like the output (``driving_box``).
        reference: ``3 x S x S`` the reference crop (``reference_box``).
        driving_normals: ``F x 3 x S x S`` the N^D images the frames follow; reference_normal: ``3 x S x S`` N^R.
        reference_box, driving_box: the square crops in the reference image and in the driving frames.
        reference_image: the whole reference image (``H x W x 3`` uint8), that full-frame outputs are composited into.
        components: what ran (head model, reference map source, transfer module, generator), JSON-ready.
        driven_landmarks: ``F x 68 x 3`` iBUG landmarks of the driven reference mesh the frames follow (what the
            generator was asked to show), in the world frame of ``camera``, the reference's camera at the output
            size (``camera.project(driven_landmarks)``: the output's pixels).
    """

    frames: Tensor
    driving: Tensor
    reference: Tensor
    driving_normals: Tensor
    reference_normal: Tensor
    generator: str
    generator_reason: str
    timings: dict[str, float]
    fps: float
    reference_head: PersonalizedHead
    driving_params: HeadParams
    reference_box: CropBox
    driving_box: CropBox
    reference_image: np.ndarray
    components: dict = field(default_factory=dict)
    driven_landmarks: Tensor | None = None
    camera: Camera | None = None


class Animator:
    """Animate portraits with one configuration; models and weights load once, in the constructor.

    Args:
        config: the job's settings.
        model: the dense head model (default: built from ``config.smplx``); moved to ``config.device``.
        detector: the 68-point landmark detector (default: dlib's).

    Raises:
        FileNotFoundError: missing transfer or generator weights (before any work).
        ValueError: a CUDA device on a machine without one.
    """

    def __init__(self, config: AnimateConfig | None = None, model: HeadModel | None = None,
                 detector: LandmarkDetector | None = None) -> None:
        self.config = cfg = config or AnimateConfig()
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r} asked, but torch sees no CUDA device (use --device cpu)")
        self.model = (model or HeadModel(cfg.smplx)).to(cfg.device)
        if detector is None:
            from exphead.tracking import DlibFaceDetector

            detector = DlibFaceDetector()
        tracker = replace(cfg.tracker, show_progress=cfg.show_progress)
        self.tracker = VideoTracker(tracker, cfg.fit_size, detector, self.model, face_index=cfg.face_index)
        self.transfer = None
        if cfg.transfer_weights:
            self.transfer = freeze_transfer(load_transfer(cfg.transfer_weights)).to(cfg.device)
        self.generator, self.generator_reason = make_generator(cfg.generator, cfg.generator_weights, cfg.device,
                                                               cfg.dtype, cfg.diffusion_window, cfg.seed,
                                                               cfg.diffusion_overlap, cfg.diffusion_carry)
        self.region = self.model.region_weight(cfg.animate) if cfg.animate in BLENDED_REGIONS else None

    def components(self, head: PersonalizedHead | None = None) -> dict:
        """What runs, for logs, previews and reports (JSON-ready)."""
        model = {"model_path": self.model.model_path or "embedded procedural head (no SMPL-X file given)",
                 "level": self.model.level}
        transfer_part = ({"weights": self.config.transfer_weights, "fingerprint": transfer_fingerprint(self.transfer)}
                         if self.transfer is not None else "none (SMPL-X expression only, no expression details)")
        out = {"head_model": model, "transfer": transfer_part, "generator": self.generator.describe(),
               "generator_reason": self.generator_reason, "tracker_steps": self.config.tracker.steps,
               "fit_steps": self.config.fit_steps}
        if head is not None:
            out["reference_maps"] = head.meta.get("map_source", "landmarks only")
        return out

    def fit_reference(self, image: np.ndarray, box: CropBox | None = None, source: str = "reference"
                      ) -> tuple[PersonalizedHead, CropBox]:
        """The personalized head of one ``H x W x 3`` uint8 image (crop ``box``, else found), and the box."""
        face = self.tracker.detect(image[None], box=box, on_missing="fail", source=source)
        targets = FitTargets(torch.from_numpy(face.landmarks), torch.from_numpy(face.valid), face.height, face.width,
                             frames=to_tensor(face.frames), crop_box=face.box)
        fit_cfg = FitConfig(steps=self.config.fit_steps, frames_per_step=1, tracker=self.config.tracker,
                            show_progress=False, accelerator="gpu" if self.config.device.startswith("cuda") else "cpu")
        head = fit_subject(targets, None, fit_cfg, model=self.model)
        return head.to(self.config.device), face.box

    def prepare(self, reference: str | np.ndarray | None, driving: str | np.ndarray, driving_fps: float = 25.0,
                mode: Mode | None = None, reference_frame: int | None = None,
                fitted: tuple[PersonalizedHead, dict] | None = None) -> Plan:
        """Open the driving video, find its crop box and fit the reference (see :meth:`animate`).

        ``fitted``: the reference head and ``{"reference_box", "driving_box"}`` (``CropBox.to_list``) of an earlier
        run of the same job, which skip the crop search and the fit (a resumed job); without ``"driving_box"`` (the
        same reference with another driving video: the app's cache) only the fit is skipped.
        """
        cfg, t = self.config, {}
        mode = mode or cfg.mode
        clock = time.perf_counter()
        if isinstance(driving, np.ndarray):
            frames, fps, name = driving[::cfg.stride][: cfg.max_frames], driving_fps / cfg.stride, "driving frames"
            count = len(frames)
        else:
            frames = FrameSource(driving, cfg.stride, cfg.max_frames)
            fps, name, count = frames.fps, f"driving {driving}", len(frames)
        if count < 2:
            raise MediaError(f"{name}: {count} frame(s); at least 2 are needed")
        sample = np.unique(np.linspace(0, count - 1, min(self.tracker.sample, count)).round().astype(int))
        if fitted is None or "driving_box" not in fitted[1]:
            sampled = frames[sample] if isinstance(frames, np.ndarray) else frames.read(sample)
        ref_index = cfg.reference_frame if reference_frame is None else reference_frame
        if mode == "self":
            if not 0 <= ref_index < count:
                raise ValueError(f"reference_frame {ref_index} is not one of the {count} driving frames")
            ref_img = frames[ref_index] if isinstance(frames, np.ndarray) else frames.read([ref_index])[0]
            ref_name = f"{name} (frame {ref_index})"
        elif reference is None:
            raise ValueError("cross-reenactment needs a reference image")
        else:
            ref_img = reference if isinstance(reference, np.ndarray) else read_image(reference)
            ref_name = "reference" if isinstance(reference, np.ndarray) else f"reference {reference}"
        t["read"] = time.perf_counter() - clock

        clock = time.perf_counter()
        if fitted is not None:
            head, boxes = fitted
            head, ref_box = head.to(cfg.device), CropBox.from_list(boxes["reference_box"])
            drv_box = (CropBox.from_list(boxes["driving_box"]) if "driving_box" in boxes
                       else self.tracker.locate(sampled, source=name))
        else:
            drv_box = self.tracker.locate(sampled, source=name)
            head, ref_box = self.fit_reference(ref_img, drv_box if mode == "self" else None, ref_name)
        camera = head.camera.scaled(cfg.size, cfg.size).to(cfg.device)
        crop = ref_box.apply(ref_img[None], cfg.size)
        reference_out = to_tensor(crop)[0]
        found = self.tracker.detect(crop, crop=False, source=ref_name)  # its own landmarks (the irises' eyes)
        marks = torch.from_numpy(found.landmarks[0]).float() if found.valid[0] else None
        with torch.no_grad():
            ref_normal = render_normal_images(head.posed_neutral(0), self.model.faces, camera)[0].cpu()
        t["fit_reference"] = time.perf_counter() - clock
        return Plan(frames, count, fps, name, drv_box, ref_box, head, camera, reference_out, ref_normal, mode,
                    ref_img, ref_index if mode == "self" else 0, t, marks)

    def _context(self) -> int:
        """Frames each side that one output frame depends on (the transfer module's window, the smoothing)."""
        cfg = self.config
        smoothing = int(3 * max(cfg.smooth_pose, cfg.smooth_expression))
        return max(temporal_context(self.transfer) if self.transfer is not None else 0, smoothing)

    def process(self, plan: Plan, start: int, frames: np.ndarray, state: StreamState, last: bool,
                timings: dict[str, float], progress: ProgressFn | None = None) -> Chunk | None:
        """Track one chunk of driving frames (indices ``start ..``) and generate what can be generated: all but
        the last frames the transfer module needs as right context, which wait for the next chunk. The last
        ``generator.carry_frames`` generated frames are held back and given to the next call as ``previous``
        (the diffusion generator's windows then blend across chunks); the last chunk outputs everything."""
        cfg = self.config
        if progress is not None:
            progress("track", start, plan.num_frames)
        clock = time.perf_counter()
        face = self.tracker.detect(frames, box=plan.driving_box, source=plan.name)
        params = self.tracker.fit(face.landmarks, face.valid, face.height, face.width, prefix=state.track_tail,
                                  frames=face.frames).params
        if state.origin is None:
            state.origin = self._origin(plan, start, params)
        timings["track"] = timings.get("track", 0.0) + time.perf_counter() - clock

        if progress is not None:
            progress("generate", start, plan.num_frames)
        clock = time.perf_counter()
        crops = plan.driving_box.apply(frames, cfg.size)
        pending_before = state.pending_params.batch_size if state.pending_params is not None else 0
        pending = cat_params([state.pending_params, params])
        pending_crops = crops if state.pending_crops is None else np.concatenate([state.pending_crops, crops])
        ctx = self._context()
        ready = pending.batch_size if last else max(0, pending.batch_size - ctx)
        left = slice_params(state.emit_tail, slice(-ctx, None)) if ctx else None
        state.next_frame = start + len(frames)
        state.track_tail = slice_params(cat_params([state.track_tail, params]), slice(-max(cfg.overlap, 1), None))
        state.pending_params, state.pending_crops = slice_params(pending, slice(ready, None)), pending_crops[ready:]
        held = state.held
        if ready == 0:  # never on the last chunk: it generates all that is pending
            return None
        emitted = slice_params(pending, slice(0, ready))
        hold = self.generator.carry_frames
        hold = hold if not last and ready + (len(held) if held else 0) >= hold else 0
        state.emit_tail = slice_params(cat_params([state.emit_tail, emitted]),
                                       slice(-(max(cfg.overlap, ctx, 1) + hold), None))
        n_left = left.batch_size if left is not None else 0
        vertices, landmarks, gaze = self._drive(plan, cat_params([left, pending]), state.origin)
        timings["transfer"] = timings.get("transfer", 0.0) + time.perf_counter() - clock

        clock = time.perf_counter()
        with torch.no_grad():  # the reference mesh as the drive makes it with no motion: zero motion is no warp
            ref_vertices = transfer(plan.head, still_params(plan.head, 1), self.transfer).vertices[0]
            ref_landmarks = self.model.landmarks_of(ref_vertices[None])[0]
        keep = slice(n_left, n_left + ready)
        vertices, landmarks, gaze = vertices[keep], landmarks[keep], gaze[keep]
        if held is not None:
            vertices, landmarks = torch.cat([held.vertices, vertices]), torch.cat([held.landmarks, landmarks])
            gaze = torch.cat([held.gaze, gaze])
        bounds = plan.reference_box.inside(cfg.size)
        inputs = GeneratorInputs(plan.reference, plan.reference_normal, ref_vertices, vertices, landmarks,
                                 self.model.faces, plan.camera, self.model.head_weight(), ref_landmarks,
                                 None if held is None else held.frames, bounds, gaze, plan.reference_marks)
        out = self.generator(inputs.to(cfg.device), progress=False)
        timings["generate"] = timings.get("generate", 0.0) + time.perf_counter() - clock
        crops, params = to_tensor(pending_crops[:ready]), emitted.map(lambda v: v.cpu())
        if held is not None:
            crops, params = torch.cat([held.driving, crops]), cat_params([held.params, params])
        n = out.frames.shape[0] - hold
        state.held = HeldFrames(out.frames[n:], crops[n:], out.driving_normals[n:],
                                slice_params(params, slice(n, None)), vertices[n:], landmarks[n:], gaze[n:]
                                ) if hold else None
        if n == 0:  # all held back
            return None
        frames = keep_padding(out.frames[:n], plan.reference, bounds)  # the crop's padding never moves
        return Chunk(start - pending_before - (len(held) if held else 0), frames, crops[:n],
                     out.driving_normals[:n], slice_params(params, slice(0, n)), landmarks[:n].detach().cpu())

    def _origin(self, plan: Plan, start: int, params: HeadParams) -> HeadParams:
        """The tracked parameters of ``plan.origin_frame``, from the first chunk (frames ``start ..``) when it
        holds that frame; otherwise that frame tracked alone with the chunk's shape (no temporal terms)."""
        k = plan.origin_frame - start
        if 0 <= k < params.batch_size:
            return slice_params(params, slice(k, k + 1))
        face = self.tracker.detect(plan.reference_image[None], box=plan.driving_box, source=plan.name)
        alone = replace(self.tracker, config=replace(self.tracker.config, smoothness=0.0, expression_smoothness=0.0))
        return alone.fit(face.landmarks, face.valid, face.height, face.width, slice_params(params, slice(-1, None)),
                         face.frames).params

    def _drive(self, plan: Plan, tracked: HeadParams, origin: HeadParams) -> tuple[Tensor, Tensor, Tensor]:
        """Posed meshes ``F x N_s x 3`` and landmarks ``F x 68 x 3`` of the reference driven by ``tracked``, and the
        ``F x 2`` turn of its eyes from the reference's (pitch, yaw in radians, in the head; see
        :mod:`exphead.tracking.gaze`). The mesh does not turn its eyes (the paper's representation has no eyeball
        motion, and the procedural head's eye joints sit on the eyes' surface): the generator moves the irises."""
        cfg = self.config
        tracked = smooth_tracking(tracked, cfg.smooth_pose, cfg.smooth_expression)
        motion = driving_params(plan.head, tracked, origin, cfg.retargeting())
        still = still_params(plan.head, motion.batch_size)
        eyes = still.leye_pose.to(motion.leye_pose)  # the reference's; both eyes turn alike
        gaze = (motion.leye_pose - eyes)[:, :2]
        motion.leye_pose, motion.reye_pose = eyes, eyes.clone()
        driven = transfer(plan.head, motion, self.transfer)
        if self.region is None:
            return driven.vertices, driven.landmarks, gaze
        still = transfer(plan.head, still, self.transfer)
        vertices = still.vertices + self.region[:, None].to(still.vertices) * (driven.vertices - still.vertices)
        return vertices, self.model.landmarks_of(vertices), gaze

    def chunks(self, plan: Plan, state: StreamState | None = None, timings: dict[str, float] | None = None,
               progress: ProgressFn | None = None) -> Iterator[Chunk]:
        """Generated chunks of the whole driving video, in order (from ``state.next_frame`` when resuming);
        ``progress(stage, frame, total)`` hears each chunk's stages start."""
        state = state or StreamState()
        timings = plan.timings if timings is None else timings
        size = self.config.chunk
        for start, frames in plan.frame_chunks(size, state.next_frame):
            chunk = self.process(plan, start, frames, state, start + len(frames) >= plan.num_frames, timings,
                                 progress)
            if chunk is not None:
                yield chunk

    def animate(self, reference: str | np.ndarray | None, driving: str | np.ndarray, driving_fps: float = 25.0,
                mode: Mode | None = None, reference_frame: int | None = None) -> AnimateResult:
        """Animate ``reference`` (image path or ``H x W x 3`` uint8) with ``driving`` (video/folder path or
        ``F x H x W x 3`` uint8 frames, taken at ``driving_fps``), holding every frame in memory (stream long
        videos with :func:`expgen.outputs.animate_to_file`). ``mode`` and ``reference_frame`` override the
        config's; in ``self`` mode ``reference`` is ignored (driving frame ``reference_frame`` is the reference)."""
        plan = self.prepare(reference, driving, driving_fps, mode, reference_frame)
        chunks = list(self.chunks(plan))
        cat = lambda key: torch.cat([getattr(c, key) for c in chunks])  # noqa: E731
        return AnimateResult(cat("frames"), cat("driving"), plan.reference, cat("driving_normals"),
                             plan.reference_normal, self.generator.name, self.generator_reason, plan.timings,
                             plan.fps, plan.head, cat_params([c.params for c in chunks]), plan.reference_box,
                             plan.driving_box, plan.reference_image, self.components(plan.head),
                             cat("landmarks"), plan.camera.to("cpu"))


def animate(reference: str | np.ndarray | None, driving: str | np.ndarray, config: AnimateConfig | None = None,
            model: HeadModel | None = None, detector: LandmarkDetector | None = None,
            driving_fps: float = 25.0) -> AnimateResult:
    """One job with a fresh :class:`Animator` (keep an :class:`Animator` to animate several)."""
    return Animator(config, model, detector).animate(reference, driving, driving_fps)


__all__ = ["AnimateConfig", "AnimateResult", "Animator", "ProgressFn", "animate"]
