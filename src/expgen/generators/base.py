"""The one interface of the video generators: reference image + condition maps + meshes in, frames out.

The geometric generator (weights-free re-rendering) and the diffusion generator (the Wan DiT of Sec. 3.3)
both take :class:`GeneratorInputs` and return :class:`GeneratorOutput`, so the animator and the benchmark
swap them by configuration. A generator loads its weights once, when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch
from torch import Tensor

from exphead.camera import Camera


@dataclass
class GeneratorInputs:
    """What a generator is given for ``F`` frames of ``S x S`` pixels (world frame of :mod:`exphead.camera`).

    Attributes:
        reference: ``3 x S x S`` reference image I_R in [0, 1].
        reference_normal: ``3 x S x S`` reference normal image N^R (``(n + 1) / 2``, 0 on the background).
        reference_vertices: ``N_s x 3`` the fitted reference mesh, posed as in I_R.
        driving_vertices: ``F x N_s x 3`` the reference identity driven by each frame (transferred, posed).
        driving_landmarks: ``F x 68 x 3`` their iBUG-68 landmarks.
        faces: ``M x 3`` dense faces.
        camera: the reference camera at ``S x S`` (batch 1).
        head_weight: ``N_s`` per-vertex weight of the rigid head (None: not used).
        reference_landmarks: ``68 x 3`` iBUG-68 landmarks of ``reference_vertices`` (None: features that need them,
            such as the geometric generator's eyelids, are off).
        previous: ``K x 3 x S x S`` frames a previous call already generated for the first ``K`` driving frames
            (the animator holds back the last :attr:`Generator.carry_frames` frames of each call and passes them to
            the next, so windows blend across its chunks); None: no such frames.
        reference_bounds: ``(x0, y0, x1, y1)`` pixels of the reference crop that show the photo (the rest is the
            crop's padding, where the crop box reached past the photo's edge); None: the whole crop.
        gaze: ``F x 2`` how far the driven eyes turn from the reference's, in the head (pitch, yaw in radians, as
            SMPL-X's eye poses; :mod:`exphead.tracking.gaze`), the same for both eyes; None: the eyes keep the
            reference's gaze.
        reference_marks: ``68 x 2`` iBUG landmarks detected in ``reference`` (pixels), which outline its eyes more
            closely than the fitted mesh's (the geometric generator's irises use them); None: the mesh's.
    """

    reference: Tensor
    reference_normal: Tensor
    reference_vertices: Tensor
    driving_vertices: Tensor
    driving_landmarks: Tensor
    faces: Tensor
    camera: Camera
    head_weight: Tensor | None = None
    reference_landmarks: Tensor | None = None
    previous: Tensor | None = None
    reference_bounds: tuple[float, float, float, float] | None = None
    gaze: Tensor | None = None
    reference_marks: Tensor | None = None

    @property
    def num_frames(self) -> int:
        return self.driving_vertices.shape[0]

    def to(self, device: torch.device | str) -> GeneratorInputs:
        """The inputs on ``device``."""
        moved = {f.name: value.to(device) for f in fields(self)
                 if isinstance(value := getattr(self, f.name), (Tensor, Camera))}
        return replace(self, **moved)


def keep_padding(frames: Tensor, reference: Tensor, bounds: tuple[float, float, float, float] | None) -> Tensor:
    """``F x 3 x S x S`` frames with the reference crop's padding (pixels whose centres lie outside ``bounds``, see
    :attr:`GeneratorInputs.reference_bounds`) copied from the ``3 x S x S`` reference: padding never moves."""
    if bounds is None:
        return frames
    size = frames.shape[-2:]
    ys, xs = (torch.arange(n, device=frames.device) + 0.5 for n in size)
    x0, y0, x1, y1 = bounds
    inside = ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None]
    if bool(inside.all()):
        return frames
    return torch.where(inside, frames, reference.to(frames))


@dataclass
class GeneratorOutput:
    """``frames``: ``F x 3 x S x S`` in [0, 1]; ``driving_normals``: the ``F x 3 x S x S`` N^D images the frames
    follow (rendered by the generator). Both on the CPU."""

    frames: Tensor
    driving_normals: Tensor


class Generator(Protocol):
    """A video generator (see the module docstring)."""

    name: str
    carry_frames: int  # trailing frames of a call to pass back as the next call's ``previous`` (0: none)

    def describe(self) -> dict:
        """What runs (JSON-ready): the generator, its weights and their fingerprint, device, precision."""
        ...

    def __call__(self, inputs: GeneratorInputs, progress: bool = False) -> GeneratorOutput: ...
