"""Synthetic subjects with complete ground truth: known β, Δg, ψ_i, ω_i, head pose, camera and
identity-dependent Δf(i), rendered to RGB, normal, depth, mask and 68 landmarks.

They are the test data that lets tests and benchmarks measure accuracy honestly; they are not a
substitute for the real path (real photos, real detectors, real normal estimators).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from exphead.camera import Camera
from exphead.geometry import vertex_normals
from exphead.head_model import HeadModel, HeadParams, split_head_rotation
from exphead.personalized import PersonalizedHead
from exphead.render import interpolate, render_normal_depth

from .details import expression_details, static_offsets


@dataclass
class SyntheticSubject:
    """Ground truth of one subject over ``F`` frames (world frame, metres)."""

    params: HeadParams  # F frames; betas identical in every frame
    delta_g: Tensor  # N_s x 3
    delta_f: Tensor  # F x N_s x 3
    age: float
    camera: Camera  # one camera, batch 1
    albedo: Tensor  # N_s x 3 vertex colours in [0, 1]
    seed: int

    @property
    def num_frames(self) -> int:
        return self.params.batch_size

    def head(self, model: HeadModel, source: str = "exphead.synthetic") -> PersonalizedHead:
        """The ground truth as the :class:`PersonalizedHead` a perfect fit would return (Δf(i) of synthetic
        subjects is zero outside ``model.face_mask``, so keeping its facial rows is lossless)."""
        face = torch.nonzero(model.face_mask > 0).squeeze(1)
        return PersonalizedHead(model, self.params, self.delta_g, self.delta_f[:, face].contiguous(), self.camera,
                                {"source": source, "seed": self.seed, "age": self.age})


@dataclass
class SubjectRenders:
    """Renders of a subject: ``F x 3 x H x W`` RGB in [0, 1], ``F x 3 x H x W`` camera-space normals
    (0 where empty), ``F x 1 x H x W`` depth (0 = empty), ``F x 1 x H x W`` mask, ``F x 68 x 2`` pixel landmarks."""

    rgb: Tensor
    normal: Tensor
    depth: Tensor
    mask: Tensor
    landmarks: Tensor


def _smooth_track(t: Tensor, generator: torch.Generator, amplitude: float, count: int = 3) -> Tensor:
    """A smooth random signal over normalised time ``t`` (sum of a few random sinusoids)."""
    out = torch.zeros_like(t)
    for _ in range(count):
        freq = 0.5 + 2.0 * torch.rand(1, generator=generator).item()
        phase = 2 * math.pi * torch.rand(1, generator=generator).item()
        out = out + torch.sin(2 * math.pi * freq * t + phase) / count
    return amplitude * out


def driving_sequence(num_frames: int, generator: torch.Generator, num_expression: int = 100,
                     pose_scale: float = 1.0) -> HeadParams:
    """A subject talking and smiling: smooth ψ_i, ω_i and head pose over ``num_frames`` frames."""
    t = torch.linspace(0, 1, num_frames)
    p = HeadParams.zeros(num_frames, num_expression=num_expression)
    expr = torch.stack([_smooth_track(t, generator, 0.25) for _ in range(num_expression)], 1)
    expr[:, 0] = 1.6 * torch.sin(math.pi * t) ** 2 + _smooth_track(t, generator, 0.3)  # smile comes and goes
    expr[:, 3] = 1.8 * torch.relu(torch.sin(2 * math.pi * (t * 1.5 + torch.rand(1, generator=generator))))
    expr[:, 4] = 1.2 * torch.relu(_smooth_track(t, generator, 1.5))
    p.expression = expr
    talk = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + 6 * torch.rand(1, generator=generator))
    p.jaw_pose[:, 0] = 0.16 * talk * (0.6 + 0.4 * torch.sin(math.pi * t))
    yaw, pitch, roll = (_smooth_track(t, generator, a * pose_scale) for a in (0.35, 0.15, 0.08))
    p.neck_pose, p.head_pose = split_head_rotation(torch.stack([pitch, yaw, roll], 1))
    return p


def skin_albedo(model: HeadModel, neutral: Tensor, landmarks: Tensor, generator: torch.Generator,
                hair_mask: Tensor) -> Tensor:
    """Vertex colours: skin tone, lips, eyes with irises, brows, hair and clothing."""
    x, y, _ = neutral.unbind(-1)
    tone = torch.tensor([0.85, 0.62, 0.50]) * (0.6 + 0.4 * torch.rand(1, generator=generator))
    hair_c = torch.rand(3, generator=generator) * torch.tensor([0.35, 0.25, 0.2])
    shirt = 0.2 + 0.6 * torch.rand(3, generator=generator)
    col = tone.expand(neutral.shape[0], 3).clone()
    p = neutral[:, :2]

    def blob(center: Tensor, sx: float, sy: float) -> Tensor:
        return torch.exp(-0.5 * (((p[:, 0] - center[0]) / sx) ** 2 + ((p[:, 1] - center[1]) / sy) ** 2))

    mouth = 0.5 * (landmarks[48, :2] + landmarks[54, :2])
    lips = blob(mouth, 0.018, 0.006).clamp(0, 1)[:, None]
    col = col * (1 - 0.5 * lips) + torch.tensor([0.65, 0.2, 0.22]) * 0.5 * lips
    for a, b in ((36, 39), (42, 45)):
        c = 0.5 * (landmarks[a, :2] + landmarks[b, :2])
        white = (blob(c, 0.009, 0.0045) > 0.5).float()[:, None]
        iris = (blob(c, 0.0035, 0.0035) > 0.5).float()[:, None]
        col = col * (1 - white) + white * torch.tensor([0.92, 0.92, 0.9])
        col = col * (1 - iris) + iris * torch.tensor([0.2, 0.12, 0.08])
        brow = blob(landmarks[[a, b]].mean(0)[:2] + torch.tensor([0.0, 0.019]), 0.016, 0.003)[:, None]
        col = col * (1 - 0.7 * brow) + 0.7 * brow * hair_c
    col = col * (1 - hair_mask[:, None]) + hair_mask[:, None] * hair_c
    body = torch.sigmoid((-0.03 - y) / 0.005)[:, None]
    col = col * (1 - body) + body * shirt
    return col.clamp(0, 1)


def make_subject(model: HeadModel, seed: int, num_frames: int = 16, age: float | None = None,
                 beta_scale: float = 0.8, pose_scale: float = 1.0, height: int = 256,
                 width: int = 256) -> SyntheticSubject:
    """Draw a subject: identity (β, age, Δg, albedo), a talking-and-smiling sequence, and Δf(i)."""
    g = torch.Generator().manual_seed(seed)
    params = driving_sequence(num_frames, g, model.num_expression, pose_scale)
    betas = torch.zeros(1, model.num_betas)
    k = min(20, model.num_betas)
    betas[0, :k] = torch.randn(k, generator=g) * beta_scale
    params.betas = betas.expand(num_frames, -1).clone()
    if age is None:
        age = float(torch.rand(1, generator=g))
    neutral_params = HeadParams.zeros(1, model.num_betas, model.num_expression)
    neutral_params.betas = betas
    neutral = model.canonical(neutral_params)
    normals = vertex_normals(neutral, model.faces)[0]
    landmarks = model.landmarks_of(neutral)[0]
    neutral = neutral[0]
    delta_g = static_offsets(neutral, normals, landmarks, model.face_mask, g)
    delta_f = expression_details(neutral, normals, landmarks, model.face_mask, age, params.expression)
    hair = (delta_g.norm(dim=-1) > 0.006).float()
    albedo = skin_albedo(model, neutral, landmarks, g, hair)
    distance = 1.6 + 0.2 * float(torch.rand(1, generator=g))
    camera = Camera.portrait(1, height, width, distance=distance)
    return SyntheticSubject(params, delta_g, delta_f, age, camera, albedo, seed)


def render_subject(model: HeadModel, subject: SyntheticSubject, height: int | None = None,
                   width: int | None = None, chunk: int = 8) -> SubjectRenders:
    """Render every frame (shaded textured RGB, normals, depth, mask, projected landmarks)."""
    camera = subject.camera if height is None else subject.camera.scaled(height, width or height)
    outs = []
    for s in range(0, subject.num_frames, chunk):
        sl = slice(s, s + chunk)
        params = subject.params.map(lambda v, sl=sl: v[sl])
        head = model(params, subject.delta_g, subject.delta_f[sl])
        cam = camera.expand(params.batch_size)
        r = render_normal_depth(head.vertices, model.faces, cam)
        albedo = interpolate(subject.albedo[None], r.fragments, model.faces).permute(0, 3, 1, 2)
        light = torch.nn.functional.normalize(torch.tensor([-0.3, -0.4, -1.0]), dim=0)
        shade = (r.normal * light[None, :, None, None]).sum(1, keepdim=True).clamp_min(0)
        bg = torch.linspace(0.75, 0.55, cam.height)[None, None, :, None].expand(-1, 3, -1, cam.width)
        rgb = albedo * (0.3 + 0.7 * shade) * r.mask + bg * (1 - r.mask)
        outs.append(SubjectRenders(rgb.clamp(0, 1), r.normal, r.depth, r.mask, cam.project(head.landmarks)))
    return SubjectRenders(*(torch.cat([getattr(o, f) for o in outs]) for f in
                            ("rgb", "normal", "depth", "mask", "landmarks")))
