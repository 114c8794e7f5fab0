"""The main job as an object: reference image + driving video -> animated portrait (paper Fig. 2).

:class:`Animator` loads the detector, the head model, the transfer network and the generator once, then
animates any number of (reference, driving) pairs; ``exp-animate``, ``exp-bench``'s "ours" and the app are
thin shells around it with one :class:`AnimateConfig`. One call runs:

1. fit the reference identity's personalized head from the single reference image (exphead);
2. track the driving video (exphead's :class:`~exphead.tracking.VideoTracker`);
3. transfer the driving expression onto the reference identity (exptransfer) and pose it;
4. render the reference normal map N^R;
5. generate the frames (``geometric`` re-rendering, or the ``diffusion`` DiT with weights), which also
   renders the driving normal maps N^D.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from exphead.fitting import FitConfig, FitTargets, fit_subject
from exphead.head_model import HeadModel
from exphead.media import FrameSource, MediaError, read_image, to_tensor
from exphead.personalized import PersonalizedHead
from exphead.render import render_normal_images
from exphead.tracking import CropBox, LandmarkDetector, TrackerConfig, TrackingResult, VideoTracker
from exptransfer import driving_params, freeze_transfer, load_transfer, transfer, transfer_fingerprint

from .generators import GeneratorInputs, GeneratorName, make_generator

logger = logging.getLogger(__name__)
Mode = Literal["cross", "self"]


@dataclass
class AnimateConfig:
    """Options of the main job (``exp-animate``, ``exp-bench``'s "ours", the app).

    Attributes:
        size: output frames are size x size crops around the face.
        fit_size: the reference fit and the tracking run on crops of this size.
        stride: use every stride-th driving frame.
        max_frames: use at most this many driving frames.
        mode: cross (a portrait driven by another person) or self (the reference is a frame of the driving video).
        reference_frame: self mode: the driving frame used as the reference.
        generator: auto = diffusion when generator_weights is given, else geometric.
        generator_weights: diffusion weights folder (written by DiffusionModule.save_pretrained).
        transfer_weights: expression transfer module (exptransfer folder or .ckpt); none: SMPL-X expression only.
        diffusion_window: frames generated per DiT call (1 + 4k).
        fit_steps: detail steps of the single-image reference fit.
        tracker: the SMPL-X tracker of the reference and the driving video.
        smplx: SMPLX_NEUTRAL.npz (default $SMPLX_MODEL_PATH, else the embedded procedural head model).
        device: where the generator runs (cpu, cuda).
        dtype: precision of the diffusion generator's weights and activations (bfloat16 on a GPU).
        seed: seed of the diffusion generator's sampling noise.
        show_progress: one progress bar per stage.
    """

    size: int = 512
    fit_size: int = 256
    stride: int = 1
    max_frames: int | None = None
    mode: Mode = "cross"
    reference_frame: int = 0
    generator: GeneratorName = "auto"
    generator_weights: str | None = None
    transfer_weights: str | None = None
    diffusion_window: int = 17
    fit_steps: int = 60
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(steps=200))
    smplx: str | None = None
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = 0
    show_progress: bool = True

    def __post_init__(self) -> None:
        problems = [f"{name} must be >= {low}, got {value}" for name, value, low in (
            ("size", self.size, 16), ("fit_size", self.fit_size, 16), ("stride", self.stride, 1),
            ("reference_frame", self.reference_frame, 0), ("fit_steps", self.fit_steps, 0))
            if value < low]
        if self.max_frames is not None and self.max_frames < 2:
            problems.append(f"max_frames must be >= 2, got {self.max_frames}")
        if self.diffusion_window < 1 or (self.diffusion_window - 1) % 4:
            problems.append(f"diffusion_window must be 1 + 4k frames, got {self.diffusion_window}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class AnimateResult:
    """Everything one call produced (frames ``F x 3 x S x S`` in [0, 1], on the CPU).

    Attributes:
        frames: the generated frames.
        driving: the driving frames cropped like the output (``driving_box``).
        reference: ``3 x S x S`` the reference crop (``reference_box``).
        driving_normals: ``F x 3 x S x S`` the N^D images the frames follow; reference_normal: ``3 x S x S`` N^R.
        reference_box, driving_box: the square crops in the reference image and in the driving frames.
        components: what ran (head model, reference map source, transfer module, generator), JSON-ready.
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
    driving_tracking: TrackingResult
    reference_box: CropBox
    driving_box: CropBox
    components: dict = field(default_factory=dict)


class Animator:
    """Animate portraits with one configuration; models and weights load once, in the constructor.

    Args:
        config: the job's settings.
        model: the dense head model (default: built from ``config.smplx``).
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
        self.model = model or HeadModel(cfg.smplx)
        if detector is None:
            from exphead.tracking import DlibFaceDetector

            detector = DlibFaceDetector()
        tracker = replace(cfg.tracker, show_progress=cfg.show_progress)
        self.tracker = VideoTracker(tracker, cfg.fit_size, detector, self.model)
        self.transfer = freeze_transfer(load_transfer(cfg.transfer_weights)) if cfg.transfer_weights else None
        self.generator, self.generator_reason = make_generator(cfg.generator, cfg.generator_weights, cfg.device,
                                                               cfg.dtype, cfg.diffusion_window, cfg.seed)
        logger.info("generator: %s (%s)", self.generator.name, self.generator_reason)

    def components(self, head: PersonalizedHead | None = None) -> dict:
        """What runs, for logs, previews and reports (JSON-ready)."""
        model = {"model_path": self.model.model_path or "embedded procedural head (no SMPL-X file given)",
                 "level": self.model.level}
        transfer_part = ({"weights": self.config.transfer_weights, "fingerprint": transfer_fingerprint(self.transfer)}
                         if self.transfer is not None else "none (SMPL-X expression only, no expression details)")
        out = {"head_model": model, "transfer": transfer_part, "generator": self.generator.describe(),
               "tracker_steps": self.config.tracker.steps, "fit_steps": self.config.fit_steps}
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
                            show_progress=False)
        return fit_subject(targets, None, fit_cfg, model=self.model), face.box

    def animate(self, reference: str | np.ndarray | None, driving: str | np.ndarray, driving_fps: float = 25.0,
                mode: Mode | None = None, reference_frame: int | None = None) -> AnimateResult:
        """Animate ``reference`` (image path or ``H x W x 3`` uint8) with ``driving`` (video/folder path or
        ``F x H x W x 3`` uint8 frames, taken at ``driving_fps``). ``mode`` and ``reference_frame`` override the
        config's; in ``self`` mode ``reference`` is ignored (driving frame ``reference_frame`` is the reference)."""
        cfg, t = self.config, {}
        mode = mode or cfg.mode
        ref_index = cfg.reference_frame if reference_frame is None else reference_frame
        clock = time.perf_counter()
        if isinstance(driving, np.ndarray):
            frames, fps, name = driving[::cfg.stride][: cfg.max_frames], driving_fps / cfg.stride, "driving frames"
        else:
            src = FrameSource(driving, cfg.stride, cfg.max_frames)
            frames, fps, name = src.read(), src.fps, f"driving {driving}"
        if len(frames) < 2:
            raise MediaError(f"{name}: {len(frames)} frame(s); at least 2 are needed")
        if mode == "self":
            if not 0 <= ref_index < len(frames):
                raise ValueError(f"reference_frame {ref_index} is not one of the {len(frames)} driving frames")
            ref_img, ref_name = frames[ref_index], f"{name} (frame {ref_index})"
        elif reference is None:
            raise ValueError("cross-reenactment needs a reference image")
        else:
            ref_img = reference if isinstance(reference, np.ndarray) else read_image(reference)
            ref_name = "reference" if isinstance(reference, np.ndarray) else f"reference {reference}"
        t["read"] = time.perf_counter() - clock

        clock = time.perf_counter()  # 1. the driving crop, and the reference fit
        drv_box = self.tracker.locate(frames, source=name)
        ref_head, ref_box = self.fit_reference(ref_img, drv_box if mode == "self" else None, ref_name)
        t["fit_reference"] = time.perf_counter() - clock

        clock = time.perf_counter()  # 2. driving tracking (all frames at once)
        tracked = self.tracker.track(frames, box=drv_box, source=name)
        t["track"] = time.perf_counter() - clock

        clock = time.perf_counter()  # 3. expression transfer and posing
        driven = transfer(ref_head, driving_params(ref_head, tracked.result.params, mode), self.transfer)
        with torch.no_grad():
            ref_vertices = ref_head.frame(0).vertices[0]
        t["transfer"] = time.perf_counter() - clock

        clock = time.perf_counter()  # 4. N^R: V_neutral seen by the reference camera
        camera = ref_head.camera.scaled(cfg.size, cfg.size)
        ref_normal = render_normal_images(ref_head.posed_neutral(0), self.model.faces, camera)[0]
        t["render"] = time.perf_counter() - clock

        clock = time.perf_counter()  # 5. generation
        reference_out = to_tensor(ref_box.apply(ref_img[None], cfg.size))[0]
        inputs = GeneratorInputs(reference_out, ref_normal, ref_vertices, driven.vertices, driven.landmarks,
                                 self.model.faces, camera, self.model.head_weight())
        out = self.generator(inputs, progress=cfg.show_progress)
        t["generate"] = time.perf_counter() - clock
        return AnimateResult(out.frames, to_tensor(drv_box.apply(frames, cfg.size)), reference_out,
                             out.driving_normals, ref_normal, self.generator.name, self.generator_reason, t, fps,
                             ref_head, tracked.result, ref_box, drv_box, self.components(ref_head))


def animate(reference: str | np.ndarray | None, driving: str | np.ndarray, config: AnimateConfig | None = None,
            model: HeadModel | None = None, detector: LandmarkDetector | None = None,
            driving_fps: float = 25.0) -> AnimateResult:
    """One job with a fresh :class:`Animator` (keep an :class:`Animator` to animate several)."""
    return Animator(config, model, detector).animate(reference, driving, driving_fps)


__all__ = ["AnimateConfig", "AnimateResult", "Animator", "animate"]
