"""The options of the main job, :class:`AnimateConfig` (``exp-animate``, ``exp-bench``'s "ours", the app), validated
when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from exphead.tracking import TrackerConfig
from exptransfer import Retargeting
from exptransfer.retarget import Motion, Region

from .generators import Carry, GeneratorName, check_overlap

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
        face_index: which face is the subject when several are seen (0: the largest), then followed frame to frame.
        animate: what of the driver moves the portrait: all, expression (no head motion), pose (no expression, no
            gaze), lips or eyes (that region's expression only; eyes includes the gaze).
        motion: relative (the driver's change from its first frame, on the portrait's own face and pose) or
            absolute (the driver's expression and pose as they are); in self mode the first frame is the reference
            frame.
        expression_scale: how much of the driver's expression arrives (1 = all of it).
        smooth_pose: zero-phase Gaussian smoothing of the driver's tracked head pose, in frames (0: none).
        smooth_expression: the same for its expression and jaw (keep it narrow: a fast mouth is flattened; 0.5
            frames takes the per-frame noise of the expression fit out of the output without lowering the mouth's
            correlation with the driver).
        generator: auto = diffusion when generator_weights is given, else geometric.
        generator_weights: diffusion weights folder (written by DiffusionModule.save_pretrained).
        transfer_weights: expression transfer module (exptransfer folder or .ckpt); none: SMPL-X expression only.
        diffusion_window: frames generated per DiT call (1 + 4k).
        diffusion_overlap: frames consecutive diffusion windows share (0: independent windows; see
            expgen.generators.diffusion).
        diffusion_carry: how the shared frames pass on: blend (cross-fade, any overlap below the window) or
            context (held as known latents, 1 + 4j frames; for checkpoints trained to continue a context).
        fit_steps: detail steps of the single-image reference fit.
        tracker: the SMPL-X tracker of the reference and the driving video (its eye landmarks weigh 10, not the
            subject fit's 3: on a 10 px eye their few pixels carry the blinks, which matter more here than the
            shape the subject fit recovers). ``--tracker.steps`` and the like change one field; in Python, keep the
            rest with ``replace(AnimateConfig().tracker, steps=...)`` (a new ``TrackerConfig`` has the subject
            fit's weights).
        chunk: driving frames processed at once, from decoding to writing (memory does not grow with the video).
        overlap: tracked frames of the previous chunk that the next chunk's smoothness runs across.
        smplx: SMPLX_NEUTRAL.npz (default $SMPLX_MODEL_PATH, else the embedded procedural head model).
        device: where the job runs (cpu, cuda): tracker, renderer and generator; frames come back to the CPU.
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
    face_index: int = 0
    animate: Region = "all"
    motion: Motion = "relative"
    expression_scale: float = 1.0
    smooth_pose: float = 1.0
    smooth_expression: float = 0.5
    generator: GeneratorName = "auto"
    generator_weights: str | None = None
    transfer_weights: str | None = None
    diffusion_window: int = 17
    diffusion_overlap: int = 4
    diffusion_carry: Carry = "blend"
    fit_steps: int = 60
    tracker: TrackerConfig = field(default_factory=lambda: TrackerConfig(steps=100, eye_weight=10.0))
    chunk: int = 128
    overlap: int = 8
    smplx: str | None = None
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    seed: int = 0
    show_progress: bool = True

    def __post_init__(self) -> None:
        problems = [f"{name} must be >= {low}, got {value}" for name, value, low in (
            ("size", self.size, 16), ("fit_size", self.fit_size, 16), ("stride", self.stride, 1),
            ("reference_frame", self.reference_frame, 0), ("fit_steps", self.fit_steps, 0),
            ("face_index", self.face_index, 0), ("chunk", self.chunk, 2), ("overlap", self.overlap, 0),
            ("smooth_pose", self.smooth_pose, 0), ("smooth_expression", self.smooth_expression, 0))
            if value < low]
        if self.max_frames is not None and self.max_frames < 2:
            problems.append(f"max_frames must be >= 2, got {self.max_frames}")
        if self.diffusion_window < 1 or (self.diffusion_window - 1) % 4:
            problems.append(f"diffusion_window must be 1 + 4k frames, got {self.diffusion_window}")
        else:
            try:
                check_overlap(self.diffusion_window, self.diffusion_overlap, self.diffusion_carry)
            except ValueError as error:
                problems.append(f"diffusion_{error}")
        if problems:
            raise ValueError("; ".join(problems))
        self.retargeting()

    def retargeting(self) -> Retargeting:
        """The region, motion and expression scale as :class:`exptransfer.Retargeting` (validated)."""
        return Retargeting(self.animate, self.motion, self.expression_scale)


__all__ = ["AnimateConfig", "Mode"]
