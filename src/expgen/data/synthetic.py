"""Toy clips with exact normal maps, in the clip format of ``expgen.data.clips``.

Each subject is a textured, Lambertian-shaded ellipsoid seen by an orthographic camera (camera
space as in ``exphead.camera``: x right, y down, z forward). Over a clip its centre moves and its
semi-axes deform; the normal of the visible (front) surface at pixel ``(x, y)`` is exactly

    n ∝ ((x - c_x) / a², (y - c_y) / b², -sqrt(1 - r²) / c),   r² = ((x - c_x)/a)² + ((y - c_y)/b)²,

so frames are a deterministic function of the driving normal maps and the subject's appearance
(albedo colours, stripe and light direction, visible in the reference image). A generator must
follow the normals for the shape and the reference for the colours.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from expgen.data.clips import Clip, write_clip
from exphead.media import to_uint8
from exphead.render import normal_to_image

_DEPTH = 0.6  # semi-axis c along the view direction, in normalised image units


@dataclass
class SyntheticSubject:
    """Appearance and motion parameters of one toy subject."""

    subject_id: str
    albedo: tuple[float, float, float]
    stripe: tuple[float, float, float]
    background: tuple[float, float, float]
    light: tuple[float, float, float]
    axes: tuple[float, float]
    phase: float

    @staticmethod
    def random(subject_id: str, generator: torch.Generator) -> SyntheticSubject:
        """Draw colours, light and rest shape from ``generator``."""
        def u(n: int, lo: float, hi: float) -> tuple[float, ...]:
            return tuple((lo + (hi - lo) * torch.rand(n, generator=generator)).tolist())

        lx, ly = u(2, -0.6, 0.6)
        return SyntheticSubject(subject_id, u(3, 0.3, 1.0), u(3, 0.0, 0.7), u(3, 0.0, 0.25),
                                (lx, ly, -1.0), u(2, 0.35, 0.55), float(u(1, 0.0, 2 * math.pi)[0]))


def render_ellipsoid(subject: SyntheticSubject, centre: tuple[float, float], axes: tuple[float, float],
                     size: int) -> tuple[Tensor, Tensor]:
    """Render one ``size x size`` view.

    Returns:
        image ``3 x size x size`` in ``[0, 1]``; normals ``3 x size x size`` camera-space unit vectors
        (zero vectors on the background).
    """
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2.0 - 1.0
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    a, b = axes
    dx, dy = (x - centre[0]) / a, (y - centre[1]) / b
    r2 = dx * dx + dy * dy
    inside = r2 < 1.0
    dz = torch.sqrt((1.0 - r2).clamp_min(0.0))
    n = torch.stack([dx / a, dy / b, -dz / _DEPTH])
    n = n / n.norm(dim=0, keepdim=True).clamp_min(1e-12) * inside
    light = torch.tensor(subject.light, dtype=torch.float64)
    light = light / light.norm()
    shade = 0.25 + 0.75 * (n * light[:, None, None]).sum(0).clamp_min(0.0)
    in_stripe = (dy.abs() < 0.25)
    albedo = torch.where(in_stripe, torch.tensor(subject.stripe, dtype=torch.float64)[:, None, None],
                         torch.tensor(subject.albedo, dtype=torch.float64)[:, None, None])
    background = torch.tensor(subject.background, dtype=torch.float64)[:, None, None].expand(3, size, size)
    image = torch.where(inside, albedo * shade, background)
    return image.float().clamp(0, 1), n.float()


def clip_bytes(images: Tensor) -> Tensor:
    """``F x 3 x H x W`` floats in ``[0, 1]`` -> ``F x 3 x H x W`` uint8, quantised by ``exphead.media.to_uint8``."""
    return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).contiguous()


def make_clip(subject: SyntheticSubject, num_frames: int = 9, size: int = 64, fps: float = 25.0) -> Clip:
    """A clip of ``subject``: its centre moves on an ellipse, its axes pulse; reference at rest."""
    views = []
    for i in range(num_frames):
        s = 2 * math.pi * i / max(num_frames, 1) + subject.phase
        centre = (0.25 * math.cos(s), 0.2 * math.sin(s))
        axes = (subject.axes[0] * (1 + 0.25 * math.sin(2 * s)), subject.axes[1] * (1 - 0.2 * math.sin(2 * s)))
        views.append(render_ellipsoid(subject, centre, axes, size))
    ref_image, ref_normal = render_ellipsoid(subject, (0.0, 0.0), subject.axes, size)
    frames, normals = (torch.stack(v) for v in zip(*views))
    return Clip(clip_bytes(frames), clip_bytes(normal_to_image(normals)), clip_bytes(ref_image[None])[0],
                clip_bytes(normal_to_image(ref_normal[None]))[0], subject.subject_id, fps,
                extra={"source": "expgen.data.synthetic"})


def write_synthetic_dataset(folder: str | os.PathLike, num_train: int = 48, num_val: int = 8, num_frames: int = 9,
                            size: int = 64, seed: int = 0) -> list[Path]:
    """Write ``num_train`` clips to ``folder/train`` and ``num_val`` held-out subjects to ``folder/val``."""
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    paths = []
    for split, count in (("train", num_train), ("val", num_val)):
        for i in range(count):
            subject = SyntheticSubject.random(f"{split}-{i:04d}", generator)
            paths.append(write_clip(folder / split / f"{subject.subject_id}.safetensors",
                                    make_clip(subject, num_frames, size)))
    return paths
