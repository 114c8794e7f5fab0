"""The detail fit (Sec. 3.1.2-3.1.3) as a LightningModule over the frames of one subject.

Variables: β, per-frame ψ_i, ω_i, head rotation and translation (initialised by the tracker),
the static field Δg on every dense vertex and the per-frame fields Δf(i) on the facial vertices
only (the region constraint of Sec. 3.1.3 holds by construction). Offsets are parametrised in
millimetres. Δf(i) lives in a sparse ``nn.Embedding`` updated with ``SparseAdam``, so a step
costs only the frames it renders and memory grows linearly in frames.

Loss: L_ldmk + L_normal + L_depth (Eqs. 5-6) + L_exp (Eq. 7) + L_dis + L_lap, plus the
disentanglement terms: a penalty on Δg inside the face ("mainly non-facial") and the
minimal-magnitude penalty on each Δf(i) that makes Δg carry the shared geometry.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from typing_extensions import override

from exphead.camera import Camera
from exphead.geometry import SparseOperator, uniform_laplacian, vertex_normals
from exphead.head_model import HeadModel, HeadParams, split_head_rotation
from exphead.render import render_normal_depth

from .losses import DetailLossWeights, align_depth, landmark_loss, laplacian_loss, masked_l1
from .targets import resolve_depth_alignment

MM = 1e-3


def static_prior(model: HeadModel, iterations: int = 30) -> Tensor:
    """``N_s`` weights in [0, 1] of the regions expected to carry static detail: the non-face region,
    with the face border smoothed by Laplacian diffusion so the Δg initialisation has no step there."""
    lap = uniform_laplacian(model.faces, model.num_vertices)
    w = (1 - model.face_mask)[None, :, None]
    for _ in range(iterations):
        w = w - 0.5 * torch.sparse.mm(lap, w[0])[None]
    return w[0, :, 0].clamp(0, 1) * (1 - model.face_mask)


class HeadFitModule(pl.LightningModule):
    """Joint optimisation of one subject's personalized head.

    Args:
        num_frames: frames ``F`` of the subject.
        init: tracker parameters (``F`` frames) to start from; zeros when None (or taken from the
            datamodule's ``tracking`` in :meth:`setup`).
        camera: the tracking camera (batch 1) at the targets' resolution.
        model_path, level: the :class:`HeadModel` (built here unless ``model`` is given; a child module whose
            buffers are not checkpointed).
        weights: loss weights; lr_detail (mm per step scale) and lr_params: Adam learning rates.
        static_init_mm: Δg starts at this many mm along the normal outside the face (Sec. 3.1.3 prior).
        depth_alignment: ``none`` for metric depth, ``shift`` / ``scale_shift`` for relative estimates, or
            ``auto``: resolved in :meth:`setup` from the datamodule's ``targets`` (``scale_shift`` for
            depth from an ONNX model, else ``none``; see :func:`~exphead.fitting.targets.resolve_depth_alignment`).
        image_size: ``(height, width)`` of the targets (the camera's, when ``camera`` is given).
        model: an existing head model to share (its path and level become the hyper-parameters).
    """

    def __init__(self, num_frames: int, init: HeadParams | None = None, camera: Camera | None = None,
                 model_path: str | None = None, level: int = 2, weights: DetailLossWeights | dict | None = None,
                 lr_detail: float = 0.1, lr_params: float = 3e-3, static_init_mm: float = 2.0,
                 depth_alignment: Literal["auto", "none", "shift", "scale_shift"] = "auto",
                 image_size: tuple[int, int] = (256, 256), model: HeadModel | None = None) -> None:
        super().__init__()
        if model is not None:
            model_path, level = model.model_path, model.level
        if camera is not None:
            image_size = (camera.height, camera.width)
        weights = asdict(weights) if isinstance(weights, DetailLossWeights) else dict(weights or {})
        image_size = tuple(int(v) for v in image_size)
        self.save_hyperparameters(ignore=["init", "camera", "model"])
        self.weights = DetailLossWeights(**weights)
        self.depth_alignment = depth_alignment
        self.automatic_optimization = False
        self.model = model or HeadModel(model_path, level)
        h, w = image_size
        camera = camera or Camera.portrait(1, h, w)
        device = self.model.v_template.device  # the model may come on a GPU already (exp-animate's)
        init = init or HeadParams.zeros(num_frames, self.model.num_betas, self.model.num_expression, device=device)
        self.register_buffer("cam_K", camera.K.clone())
        self.register_buffer("cam_R", camera.R.clone())
        self.register_buffer("cam_t", camera.t.clone())
        self.register_buffer("initialized", torch.tensor(False))
        self.betas = nn.Parameter(init.betas[:1].clone())
        self.expression = nn.Parameter(init.expression.clone())
        self.jaw = nn.Parameter(init.jaw_pose.clone())
        self.rotation = nn.Parameter((init.neck_pose + init.head_pose).clone())
        self.transl = nn.Parameter(init.transl.clone())
        self.register_buffer("transl_init", init.transl.clone())
        self.register_buffer("global_orient", init.global_orient[:1].clone())
        face = torch.nonzero(self.model.face_mask > 0).squeeze(1)
        self.register_buffer("face_index", face, persistent=False)
        neutral = self.model.canonical(HeadParams.zeros(1, self.model.num_betas, self.model.num_expression,
                                                        device=device))
        normals = vertex_normals(neutral, self.model.faces)[0]
        self.delta_g_mm = nn.Parameter(static_init_mm * normals * static_prior(self.model)[:, None])
        self.delta_f_mm = nn.Embedding(num_frames, face.shape[0] * 3, sparse=True)
        nn.init.zeros_(self.delta_f_mm.weight)
        self.laplacian = SparseOperator(uniform_laplacian(self.model.faces, self.model.num_vertices))

    @property
    def camera(self) -> Camera:
        h, w = self.hparams.image_size
        return Camera(self.cam_K, self.cam_R, self.cam_t, h, w)

    @override
    def setup(self, stage: str) -> None:
        """Start from the datamodule's tracking when it has one (checkpoint restore happens after this),
        and resolve ``depth_alignment="auto"`` from its targets (the datamodule is set up first)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        tracking = getattr(datamodule, "tracking", None)
        if tracking is not None and not bool(self.initialized):
            self.initialize_from(tracking.params, tracking.camera)
        targets = getattr(datamodule, "targets", None)
        if self.depth_alignment == "auto" and targets is not None:
            self.depth_alignment = resolve_depth_alignment("auto", targets)

    @torch.no_grad()
    def initialize_from(self, params: HeadParams, camera: Camera) -> None:
        """Copy tracker parameters (``F`` frames) and camera (at the module's image size) into the variables."""
        if params.batch_size != self.expression.shape[0]:
            raise ValueError(f"tracking has {params.batch_size} frames, the module {self.expression.shape[0]}")
        if (camera.height, camera.width) != tuple(self.hparams.image_size):
            raise ValueError(f"tracking camera is {camera.height}x{camera.width}, the module's image_size "
                             f"{tuple(self.hparams.image_size)}")
        self.betas.copy_(params.betas[:1])
        self.expression.copy_(params.expression)
        self.jaw.copy_(params.jaw_pose)
        self.rotation.copy_(params.neck_pose + params.head_pose)
        self.transl.copy_(params.transl)
        self.transl_init.copy_(params.transl)
        self.global_orient.copy_(params.global_orient[:1])
        self.cam_K.copy_(camera.K)
        self.cam_R.copy_(camera.R)
        self.cam_t.copy_(camera.t)
        self.initialized.fill_(True)

    # -- assembling the head ------------------------------------------------------------------
    def params(self, frames: Tensor) -> HeadParams:
        n = frames.shape[0]
        m = self.model
        p = HeadParams.zeros(n, m.num_betas, m.num_expression, device=self.device)
        p.betas = self.betas.expand(n, -1)
        p.expression, p.jaw_pose, p.transl = self.expression[frames], self.jaw[frames], self.transl[frames]
        p.neck_pose, p.head_pose = split_head_rotation(self.rotation[frames])
        p.global_orient = self.global_orient.expand(n, -1)
        return p

    def delta_g(self) -> Tensor:
        return self.delta_g_mm * MM

    def delta_f(self, frames: Tensor) -> Tensor:
        """``B x N_s x 3`` Δf(i) in metres (zero off the face)."""
        rows = self.delta_f_mm(frames).view(frames.shape[0], -1, 3) * MM
        out = rows.new_zeros(frames.shape[0], self.model.num_vertices, 3)
        return out.index_copy(1, self.face_index, rows)

    # -- loss ----------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        frames = batch["index"]
        p = self.params(frames)
        head = self.model(p, self.delta_g(), self.delta_f(frames))
        cam = self.camera.expand(frames.shape[0])
        w = self.weights
        terms = {"landmark": landmark_loss(cam.project(head.landmarks), batch["landmarks"], batch["valid"])}
        if "normal" in batch or "depth" in batch:
            r = render_normal_depth(head.vertices, self.model.faces, cam)
            mask = r.mask * batch["mask"]
            if "normal" in batch:
                terms["normal"] = masked_l1(r.normal, batch["normal"], mask)
            if "depth" in batch:
                if self.depth_alignment == "auto":
                    raise ValueError("depth_alignment='auto' is resolved in setup() from the datamodule's targets; "
                                     "without one, pass 'none' (metric depth) or 'scale_shift' (depth from a model)")
                target = align_depth(r.depth, batch["depth"], mask, self.depth_alignment)
                terms["depth"] = masked_l1(r.depth / MM, target / MM, mask, w.depth_clamp_mm)
                if self.depth_alignment != "none":
                    dz = (self.transl[frames] - self.transl_init[frames]) @ self.cam_R[0, 2] / MM
                    terms["depth_anchor"] = dz.pow(2).mean()
        dg, df = self.delta_g_mm, self.delta_f_mm(frames).view(frames.shape[0], -1, 3)
        face = self.model.face_mask[:, None]
        terms["expression"] = self.expression[frames].pow(2).sum(-1).mean()
        terms["static_magnitude"] = dg.pow(2).sum(-1).mean()
        terms["static_in_face"] = (dg * face).pow(2).sum(-1).sum() / face.sum()
        terms["dynamic_magnitude"] = df.pow(2).sum(-1).mean()
        full_df = torch.zeros(frames.shape[0], self.model.num_vertices, 3, device=df.device, dtype=df.dtype)
        full_df = full_df.index_copy(1, self.face_index, df)
        terms["laplacian_static"] = laplacian_loss(self.laplacian, dg)
        terms["laplacian_dynamic"] = laplacian_loss(self.laplacian, full_df)
        if self.expression.shape[0] > 1:
            terms["smooth"] = sum((x[1:] - x[:-1]).pow(2).sum(-1).mean()
                                  for x in (self.rotation, self.transl * 10, self.jaw))
        total = sum(getattr(w, k) * v for k, v in terms.items())
        return total, terms

    @override
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        sparse_opt, dense_opt = self.optimizers()
        sparse_opt.zero_grad()
        dense_opt.zero_grad()
        loss, terms = self.compute_loss(batch)
        self.manual_backward(loss)
        sparse_opt.optimizer.step()  # the raw optimizer: one global step per detail step, not two
        dense_opt.step()
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["index"].shape[0])
        step, last = self.global_step, self.trainer.max_steps - 1
        if step % max(1, self.trainer.log_every_n_steps) == 0 or step == last:  # each log call costs ~1 ms
            self.log_dict({f"train_{k}": v for k, v in terms.items()}, batch_size=batch["index"].shape[0])
        return loss

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr = self.hparams.lr_detail
        sparse = torch.optim.SparseAdam(self.delta_f_mm.parameters(), lr=lr)
        dense = torch.optim.Adam([
            {"params": [self.delta_g_mm], "lr": lr},
            {"params": [self.betas, self.expression, self.jaw, self.rotation, self.transl],
             "lr": self.hparams.lr_params},
        ])
        return [sparse, dense]
