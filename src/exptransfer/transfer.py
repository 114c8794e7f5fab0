"""Cross-identity expression transfer (paper Sec. 3.2, 3.3): a target head + a driver's ψ, ω and pose ->
per-frame detailed canonical and posed dense meshes of the target, ready for rendering."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from exphead.head_model import HeadModel, HeadParams
from exphead.personalized import PersonalizedHead

from .identity import identity_geometry
from .network import ExpressionTransfer


@dataclass
class TransferResult:
    """Output of :func:`transfer` for ``F`` driving frames (canonical world frame of :mod:`exphead.camera`, metres).

    Attributes:
        delta_f: ``F x N_s x 3`` predicted Δf(i), exactly zero off the face.
        canonical: ``F x N_s x 3`` detailed canonical vertices Ṽ^s(i) = V_neutral + B(E ψ_i) + Δf(i) (Eq. 3).
        vertices: ``F x N_s x 3`` the same posed with the driver's pose and jaw by LBS (Eq. 4).
        landmarks: ``F x 68 x 3`` posed iBUG-68 landmarks.
        params: the SMPL-X parameters used: target β, driver ψ, ω and pose.
        faces: ``M x 3`` dense faces of the head model.
    """

    delta_f: Tensor
    canonical: Tensor
    vertices: Tensor
    landmarks: Tensor
    params: HeadParams
    faces: Tensor


def load_transfer(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ExpressionTransfer:
    """Load a transfer module from a ``save_pretrained`` folder or a ``TransferModule`` Lightning checkpoint."""
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        from .module import TransferModule

        return TransferModule.load_from_checkpoint(path, map_location=map_location).net
    return ExpressionTransfer.from_pretrained(path, map_location)


def _driving_params(driving: HeadParams | tuple[Tensor, Tensor], betas: Tensor, model: HeadModel) -> HeadParams:
    if isinstance(driving, HeadParams):
        params = driving.map(lambda v: v)
    else:
        expression, jaw_pose = driving
        if expression.dim() != 2 or jaw_pose.shape != (expression.shape[0], 3):
            raise ValueError(f"driving (ψ, ω) must be F x E and F x 3, got {tuple(expression.shape)} and "
                             f"{tuple(jaw_pose.shape)}")
        params = HeadParams.zeros(expression.shape[0], model.num_betas, expression.shape[1], expression.dtype,
                                  expression.device)
        params.expression, params.jaw_pose = expression, jaw_pose
    if params.expression.shape[1] != model.num_expression:
        raise ValueError(f"driving ψ has {params.expression.shape[1]} coefficients, the head model "
                         f"{model.num_expression}")
    params.betas = betas.reshape(1, -1).to(params.expression).expand(params.batch_size, -1)
    return params


@torch.no_grad()
def transfer(target_head: PersonalizedHead | Tensor, driving: HeadParams | tuple[Tensor, Tensor],
             module: ExpressionTransfer, model: HeadModel | None = None, betas: Tensor | None = None,
             frame_chunk: int = 32) -> TransferResult:
    """Drive the target identity with a driver's expression and pose through the transfer module.

    Args:
        target_head: the fitted target (its β, Δg and V_neutral are used), or its ``N_s x 3`` V_neutral.
        driving: the driver's ``F``-frame :class:`HeadParams` (its ψ, ω and pose are used, its β is
            replaced by the target's), or ``(ψ F x E, ω F x 3)`` with no head pose.
        module: the trained transfer module.
        model: the dense head model; taken from ``target_head`` when it is a :class:`PersonalizedHead`.
        betas: the target β (``num_betas``) when ``target_head`` is a tensor: it separates the personal
            detail from the parametric shape (see :func:`identity_geometry`) and places the joints used for
            posing. Default zeros.
        frame_chunk: frames posed at once (memory bound).

    Raises:
        ValueError: a tensor target without ``model``, or mismatched shapes.
    """
    delta_g = None
    if isinstance(target_head, PersonalizedHead):
        model, neutral, betas = target_head.model, target_head.neutral(), target_head.betas
        delta_g = target_head.delta_g
    else:
        if model is None:
            raise ValueError("transfer() with a V_neutral tensor needs model=HeadModel(...)")
        neutral = target_head
        betas = torch.zeros(model.num_betas, device=neutral.device) if betas is None else betas
    device = model.face_mask.device
    module_device = next(module.parameters()).device
    params = _driving_params(driving, betas, model).map(lambda v: v.to(device, torch.float32))
    geometry = identity_geometry(model, neutral.to(device), params.betas[0]).to(module_device).unsqueeze()

    # 1. Δf(i) on the face vertices, zero elsewhere
    face_df = module(geometry, params.expression[None].to(module_device), params.jaw_pose[None].to(module_device))[0]
    face_index = torch.nonzero(model.face_mask > 0).squeeze(1)
    delta_f = neutral.new_zeros(params.batch_size, model.num_vertices, 3).to(device)
    delta_f[:, face_index] = face_df.to(device)

    # 2. Pose by LBS (Eqs. 3-4); for a bare V_neutral, Δg is chosen so that B(V(β, ψ = 0)) + Δg = V_neutral
    if delta_g is None:
        rest = HeadParams.zeros(1, model.num_betas, model.num_expression, device=device)
        rest.betas = params.betas[:1]
        delta_g = neutral.to(device) - model.canonical(rest)[0]
    outs = [model(params.map(lambda v, s=s: v[s:s + frame_chunk]), delta_g, delta_f[s:s + frame_chunk])
            for s in range(0, params.batch_size, frame_chunk)]
    return TransferResult(delta_f, torch.cat([o.canonical for o in outs]), torch.cat([o.vertices for o in outs]),
                          torch.cat([o.landmarks for o in outs]), params, model.faces)
