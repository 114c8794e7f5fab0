"""Settings of :func:`~exphead.fitting.fit_subject` (and ``exp-fit``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from exphead.tracking.tracker import TrackerConfig

from .losses import DetailLossWeights
from .onnx_maps import NormalFrame


@dataclass
class FitConfig:
    """Settings of a personalized-head fit.

    Attributes:
        image_size: frames are cropped around the face and resized to this square size.
        steps: detail-stage optimisation steps.
        frames_per_step: frames rendered per detail step.
        tracker: the SMPL-X tracker that initialises the fit.
        weights: loss weights of the detail stage.
        lr_detail: Adam learning rate of the detail offsets (mm per step scale).
        lr_params: Adam learning rate of the SMPL-X parameters.
        static_init_mm: Δg starts this many mm along the normal outside the face (Sec. 3.1.3 prior).
        depth_alignment: auto = scale_shift when the depth comes from an ONNX model (relative), else none.
        normal_model: DAViD normal ONNX model (default $EXPPORTRAIT_DAVID_NORMAL when no normal maps are given).
        depth_model: DAViD relative-depth ONNX model (default $EXPPORTRAIT_DAVID_DEPTH).
        foreground_model: DAViD foreground ONNX model whose matte (> 0.5) limits model maps to the person
            (default: the multi-task graph giving the maps, else $EXPPORTRAIT_DAVID_FOREGROUND).
        normal_frame: axes of the normal model's output (auto: from the sign of n_z at the image centre).
        checkpoint_every: steps between checkpoints (the resume point of a killed fit).
        crop: False when the frames are already aligned square crops (e.g. synthetic subjects).
        on_missing_face: frames without a face are skipped with a warning, or fail the fit.
        max_frames: use at most this many frames.
        stride: use every stride-th frame.
        accelerator: Lightning accelerator of the detail stage (auto, cpu, gpu).
        show_progress: one progress bar per stage.
        seed: seed of the order in which frames are drawn for the detail steps (fits are reproducible).
    """

    image_size: int = 256
    steps: int = 150
    frames_per_step: int = 4
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    weights: DetailLossWeights = field(default_factory=DetailLossWeights)
    lr_detail: float = 0.1
    lr_params: float = 3e-3
    static_init_mm: float = 2.0
    depth_alignment: Literal["auto", "none", "shift", "scale_shift"] = "auto"
    normal_model: str | None = None
    depth_model: str | None = None
    foreground_model: str | None = None
    normal_frame: NormalFrame = "auto"
    checkpoint_every: int = 50
    crop: bool = True
    on_missing_face: Literal["skip", "fail"] = "skip"
    max_frames: int | None = None
    stride: int = 1
    accelerator: str = "auto"
    show_progress: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 16 or self.steps < 0 or self.frames_per_step < 1 or self.stride < 1:
            raise ValueError(f"need image_size >= 16, steps >= 0, frames_per_step >= 1 and stride >= 1; got "
                             f"{self.image_size}, {self.steps}, {self.frames_per_step}, {self.stride}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
