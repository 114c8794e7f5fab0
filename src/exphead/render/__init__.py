"""Differentiable mesh rendering in nvdiffrast's shape: ``rasterize`` -> ``interpolate``.

All rasterizers obey :mod:`exphead.camera`'s convention (OpenCV camera space, pixel centres at
``(j + 0.5, i + 0.5)``). :func:`render_normal_depth` is the renderer R of the paper (Sec. 3.1.2).
"""

from exphead.render.interpolate import interpolate
from exphead.render.rasterize import Fragments, rasterize
from exphead.render.renderer import (
    RenderOutput,
    get_rasterizer,
    normal_to_image,
    render_normal_depth,
    render_normal_images,
)

__all__ = [
    "Fragments",
    "RenderOutput",
    "get_rasterizer",
    "interpolate",
    "normal_to_image",
    "rasterize",
    "render_normal_depth",
    "render_normal_images",
]
