"""Cross-identity expression transfer (paper Sec. 3.2, 3.3): a target head + a driver's ψ, ω and pose ->
per-frame detailed canonical and posed dense meshes of the target, ready for rendering.

* :func:`exptransfer.retarget.driving_params` — the driver's parameters on the target identity;
* :func:`transfer` — Δf(i) from the frozen transfer module (or none, for SMPL-X expressions alone) and LBS
  posing, ``frame_chunk`` frames at a time;
* :func:`load_transfer` / :func:`freeze_transfer` / :func:`transfer_fingerprint` — the trained module, as
  inference and the generator's training clips use it.
"""

from __future__ import annotations

import hashlib
import json
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
        delta_f: ``F x N_s x 3`` predicted Δf(i), exactly zero off the face; None without a module.
        canonical: ``F x N_s x 3`` detailed canonical vertices Ṽ^s(i) = V_neutral + B(E ψ_i) + Δf(i) (Eq. 3).
        vertices: ``F x N_s x 3`` the same posed with the driver's pose and jaw by LBS (Eq. 4).
        landmarks: ``F x 68 x 3`` posed iBUG-68 landmarks.
        params: the SMPL-X parameters used: target β, driver ψ, ω and pose.
        faces: ``M x 3`` dense faces of the head model.
    """

    delta_f: Tensor | None
    canonical: Tensor
    vertices: Tensor
    landmarks: Tensor
    params: HeadParams
    faces: Tensor


def load_transfer(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ExpressionTransfer:
    """Load a transfer module from a ``save_pretrained`` folder or a ``TransferModule`` Lightning checkpoint.

    Raises:
        FileNotFoundError: nothing at ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"transfer module not found: {path} (a TransferModule .ckpt, or a folder with "
                                "transfer.json + transfer.safetensors written by ExpressionTransfer.save_pretrained)")
    if path.is_file() and path.suffix == ".ckpt":
        from .module import TransferModule

        return TransferModule.load_from_checkpoint(path, map_location=map_location, weights_only=True).net
    return ExpressionTransfer.from_pretrained(path, map_location)


def freeze_transfer(module: ExpressionTransfer) -> ExpressionTransfer:
    """Put the transfer module in eval mode with ``requires_grad = False`` (in place), as during generator
    training and at inference."""
    module.eval()
    module.requires_grad_(False)
    return module


def transfer_fingerprint(module: ExpressionTransfer) -> str:
    """SHA-256 (16 hex digits) of the module's config and weights: what records which weights drove a result."""
    digest = hashlib.sha256(json.dumps(module.config, sort_keys=True).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def temporal_context(module: ExpressionTransfer) -> int:
    """Frames each side that one code q_i of the encoder E sees (its temporal receptive field)."""
    return sum(block.kernel // 2 for block in module.encoder.blocks)


def _as_params(driving: HeadParams | tuple[Tensor, Tensor], model: HeadModel) -> HeadParams:
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
    return params


@torch.no_grad()
def transfer(target_head: PersonalizedHead | Tensor, driving: HeadParams | tuple[Tensor, Tensor],
             module: ExpressionTransfer | None = None, model: HeadModel | None = None, betas: Tensor | None = None,
             frame_chunk: int = 32) -> TransferResult:
    """Drive the target identity with a driver's expression and pose through the transfer module.

    Args:
        target_head: the fitted target (its β, Δg and V_neutral are used), or its ``N_s x 3`` V_neutral.
        driving: the driver's ``F``-frame :class:`HeadParams` (its ψ, ω and pose are used, its β is
            replaced by the target's; see :func:`driving_params`), or ``(ψ F x E, ω F x 3)`` with no head pose.
        module: the trained transfer module; None drives the SMPL-X expression alone (Δf = 0).
        model: the dense head model; taken from ``target_head`` when it is a :class:`PersonalizedHead`.
        betas: the target β (``num_betas``) when ``target_head`` is a tensor: it separates the personal
            detail from the parametric shape (see :func:`identity_geometry`) and places the joints used for
            posing. Default zeros.
        frame_chunk: frames posed at once (memory bound).

    Raises:
        ValueError: a tensor target without ``model``, or mismatched shapes.
    """
    if isinstance(target_head, PersonalizedHead):
        head = target_head
    else:
        if model is None:
            raise ValueError("transfer() with a V_neutral tensor needs model=HeadModel(...)")
        betas = torch.zeros(model.num_betas, device=target_head.device) if betas is None else betas
        rest = HeadParams.zeros(1, model.num_betas, model.num_expression, device=target_head.device)
        rest.betas = betas.reshape(1, -1).to(rest.betas)
        # Δg chosen so that B(V(β, ψ = 0)) + Δg = V_neutral
        delta_g = target_head - model.canonical(rest)[0]
        head = PersonalizedHead(model, rest, delta_g, delta_g.new_zeros(1, 0, 3), None)
    model = head.model
    device = model.face_mask.device
    params = _as_params(driving, model).map(lambda v: v.to(device, torch.float32))
    params.betas = head.betas.to(params.expression).expand(params.batch_size, -1)

    # 1. Δf(i) on the face vertices, zero elsewhere
    delta_f = None
    if module is not None:
        module_device = next(module.parameters()).device
        geometry = identity_geometry(model, head.neutral().to(device), params.betas[0]).to(module_device)
        face_df = module(geometry.unsqueeze(), params.expression[None].to(module_device),
                         params.jaw_pose[None].to(module_device))[0]
        face_index = torch.nonzero(model.face_mask > 0).squeeze(1)
        delta_f = params.expression.new_zeros(params.batch_size, model.num_vertices, 3)
        delta_f[:, face_index] = face_df.to(device)

    # 2. Pose by LBS (Eqs. 3-4)
    out = head.pose(params, delta_f, frame_chunk)
    return TransferResult(delta_f, out.canonical, out.vertices, out.landmarks, params, model.faces)
