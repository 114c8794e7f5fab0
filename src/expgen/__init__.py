"""expgen: the normal-map-conditioned video diffusion model of ExpPortrait (paper Sec. 3.3) and the main job.

Layers: ``PoseEncoder3D`` / ``ReferenceEncoder2D`` / ``ExpPortraitTransformer`` (modules), the Wan VAE
helpers in ``expgen.vae``, objectives and samplers (``expgen.objectives``, ``expgen.sampling``),
``DiffusionModule`` / ``VideoDataModule`` / ``DelayedEMA`` for Lightning, the generators (``expgen.generators``)
and the main job: :class:`Animator` with :class:`AnimateConfig` (``exp-animate``), :func:`write_outputs`.
``write_video(path, frames[0], fps)`` is ``exphead.media``'s atomic mp4 writer, re-exported.
"""

from expgen.animator import AnimateConfig, AnimateResult, Animator, animate
from expgen.backbone import WAN_PATH_ENV, build_backbone, load_transformer, resolve_wan_path
from expgen.data import VideoDataModule
from expgen.ema import DelayedEMA
from expgen.generators import DiffusionGenerator, GeometricGenerator
from expgen.module import DiffusionModule
from expgen.objectives import EpsilonObjective, FlowMatchingObjective, make_objective
from expgen.outputs import write_outputs
from expgen.pose_encoder import PoseEncoder3D
from expgen.reference_encoder import ReferenceEncoder2D
from expgen.sampling import generate, sample_latents
from expgen.transformer import ExpPortraitTransformer
from exphead.media import write_video

__all__ = [
    "WAN_PATH_ENV",
    "AnimateConfig",
    "AnimateResult",
    "Animator",
    "DelayedEMA",
    "DiffusionGenerator",
    "DiffusionModule",
    "EpsilonObjective",
    "ExpPortraitTransformer",
    "FlowMatchingObjective",
    "GeometricGenerator",
    "PoseEncoder3D",
    "ReferenceEncoder2D",
    "VideoDataModule",
    "animate",
    "build_backbone",
    "generate",
    "load_transformer",
    "make_objective",
    "resolve_wan_path",
    "sample_latents",
    "write_outputs",
    "write_video",
]
