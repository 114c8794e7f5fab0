"""The ``geometric`` generator: weights-free reenactment by re-rendering the reference texture.

The reference image is projected onto the fitted personalized mesh (each dense vertex remembers
where it appears in the reference image), the mesh is re-posed with each driving frame's
expression and pose, and the reference image is warped backward along that correspondence:

* pixels the driving mesh covers take the reference colour of the same surface point;
* the rest of the image follows a smooth flow extended from the head, fading to zero far away, so
  hair, neck and background move with the head while the far background stays put. Given per-vertex
  head weights (skinning weights of the head joints), the extension is the similarity transform
  (rotation, scale, shift) fitted to the head's own flow, reaching ``rigid_reach`` of the image size
  beyond the head, plus the rest of the flow extended by normalised Gaussian convolution: hair then
  turns with the head instead of smearing where a rolling head drags only its near side;
* the chin's underside, which a frontal reference shows edge-on in a few pixels, takes that smooth extension
  too (:func:`chin_underside`): its own flow would stretch those pixels into a seam when the head turns or tilts;
* a mouth the driver opens wider than the reference's is drawn anew inside the driven inner-lip contour
  (:mod:`expgen.generators.mouth`: the reference's teeth carried by the upper and lower lip, the cavity between
  them, a teeth proxy for a closed-lipped reference), instead of stretching the lips and teeth into the gap;
* the irises move inside the eye openings by the driver's gaze (:mod:`expgen.generators.irises`; the mesh has
  no eyeballs that turn);
* an eye the driver closes further than the reference's is covered with lid skin from its top down
  (:mod:`expgen.generators.eyelids`), not smeared by the stretched lid.

The mouth, the irises and the eyelids need ``reference_landmarks``; without them the warp alone runs. The correspondence
is smooth, so it is computed at ``work_size`` pixels at most (render, flow, mouth) and up-sampled; only the
final look-ups read the reference at the output's full resolution.

It needs no trained weights: it is the embedded default of ``exp-animate`` and a baseline row of
``exp-bench``. It runs on the device of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from exphead.camera import Camera
from exphead.geometry import similarity_transform, vertex_normals
from exphead.render import interpolate, normal_to_image, render_normal_depth

from .base import GeneratorInputs, GeneratorOutput
from .eyelids import close_eyelids, eye_closure, eye_maps, eye_squeeze
from .filters import gaussian_blur, max_pool, smooth
from .irises import iris_maps, iris_slide, move_irises
from .mouth import mouth_interior, paint_mouth

INNER_LIPS = slice(60, 68)  # iBUG-68 inner-lip points
RIGID = [27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45]  # nose and eye corners: where the head's motion is read
SEEN_EDGE_ON, SEEN_SQUARELY = 0.05, 0.3  # cosine of the reference's view of a surface point: untrusted, trusted


def _to_grid(points: Tensor, h: int, w: int) -> Tensor:
    """``... x 2`` pixel positions in an ``h x w`` image -> ``grid_sample`` coordinates (``align_corners=False``)."""
    return torch.stack([points[..., 0] / w * 2 - 1, points[..., 1] / h * 2 - 1], -1)


def reference_view(vertices: Tensor, faces: Tensor, camera: Camera) -> Tensor:
    """``N x 3`` vertices (world frame of ``camera``) -> ``N``: the cosine between each vertex normal and its line of
    sight (1: seen squarely, 0: edge-on, < 0: facing away)."""
    points = camera.world_to_camera(vertices[None])
    normals = vertex_normals(points, faces)
    return (normals * (-points / points.norm(dim=-1, keepdim=True).clamp_min(1e-9))).sum(dim=-1)[0]


def chin_underside(vertices: Tensor, faces: Tensor, camera: Camera, landmarks: Tensor) -> Tensor:
    """How far the warp may not trust each reference vertex's own flow (``N``, in [0, 1]): the chin's underside,
    which the reference shows edge-on in a few pixels that a turning head would stretch into a seam.

    ``vertices`` ``N x 3`` and ``landmarks`` ``68 x 3`` (iBUG) are the reference mesh's, in the world frame of
    ``camera``. A vertex counts where the reference sees it edge-on or not at all (cosine of its normal to the line
    of sight below :data:`SEEN_SQUARELY`, fully from :data:`SEEN_EDGE_ON`), below the lower lip (landmark 57),
    between the jaw points 6 and 10 across the face and within that width of the chin (landmark 8), with soft
    edges of a tenth of the width: the jaw line beside it, whose outline carries a head turn, keeps its flow."""
    points = camera.world_to_camera(vertices[None])[0]
    marks = camera.world_to_camera(landmarks[None])[0]
    edge_on = ((SEEN_SQUARELY - reference_view(vertices, faces, camera)) / (SEEN_SQUARELY - SEEN_EDGE_ON)).clamp(0, 1)
    across = marks[45] - marks[36]
    across = across / across.norm()
    down = marks[8] - marks[27]
    down = down - across * (across @ down)
    down = down / down.norm()
    x, y = (points - marks[8]) @ across, (points - marks[57]) @ down
    left, right = float((marks[6] - marks[8]) @ across), float((marks[10] - marks[8]) @ across)
    width = right - left
    soft = 0.1 * width
    near = ((width - (points - marks[8]).norm(dim=-1)) / soft).clamp(0, 1)  # not the neck's sides or back
    inside = ((x - left) / soft).clamp(0, 1) * ((right - x) / soft).clamp(0, 1) * (y / soft).clamp(0, 1) * near
    return edge_on * inside


def _similarity_flow(pix: Tensor, flow: Tensor, weight: Tensor) -> Tensor:
    """The weighted least-squares similarity transform ``q = [[a, -b], [b, a]] p + t`` taking ``pix`` to
    ``pix + flow`` (``B x H x W x 2`` pixels, ``B x H x W`` weights), as a flow ``B x H x W x 2``; zero
    flow where a frame has (almost) no weight."""
    p = pix.expand_as(flow).reshape(flow.shape[0], -1, 2)
    q = p + flow.reshape_as(p)
    w = weight.reshape(flow.shape[0], -1, 1)
    one, zero = torch.ones_like(p[..., :1]), torch.zeros_like(p[..., :1])
    rows_x = torch.cat([p[..., :1], -p[..., 1:], one, zero], -1)  # q_x = a p_x - b p_y + t_x
    rows_y = torch.cat([p[..., 1:], p[..., :1], zero, one], -1)  # q_y = b p_x + a p_y + t_y
    design = torch.cat([rows_x, rows_y], 1)
    target = torch.cat([q[..., :1], q[..., 1:]], 1)
    ww = torch.cat([w, w], 1)
    normal = design.transpose(1, 2) @ (ww * design) + 1e-6 * torch.eye(4, dtype=p.dtype, device=p.device)
    a, b, tx, ty = torch.linalg.solve(normal, design.transpose(1, 2) @ (ww * target))[..., 0].unbind(-1)
    px, py = pix[..., 0], pix[..., 1]
    view = (-1, 1, 1)
    rigid = torch.stack([a.view(view) * px - b.view(view) * py + tx.view(view) - px,
                         b.view(view) * px + a.view(view) * py + ty.view(view) - py], -1)
    enough = (weight.flatten(1).sum(1) > 50).to(flow.dtype).view(view + (1,))
    return rigid * enough


class GeometricGenerator:
    """Reenact a reference image with a posed personalized mesh.

    Args:
        flow_sigma: width (fraction of the image size) of the flow extension around the head.
        background_weight: how strongly the far background is pinned to zero flow.
        feather: width (fraction of the image size) of the blend from surface flow to extended flow.
        rigid_reach: how far (fraction of the image size) beyond the head its similarity motion carries.
        work_size: the longer side at which the correspondence is computed (the output keeps its size).
    """

    name = "geometric"
    carry_frames = 0  # every frame is rendered on its own: nothing to carry between calls

    def __init__(self, flow_sigma: float = 0.08, background_weight: float = 0.02, feather: float = 0.02,
                 rigid_reach: float = 0.2, work_size: int = 256) -> None:
        self.flow_sigma, self.background_weight = flow_sigma, background_weight
        self.feather, self.rigid_reach, self.work_size = feather, rigid_reach, work_size

    def describe(self) -> dict:
        """The generator and its settings (it has no weights)."""
        return {"generator": self.name, "flow_sigma": self.flow_sigma, "background_weight": self.background_weight,
                "feather": self.feather, "rigid_reach": self.rigid_reach, "work_size": self.work_size}

    @torch.no_grad()
    def __call__(self, inputs: GeneratorInputs, progress: bool = False, chunk: int = 8) -> GeneratorOutput:
        """Warp the reference along the driven meshes, ``chunk`` frames at a time (see the module docstring)."""
        x = inputs
        reference, faces = x.reference, x.faces
        full = reference.shape[-2:]
        if (x.camera.height, x.camera.width) != tuple(full):
            raise ValueError(f"camera is {x.camera.height}x{x.camera.width}, reference image {full[0]}x{full[1]}")
        factor = min(1.0, self.work_size / max(full))
        h, w = max(1, round(full[0] * factor)), max(1, round(full[1] * factor))
        camera = x.camera.scaled(h, w)
        up = (lambda t: t) if (h, w) == tuple(full) else (
            lambda t: F.interpolate(t, size=full, mode="bilinear", align_corners=False))
        device = reference.device
        ref_uv = camera.project(x.reference_vertices[None])[0]  # N x 2 pixels in the reference
        chin = None if x.reference_landmarks is None else chin_underside(x.reference_vertices, faces, camera,
                                                                          x.reference_landmarks)
        pix = torch.stack(torch.meshgrid(torch.arange(h, device=device) + 0.5, torch.arange(w, device=device) + 0.5,
                                         indexing="ij")[::-1], -1)
        bounds = None if x.reference_bounds is None else tuple(v * factor for v in x.reference_bounds)
        eyes = ref_lips = irises = None
        if x.reference_landmarks is not None:
            ref_uv_marks = x.camera.project(x.reference_landmarks[None])[0]
            eyes = eye_maps(reference, ref_uv_marks)
            if x.gaze is not None:  # a still gaze still slides the irises by a turning head's parallax
                marks = ref_uv_marks if x.reference_marks is None else x.reference_marks.to(ref_uv_marks)
                irises = iris_maps(reference, marks)
            ref_lips = camera.project(x.reference_landmarks[None, INNER_LIPS])[0]  # 8 x 2 work pixels
        frames, normals = [], []
        starts = range(0, x.num_frames, chunk)
        for s in tqdm(starts, desc="generate: geometric", disable=not progress):
            verts = x.driving_vertices[s:s + chunk]
            b = verts.shape[0]
            r = render_normal_depth(verts, faces, camera.expand(b))
            normals.append(up(normal_to_image(r.normal)).cpu())
            mask = r.mask  # B x 1 x H x W
            uv = interpolate(ref_uv[None], r.fragments, faces)  # B x H x W x 2
            flow = (uv - pix) * mask.permute(0, 2, 3, 1)
            rigid = torch.zeros_like(flow)
            if x.head_weight is not None:
                hw = interpolate(x.head_weight[None, :, None].to(flow.dtype), r.fragments, faces)[..., 0] * mask[:, 0]
                reach = (2 * smooth(hw[:, None], self.rigid_reach * max(h, w))).clamp(0, 1).permute(0, 2, 3, 1)
                rigid = _similarity_flow(pix, flow, hw) * reach
            trust = mask
            if chin is not None:  # the chin's underside takes the extended flow, not its own (a seam otherwise)
                under = interpolate(chin[None, :, None].to(flow.dtype), r.fragments, faces)[..., 0]
                trust = mask * (1 - under)[:, None]
            work_grid = self._grid(pix, flow, rigid, mask, bounds, trust)
            grid = up(work_grid.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            out = F.grid_sample(reference[None].expand(b, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
            landmarks = x.driving_landmarks[s:s + chunk]
            if irises is not None:
                slide = iris_slide(x.gaze[s:s + chunk], landmarks, x.reference_landmarks, x.camera, irises)
                out = move_irises(out, grid, irises, slide, reference)
            if eyes is not None:
                ref_marks = x.reference_landmarks
                out = close_eyelids(out, grid, eyes, eye_closure(landmarks, ref_marks), work_grid,
                                    squeeze=eye_squeeze(landmarks, ref_marks))
            if ref_lips is not None:
                view = camera.expand(b)
                scale, rotation, shift = similarity_transform(landmarks[:, RIGID], x.reference_landmarks[RIGID])
                still = scale[:, None, None] * landmarks[:, INNER_LIPS] @ rotation.transpose(1, 2) + shift[:, None]
                out = self._mouth(out, reference, pix, view.project(landmarks[:, INNER_LIPS]), ref_lips,
                                  view.project(still), up)
            frames.append(out.clamp(0, 1).cpu())
        return GeneratorOutput(torch.cat(frames), torch.cat(normals))

    def _grid(self, pix: Tensor, flow: Tensor, rigid: Tensor, mask: Tensor,
              bounds: tuple[float, ...] | None = None, trust: Tensor | None = None) -> Tensor:
        """``B x H x W x 2`` where each pixel reads the reference (``grid_sample`` coordinates): ``flow`` inside the
        silhouette and its smooth extension outside it; reads stay inside ``bounds`` (``x0, y0, x1, y1`` pixels,
        the part of the reference that shows the photo), so the crop's padding is never pulled into it.
        ``trust`` (``B x 1 x H x W`` in [0, 1], default ``mask``): how far a silhouette pixel's own flow holds
        (:func:`chin_underside`: not where the reference shows the surface edge-on)."""
        mask = mask if trust is None else trust
        h, w = mask.shape[-2:]
        sigma = self.flow_sigma * max(h, w)
        num = smooth(((flow - rigid) * mask.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), sigma)
        den = smooth(mask, sigma) + self.background_weight
        extended = rigid + (num / den).permute(0, 2, 3, 1)
        # Inside the silhouette the exact surface flow; across its border a smooth blend into the
        # extended flow, so hair and shoulders outside the mesh do not tear away from the face.
        feather = max(1.0, self.feather * max(h, w))
        inner = -max_pool(-mask, int(feather))  # erode
        soft = gaussian_blur(inner, feather / 2).clamp(0, 1).permute(0, 2, 3, 1) * mask.permute(0, 2, 3, 1)
        flow = soft * flow + (1 - soft) * extended
        src = pix + flow  # where each output pixel reads the reference
        if bounds is not None:  # between the centres of the first and last pixels that show some of the photo
            x0, y0, x1, y1 = (float(v) for v in bounds)
            lo_x, lo_y = math.floor(x0) + 0.5, math.floor(y0) + 0.5
            src = torch.stack([src[..., 0].clamp(lo_x, max(lo_x, math.ceil(x1) - 0.5)),
                               src[..., 1].clamp(lo_y, max(lo_y, math.ceil(y1) - 0.5))], -1)
        return _to_grid(src, h, w)

    @staticmethod
    def _mouth(frames: Tensor, reference: Tensor, pix: Tensor, lips: Tensor, ref_lips: Tensor, still_lips: Tensor,
               up: Callable[[Tensor], Tensor]) -> Tensor:
        """Draw the interior of mouths opened wider than the reference's (:mod:`expgen.generators.mouth`), computed
        at the work resolution of ``pix`` (``lips`` ``B x 8 x 2``, ``ref_lips`` ``8 x 2``, ``still_lips`` the driven
        lips with the head's motion undone, ``B x 8 x 2``, all in its pixels)."""
        read, weights, depth = mouth_interior(pix, lips, ref_lips, still_lips)
        if not bool((weights > 0).any()):
            return frames
        grid = up(_to_grid(read, *pix.shape[:2]).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        interior = F.grid_sample(reference[None].expand(len(frames), -1, -1, -1), grid, mode="bilinear",
                                 padding_mode="border", align_corners=False)
        return paint_mouth(frames, interior, up(weights), up(depth[:, None])[:, 0])
