"""expgen: the normal-map-conditioned video diffusion model of ExpPortrait (paper Sec. 3.3).

Layers: ``PoseEncoder3D`` / ``ReferenceEncoder2D`` / ``ExpPortraitTransformer`` (modules), the Wan VAE
helpers in ``expgen.vae``, objectives and samplers (``expgen.objectives``, ``expgen.sampling``), and
``DiffusionModule`` / ``VideoDataModule`` for Lightning. ``write_video(path, frames[0], fps)`` is
``exphead.media``'s atomic mp4 writer, re-exported.
"""

from expgen.backbone import WAN_PATH_ENV, build_backbone, load_transformer, resolve_wan_path
from expgen.data import VideoDataModule
from expgen.module import DiffusionModule
from expgen.objectives import EpsilonObjective, FlowMatchingObjective, make_objective
from expgen.pose_encoder import PoseEncoder3D
from expgen.reference_encoder import ReferenceEncoder2D
from expgen.sampling import generate, sample_latents
from expgen.transformer import ExpPortraitTransformer
from exphead.media import write_video

__all__ = [
    "WAN_PATH_ENV",
    "DiffusionModule",
    "EpsilonObjective",
    "ExpPortraitTransformer",
    "FlowMatchingObjective",
    "PoseEncoder3D",
    "ReferenceEncoder2D",
    "VideoDataModule",
    "build_backbone",
    "generate",
    "load_transformer",
    "make_objective",
    "resolve_wan_path",
    "sample_latents",
    "write_video",
]
