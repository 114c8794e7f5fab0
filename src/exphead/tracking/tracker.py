"""The SMPL-X stage of the fit (Sec. 3.1.2, first step): β, ψ_i, ω_i, head rotation and
translation per frame, fitted to 2D landmarks over a whole video (or one image) with temporal
smoothness.

The camera is a fixed pinhole (focal length from ``fov_deg``, principal point at the image
centre) looking along world -z; the head's placement is carried by the per-frame translation, so
the camera's extrinsics stay the identity rotation of :meth:`exphead.camera.Camera.portrait`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from exphead.camera import Camera
from exphead.head_model import HeadModel, HeadParams, split_head_rotation
from exphead.io_utils import atomic_path

logger = logging.getLogger(__name__)


@dataclass
class TrackerConfig:
    """Settings of :func:`track_landmarks` (loss weights are relative to the landmark term).

    The fit runs in two stages: a rigid stage (head rotation and translation only) of
    :attr:`rigid_steps` = ``rigid_fraction * steps`` steps, then ``steps`` steps on every variable.

    Attributes:
        steps: steps of the full stage.
        rigid_fraction: steps of the rigid stage, as a share of ``steps``.
        num_betas: shape coefficients fitted (landmarks constrain no more).
        num_expression: expression coefficients fitted.
        fov_deg: vertical field of view of the tracking camera, degrees.
        lr: Adam's learning rate (cosine-annealed to 5% of it in each stage).
        contour_weight: weight of iBUG 0-16, which follow the silhouette while the model's contour is static.
        eye_weight: weight of the eye landmarks (iBUG 36-47): their few pixels carry the blinks.
        brow_weight: weight of the eyebrow landmarks (iBUG 17-26).
        mouth_weight: weight of the inner-lip landmarks (iBUG 60-67), which carry the mouth's opening.
        shape_prior: weight of the β prior.
        expression_prior: weight of L_exp (Eq. 7).
        jaw_prior: weight of the jaw's sideways and twisting rotation.
        smoothness: weight of the first differences of per-frame pose.
        expression_smoothness: weight of the first differences of per-frame expression and jaw (blinks last a few
            frames: a large weight flattens them).
        refine_steps: Gauss-Newton steps on ψ and the jaw after Adam (each frame's least-squares optimum under the
            priors, which Adam approaches only slowly: blinks and brows then reach their full range).
        refine_pose: the Gauss-Newton steps refine head rotation and translation too (Adam leaves a turning head
            short of its turn).
        show_progress: one progress bar per stage.
    """

    steps: int = 300
    rigid_fraction: float = 1 / 3
    num_betas: int = 50
    num_expression: int = 50
    fov_deg: float = 14.0
    lr: float = 0.03
    contour_weight: float = 0.3
    eye_weight: float = 3.0
    brow_weight: float = 2.0
    mouth_weight: float = 10.0
    shape_prior: float = 2e-3
    expression_prior: float = 3e-5
    jaw_prior: float = 1e-2
    smoothness: float = 0.5
    expression_smoothness: float = 0.005
    refine_steps: int = 3
    refine_pose: bool = True
    show_progress: bool = False

    def __post_init__(self) -> None:
        if self.steps < 0 or not 0 <= self.rigid_fraction <= 10:
            raise ValueError(f"tracker steps must be >= 0 and rigid_fraction in [0, 10], got {self.steps}, "
                             f"{self.rigid_fraction}")

    @property
    def rigid_steps(self) -> int:
        """Steps of the rigid stage."""
        return int(self.steps * self.rigid_fraction + 1e-6)


@dataclass
class TrackingResult:
    """Per-frame SMPL-X parameters, the camera and the fit quality.

    Attributes:
        params: ``F`` frames of :class:`HeadParams` (β shared by all frames).
        camera: one camera (batch 1) for every frame.
        landmarks: ``F x 68 x 2`` target landmarks (NaN where missing); ``valid``: ``F`` bool.
        error_px: ``F`` mean landmark error in pixels (NaN for frames without landmarks).
    """

    params: HeadParams
    camera: Camera
    landmarks: Tensor
    valid: Tensor
    error_px: Tensor

    @property
    def head_rotation(self) -> Tensor:
        """``F x 3`` axis-angle head rotation r (neck + head, see :func:`split_head_rotation`)."""
        return self.params.neck_pose + self.params.head_pose

    def save(self, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
        """Write the result as one safetensors file, atomically (``metadata``: extra strings kept with it)."""
        from safetensors.torch import save_file

        tensors = {**self.params.to_tensors(), **self.camera.to_tensors(), "landmarks": self.landmarks.contiguous(),
                   "valid": self.valid.to(torch.uint8).contiguous(), "error_px": self.error_px.contiguous()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={**self.camera.size_metadata(), **(metadata or {})})
        return Path(path)

    @staticmethod
    def load(path: str | os.PathLike) -> tuple[TrackingResult, dict[str, str]]:
        """Inverse of :meth:`save`: the result and its metadata."""
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
        camera = Camera.from_tensors(t, meta["camera.height"], meta["camera.width"])
        result = TrackingResult(HeadParams.from_tensors(t), camera, t["landmarks"], t["valid"].bool(), t["error_px"])
        return result, meta


def _initial_translation(model: HeadModel, camera: Camera, lm2d: Tensor, valid: Tensor) -> Tensor:
    """Place the neutral head so its landmarks' centroid and spread match the detections (``F x 3``)."""
    neutral = model.posed_landmarks(HeadParams.zeros(1, model.num_betas, model.num_expression,
                                                     device=lm2d.device))[0]
    cam = neutral @ camera.R[0].T
    f = camera.K[0, 0, 0]
    c = camera.K[0, :2, 2]
    spread3 = (cam[:, :2] - cam[:, :2].mean(0)).norm(dim=-1).mean()
    centre2 = torch.nan_to_num(lm2d).mean(1)
    spread2 = (torch.nan_to_num(lm2d) - centre2[:, None]).norm(dim=-1).mean(1)
    fill = valid.nonzero()[0, 0]
    centre2 = torch.where(valid[:, None], centre2, centre2[fill])
    spread2 = torch.where(valid, spread2, spread2[fill])
    depth = f * spread3 / spread2
    target = torch.cat([(centre2 - c) * depth[:, None] / f, depth[:, None]], 1)  # camera space
    shift_cam = target - cam.mean(0) - camera.t[0]
    return shift_cam @ camera.R[0]  # back to world (R orthonormal)


def track_landmarks(model: HeadModel, landmarks: Tensor | np.ndarray, height: int, width: int,
                    config: TrackerConfig | None = None, valid: Tensor | np.ndarray | None = None,
                    prefix: HeadParams | None = None) -> TrackingResult:
    """Fit SMPL-X parameters to ``F x 68 x 2`` pixel landmarks (iBUG-68 order) of ``H x W`` frames.

    Frames marked invalid (or with NaN landmarks) carry no landmark loss; the temporal smoothness
    term fills in their parameters. ``prefix``: the tracked parameters of the ``K`` frames just before
    these (a long video tracked in chunks): they are held fixed, the smoothness terms run across them into
    the new frames, and β is theirs. Runs on the head model's device.
    """
    cfg = config or TrackerConfig()
    device = model.v_template.device
    lm2d = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32).to(device)
    if lm2d.dim() != 3 or lm2d.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be F x 68 x 2, got {tuple(lm2d.shape)}")
    finite = torch.isfinite(lm2d).all(-1).all(-1)
    valid = finite if valid is None else torch.as_tensor(np.asarray(valid)).to(device).bool() & finite
    if not valid.any():
        raise ValueError("no frame has landmarks to track")
    n_frames = lm2d.shape[0]
    camera = Camera.portrait(1, height, width, fov_deg=cfg.fov_deg, distance=0.0, center=(0.0, 0.0, 0.0),
                             device=device)
    kb, ke = min(cfg.num_betas, model.num_betas), min(cfg.num_expression, model.num_expression)
    fixed = _prefix_tensors(prefix, kb, ke, device)

    transl = _initial_translation(model, camera, lm2d, valid).clone().requires_grad_(True)
    betas = fixed["betas"] if fixed else torch.zeros(1, kb, device=device, requires_grad=True)

    def start(name: str, width: int) -> Tensor:  # zeros, or a chunk's predecessor's last values
        init = fixed[name][-1:].expand(n_frames, -1) if fixed else torch.zeros(n_frames, width, device=device)
        return init.clone().requires_grad_(True)

    rotation, expression, jaw = start("rotation", 3), start("expression", ke), start("jaw", 3)
    target = torch.nan_to_num(lm2d)
    scale = (target - target.mean(1, keepdim=True)).norm(dim=-1).mean(1).clamp_min(1.0)  # face size, px
    weight = torch.ones(68, device=device)
    weight[:17], weight[17:27], weight[36:48] = cfg.contour_weight, cfg.brow_weight, cfg.eye_weight
    weight[60:68] = cfg.mouth_weight
    frame_w = valid.float()

    def params() -> HeadParams:
        p = HeadParams.zeros(n_frames, model.num_betas, model.num_expression, device=device)
        p.betas = torch.cat([betas, betas.new_zeros(1, model.num_betas - kb)], 1).expand(n_frames, -1)
        p.expression = torch.cat([expression, expression.new_zeros(n_frames, model.num_expression - ke)], 1)
        p.neck_pose, p.head_pose = split_head_rotation(rotation)
        p.jaw_pose, p.transl = jaw, transl
        return p

    def with_prefix(name: str, x: Tensor) -> Tensor:
        return torch.cat([fixed[name], x]) if fixed else x

    def roughness(*pairs: tuple[str, Tensor]) -> Tensor | float:
        seqs = [with_prefix(name, x) for name, x in pairs]
        return sum(((x[1:] - x[:-1]) ** 2).sum(-1).mean() for x in seqs) if seqs[0].shape[0] > 1 else 0.0

    def loss_fn(full: bool) -> tuple[Tensor, Tensor]:
        p = params()
        uv = camera.expand(n_frames).project(model.posed_landmarks(p))
        err = ((uv - target).norm(dim=-1) / scale[:, None])  # F x 68, relative to face size
        data = (frame_w[:, None] * weight * err**2).sum() / (frame_w.sum() * weight.sum())
        loss = data + cfg.smoothness * roughness(("rotation", rotation), ("transl", transl * 10))
        if full:
            loss = loss + cfg.shape_prior * (betas**2).mean() + cfg.expression_prior * (expression**2).sum(-1).mean()
            loss = loss + cfg.jaw_prior * (jaw[:, 1:] ** 2).sum(-1).mean() + 10 * torch.relu(-jaw[:, 0]).pow(2).mean()
            loss = loss + cfg.expression_smoothness * roughness(("expression", expression), ("jaw", jaw))
        return loss, (uv - target).norm(dim=-1).mean(-1)

    free_betas = [] if fixed else [betas]
    stages = [(False, cfg.rigid_steps, [rotation, transl]),
              (True, cfg.steps, [rotation, transl, *free_betas, expression, jaw])]
    for full, steps, variables in stages:
        opt = torch.optim.Adam(variables, lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=cfg.lr * 0.05)
        bar = tqdm(range(steps), desc="track: " + ("full" if full else "rigid"), disable=not cfg.show_progress)
        for _ in bar:
            opt.zero_grad(set_to_none=True)
            loss, _ = loss_fn(full)
            loss.backward()
            opt.step()
            sched.step()
            if cfg.show_progress:
                bar.set_postfix(loss=f"{loss.item():.2e}")
    with torch.no_grad():
        for _ in range(cfg.refine_steps):  # Gauss-Newton on ψ, the jaw (and pose): Adam leaves them short of the data
            d_expr, d_jaw, d_rot, d_transl = _refine_step(model, camera, params(), target, weight, scale, valid, ke,
                                                          cfg)
            expression += d_expr
            jaw += d_jaw
            jaw[:, 0].clamp_(min=0.0)
            rotation += d_rot
            transl += d_transl
        _, err_px = loss_fn(True)
        err_px = torch.where(valid, err_px, torch.full_like(err_px, float("nan")))
        final = params().map(lambda v: v.detach().clone())
    logger.info("tracked %d frames: mean landmark error %.2f px", n_frames, float(err_px.nanmean()))
    return TrackingResult(final, camera, lm2d, valid, err_px)


def _refine_step(model: HeadModel, camera: Camera, params: HeadParams, target: Tensor, weight: Tensor,
                 scale: Tensor, valid: Tensor, ke: int, cfg: TrackerConfig, eps: float = 1e-3
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One Gauss-Newton step of every frame's ψ (first ``ke``), jaw rotation and, with ``cfg.refine_pose``, head
    rotation and translation: near the optimum the posed landmarks are close to linear in these, so a few steps
    reach the per-frame least-squares optimum that Adam approaches only slowly (after 100 Adam steps the tracked
    head turns were 46 % (pitch) and 58 % (yaw) of the true ones on exact model landmarks). Jacobians by forward
    differences, all frames and columns in one batch; the temporal terms are left out (per frame).

    Returns the updates ``F x ke``, ``F x 3`` (jaw), ``F x 3`` (rotation), ``F x 3`` (translation); zero for frames
    without landmarks, and for the pose without ``refine_pose``.
    """
    f, pose = params.batch_size, 6 if cfg.refine_pose else 0
    k = ke + 3 + pose
    p = params.map(lambda v: v.detach().repeat_interleave(k + 1, 0))
    steps = torch.eye(k, device=target.device) * eps  # one column per variable: ψ_c, jaw, rotation, translation
    bump = torch.cat([torch.zeros(1, k, device=target.device), steps]).repeat(f, 1)
    p.expression = p.expression.clone()
    p.expression[:, :ke] += bump[:, :ke]
    p.jaw_pose = p.jaw_pose + bump[:, ke:ke + 3]
    if pose:
        neck, head = split_head_rotation(bump[:, ke + 3:ke + 6])  # linear: split(r + d) = split(r) + split(d)
        p.neck_pose, p.head_pose, p.transl = p.neck_pose + neck, p.head_pose + head, p.transl + bump[:, ke + 6:]
    uv = camera.expand(p.batch_size).project(model.posed_landmarks(p)).view(f, k + 1, 136)
    jac = ((uv[:, 1:] - uv[:, :1]) / eps).transpose(1, 2)  # F x 136 x k
    residual = (target.reshape(f, 136) - uv[:, 0]) * valid[:, None]
    w = (weight[None] / scale[:, None] ** 2).repeat_interleave(2, 1) * valid[:, None]  # F x 136
    # the loss's priors on the data term's scale (the loss averages the data over the landmark weights); the pose
    # has no prior, only a small Levenberg damping of the step
    damping = torch.full((k,), cfg.expression_prior, device=target.device)
    damping[ke:ke + 3] = torch.tensor([0.0, cfg.jaw_prior, cfg.jaw_prior])  # the jaw opens freely, not sideways
    damping[ke + 3:] = 1e-6
    damping = (damping * weight.sum()).clamp_min(1e-8)
    normal = jac.transpose(1, 2) @ (w[..., None] * jac) + torch.diag_embed(damping.expand(f, -1))
    current = torch.cat([params.expression[:, :ke], params.jaw_pose], 1).detach()
    current = torch.cat([current, current.new_zeros(f, pose)], 1)  # the pose's damping holds the step, not the pose
    rhs = (jac.transpose(1, 2) @ (w * residual)[..., None])[..., 0] - damping * current
    delta = torch.linalg.solve(normal, rhs)
    zeros = delta.new_zeros(f, 3)
    rot, transl = (delta[:, ke + 3:ke + 6], delta[:, ke + 6:]) if pose else (zeros, zeros)
    return delta[:, :ke], delta[:, ke:ke + 3], rot, transl


def smooth_tracking(params: HeadParams, pose_sigma: float = 0.0, expression_sigma: float = 0.0) -> HeadParams:
    """Zero-phase Gaussian smoothing of ``F`` frames of tracked parameters over time (no lag: a fast mouth is
    not delayed, only flattened by a narrow ``expression_sigma``): head rotation and translation, and the eyes'
    gaze, with ``pose_sigma`` frames, ψ and the jaw with ``expression_sigma`` (0: untouched). Ends are padded by
    replication; β and the other joints are kept."""
    out = params.map(lambda v: v.clone())
    groups = ((pose_sigma, ("neck_pose", "head_pose", "transl", "leye_pose", "reye_pose")),
              (expression_sigma, ("expression", "jaw_pose")))
    for sigma, names in groups:
        if sigma <= 0 or params.batch_size < 2:
            continue
        radius = max(1, int(3 * sigma))
        t = torch.arange(-radius, radius + 1, dtype=params.expression.dtype, device=params.expression.device)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        kernel = (kernel / kernel.sum()).view(1, 1, -1)
        for name in names:
            x = getattr(params, name).T[:, None]  # C x 1 x F
            x = torch.nn.functional.pad(x, (radius, radius), mode="replicate")
            setattr(out, name, torch.nn.functional.conv1d(x, kernel)[:, 0].T.contiguous())
    return out


def _prefix_tensors(prefix: HeadParams | None, kb: int, ke: int, device: torch.device) -> dict[str, Tensor]:
    """The fixed variables of ``prefix`` frames, in the tracker's parametrisation (empty without a prefix)."""
    if prefix is None or prefix.batch_size == 0:
        return {}
    p = prefix.map(lambda v: v.detach().to(device))
    return {"betas": p.betas[:1, :kb], "rotation": p.neck_pose + p.head_pose, "transl": p.transl * 10,
            "expression": p.expression[:, :ke], "jaw": p.jaw_pose}
