"""The end-to-end job: reference image + driving video -> animated portrait (paper Fig. 2).

1. fit the reference identity's personalized head from the single reference image (exphead);
2. track the driving video (SMPL-X parameters per frame, batched);
3. transfer the driving expression onto the reference identity (exptransfer) and pose it;
4. render the driving normal maps N^D and the reference normal map N^R;
5. generate the video (``geometric`` re-rendering, or the ``diffusion`` DiT with weights);
6. write the video and a side-by-side preview (reference | driving | condition | result).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from exphead.camera import Camera
from exphead.fitting import FitConfig, FitTargets, fit_subject
from exphead.head_model import HeadModel, HeadParams, split_head_rotation
from exphead.media import MediaError, contact_sheet, read_frames, read_image, to_tensor, to_uint8
from exphead.personalized import PersonalizedHead
from exphead.rotations import compose_relative
from exphead.tracking.crop import CropBox, detect_and_crop
from exphead.tracking.landmarks import DlibLandmarkDetector, LandmarkDetector, NoFaceError, detect_landmarks
from exphead.tracking.tracker import TrackerConfig, TrackingResult, track_landmarks

from .data.heads import reference_vertices, render_normal_images
from .geometric import GeometricGenerator

logger = logging.getLogger(__name__)


@dataclass
class AnimateConfig:
    """Options of :func:`animate` (and ``exp-animate``)."""

    size: int = 512  # output frames are size x size crops around the face
    fit_size: int = 256  # the reference fit and the tracking run at this size
    stride: int = 1  # use every stride-th driving frame
    max_frames: int | None = None
    mode: Literal["cross", "self"] = "cross"  # self: the reference is frame `reference_frame` of the driving video
    reference_frame: int = 0
    generator: Literal["auto", "geometric", "diffusion"] = "auto"
    generator_weights: str | None = None  # diffusion: folder written by DiffusionModule.save_pretrained
    transfer_weights: str | None = None  # exptransfer module folder; None: SMPL-X expression only
    diffusion_window: int = 17  # frames generated per DiT call (1 + 4k)
    fit_steps: int = 120
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(rigid_steps=80, steps=200))
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # diffusion generator weights and activations
    seed: int = 0
    show_progress: bool = True


@dataclass
class AnimateResult:
    """Everything the job produced (frames ``F x 3 x S x S`` in [0, 1])."""

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


def _crop(frames: np.ndarray, box: CropBox, size: int) -> Tensor:
    return to_tensor(box.apply(frames, size))


def _track(model: HeadModel, frames_fit: Tensor, detector: LandmarkDetector, cfg: AnimateConfig) -> TrackingResult:
    lm, valid = detect_landmarks(to_uint8(frames_fit), detector, on_missing="skip")
    return track_landmarks(model, torch.from_numpy(lm), cfg.fit_size, cfg.fit_size, cfg.tracker,
                           torch.from_numpy(valid))


def driving_params(reference: PersonalizedHead, driving: TrackingResult, mode: str) -> HeadParams:
    """Reference identity (β) with the driver's ψ_i, ω_i and head motion.

    ``self``: the driver's absolute pose (same person, same crop). ``cross``: the driver's motion relative to
    its first frame, applied on top of the reference pose; translation scaled by the depth ratio.
    """
    d = driving.params
    n = d.batch_size
    p = d.map(lambda v: v.clone())
    p.betas = reference.betas.expand(n, -1).clone()
    if mode == "cross":
        ref_rot = (reference.params.neck_pose + reference.params.head_pose)[:1].expand(n, -1)
        rot = compose_relative(ref_rot, d.neck_pose + d.head_pose, (d.neck_pose + d.head_pose)[:1].expand(n, -1))
        p.neck_pose, p.head_pose = split_head_rotation(rot)
        ratio = reference.params.transl[0, 2] / d.transl[0, 2]
        p.transl = reference.params.transl[:1] + (d.transl - d.transl[:1]) * ratio
        p.global_orient = reference.params.global_orient[:1].expand(n, -1).clone()
    return p


def _pose_reference(reference: PersonalizedHead, params: HeadParams,
                    transfer_weights: str | None) -> tuple[Tensor, Tensor]:
    """Posed dense meshes (``F x N_s x 3``) and landmarks (``F x 68 x 3``) of the reference identity."""
    if transfer_weights is None:
        with torch.no_grad():
            outs = [reference.model(params.map(lambda v, s=s: v[s:s + 32]), reference.delta_g)
                    for s in range(0, params.batch_size, 32)]
        return torch.cat([o.vertices for o in outs]), torch.cat([o.landmarks for o in outs])
    from exptransfer import load_transfer, transfer

    result = transfer(reference, params, load_transfer(transfer_weights))
    return result.vertices, result.landmarks


def _choose_generator(cfg: AnimateConfig) -> tuple[str, str]:
    """The generator that runs, and why."""
    if cfg.generator != "auto":
        return cfg.generator, "requested"
    if cfg.generator_weights:
        return "diffusion", "weights given"
    return "geometric", "no generator weights given (weights-free default)"


def check_generator(cfg: AnimateConfig) -> None:
    """Raise now if the requested generator or transfer module cannot run (missing weights)."""
    if cfg.transfer_weights and not Path(cfg.transfer_weights).exists():
        raise FileNotFoundError(f"transfer weights not found: {cfg.transfer_weights} (--transfer-weights)")
    if _choose_generator(cfg)[0] != "diffusion":
        return
    if not cfg.generator_weights:
        raise FileNotFoundError("the diffusion generator needs weights: pass --generator-weights DIR (a folder "
                                "written by DiffusionModule.save_pretrained)")
    if not Path(cfg.generator_weights).is_dir():
        raise FileNotFoundError(f"generator weights folder not found: {cfg.generator_weights} "
                                "(--generator-weights / AnimateConfig.generator_weights)")


def _generate(cfg: AnimateConfig, reference: Tensor, ref_normal_img: Tensor, drv_normal_img: Tensor | None,
              ref_vertices: Tensor, drv_vertices: Tensor, drv_landmarks: Tensor, faces: Tensor,
              camera: Camera, head_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Frames ``F x 3 x S x S`` and the driving normal maps; the geometric generator renders the latter
    itself (``drv_normal_img`` None), the diffusion generator is conditioned on them."""
    if _choose_generator(cfg)[0] == "geometric":
        return GeometricGenerator()(reference, ref_vertices, drv_vertices, faces, camera, drv_landmarks,
                                    show_progress=cfg.show_progress, return_normals=True, head_weight=head_weight)
    from .backbone import cast_for_inference
    from .module import DiffusionModule

    module = DiffusionModule.from_pretrained(cfg.generator_weights).to(cfg.device).eval()
    for part in (module.transformer, module.vae):
        cast_for_inference(part, getattr(torch, cfg.dtype))
    gen = torch.Generator(cfg.device).manual_seed(cfg.seed)
    n, win = drv_normal_img.shape[0], cfg.diffusion_window
    out = []
    for s in range(0, n, win):
        chunk = drv_normal_img[s:s + win]
        pad = win - chunk.shape[0]
        if pad:
            chunk = torch.cat([chunk, chunk[-1:].expand(pad, -1, -1, -1)])
        video = module.generate(reference[None], ref_normal_img[None], chunk[None], generator=gen,
                                progress=cfg.show_progress)[0]
        out.append(video[: win - pad])
    return torch.cat(out), drv_normal_img


def animate(reference: str | np.ndarray | None, driving: str | np.ndarray, config: AnimateConfig | None = None,
            model: HeadModel | None = None, detector: LandmarkDetector | None = None,
            driving_fps: float = 25.0) -> AnimateResult:
    """Animate ``reference`` (image path or ``H x W x 3`` uint8) with ``driving`` (video/folder path or
    ``F x H x W x 3`` uint8 frames). In ``self`` mode ``reference`` may be None (a driving frame is used)."""
    cfg = config or AnimateConfig()
    check_generator(cfg)  # fail before minutes of fitting, not after
    torch.manual_seed(cfg.seed)
    model = model or HeadModel()
    detector = detector or DlibLandmarkDetector()
    t = {}
    clock = time.perf_counter()

    if isinstance(driving, np.ndarray):
        frames, fps = driving[::cfg.stride][: cfg.max_frames], driving_fps / cfg.stride
    else:
        frames, fps = read_frames(driving, stride=cfg.stride, max_frames=cfg.max_frames, min_frames=2)
    if len(frames) < 2:
        raise MediaError(f"driving video has {len(frames)} frame(s); at least 2 are needed")
    if cfg.mode == "self":
        ref_img = frames[min(cfg.reference_frame, len(frames) - 1)]
    elif reference is None:
        raise ValueError("cross-reenactment needs a reference image")
    else:
        ref_img = reference if isinstance(reference, np.ndarray) else read_image(reference)
    t["read"] = time.perf_counter() - clock

    # 1. reference fit (single image, landmarks; the crop is the driving crop in self mode)
    clock = time.perf_counter()
    drv_box = detect_and_crop(frames, detector, cfg.fit_size)
    ref_box = drv_box if cfg.mode == "self" else detect_and_crop(ref_img[None], detector, cfg.fit_size, "fail")
    ref_fit = _crop(ref_img[None], ref_box, cfg.fit_size)
    lm, valid = detect_landmarks(to_uint8(ref_fit), detector, on_missing="fail")
    targets = FitTargets(torch.from_numpy(lm), torch.from_numpy(valid), cfg.fit_size, cfg.fit_size, frames=ref_fit)
    fit_cfg = FitConfig(steps=cfg.fit_steps, frames_per_step=1, tracker=cfg.tracker, show_progress=False)
    ref_head = fit_subject(targets, None, fit_cfg, model=model)
    t["fit_reference"] = time.perf_counter() - clock

    # 2. driving tracking (batched over all frames)
    clock = time.perf_counter()
    drv_fit = _crop(frames, drv_box, cfg.fit_size)
    tracking = _track(model, drv_fit, detector, cfg)
    t["track"] = time.perf_counter() - clock

    # 3. expression transfer + posing
    clock = time.perf_counter()
    params = driving_params(ref_head, tracking, cfg.mode)
    drv_vertices, drv_landmarks = _pose_reference(ref_head, params, cfg.transfer_weights)
    with torch.no_grad():
        ref_vertices = ref_head.frame(0).vertices[0]
    ref_neutral_posed = reference_vertices(ref_head, 0)  # N^R: V_neutral seen by the reference camera
    t["transfer"] = time.perf_counter() - clock

    # 4. condition maps at the output size (the geometric generator renders N^D itself, in step 5)
    clock = time.perf_counter()
    name, reason = _choose_generator(cfg)
    camera = ref_head.camera.scaled(cfg.size, cfg.size)
    with torch.no_grad():
        drv_normals = render_normal_images(drv_vertices, model.faces, camera) if name == "diffusion" else None
        ref_normal = render_normal_images(ref_neutral_posed, model.faces, camera)[0]
    t["render"] = time.perf_counter() - clock

    # 5. generation
    clock = time.perf_counter()
    reference_out = _crop(ref_img[None], ref_box, cfg.size)[0]
    out, drv_normals = _generate(cfg, reference_out, ref_normal, drv_normals, ref_vertices, drv_vertices,
                                 drv_landmarks, model.faces, camera, model.head_weight())
    t["generate"] = time.perf_counter() - clock
    logger.info("generator: %s (%s)", name, reason)
    return AnimateResult(out, _crop(frames, drv_box, cfg.size), reference_out, drv_normals, ref_normal, name, reason,
                         t, fps, ref_head, tracking)


def preview_panels(result: AnimateResult) -> Tensor:
    """``F x 3 x S x 4S`` frames: reference | driving | condition normal map | result."""
    n = result.frames.shape[0]
    ref = result.reference[None].expand(n, -1, -1, -1)
    return torch.cat([ref, result.driving, result.driving_normals, result.frames], dim=-1)


def preview_sheet(result: AnimateResult, rows: int = 4) -> np.ndarray:
    """A PNG-ready contact sheet: ``rows`` evenly spaced frames, each reference | driving | condition | result."""
    n = result.frames.shape[0]
    idx = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    panels = to_uint8(preview_panels(result)[idx])
    s = result.frames.shape[-1]
    return contact_sheet([[p[:, k * s:(k + 1) * s] for k in range(4)] for p in panels])


def write_outputs(result: AnimateResult, out_path: str | Path) -> dict[str, Path]:
    """Write OUT.mp4, OUT_preview.mp4 and OUT_preview.png (each atomically)."""
    from exphead.media import write_image, write_video

    out_path = Path(out_path)
    stem = out_path.with_suffix("")
    paths = {"video": write_video(out_path, result.frames, result.fps),
             "preview_video": write_video(f"{stem}_preview.mp4", preview_panels(result), result.fps),
             "preview_sheet": write_image(f"{stem}_preview.png", preview_sheet(result))}
    return paths


__all__ = ["AnimateConfig", "AnimateResult", "animate", "driving_params", "preview_sheet", "write_outputs",
           "NoFaceError"]
