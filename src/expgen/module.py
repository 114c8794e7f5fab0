"""``DiffusionModule``: Lightning training of the normal-map-conditioned video DiT (paper Sec. 3.3, 4.1).

A training step encodes the clip and the reference image with the (frozen) Wan VAE into normalised
latents, noises the video latents with the chosen objective, drops pose and reference together with
probability ``condition_drop_prob`` (for classifier-free guidance), and regresses the objective's
target. With ``vae_loss_weight > 0`` (the tiny, randomly initialised backbone) the VAE trains too, on
reconstruction plus a KL term; the diffusion loss then sees detached latents. ``vae_train_steps`` ends the VAE's
training after that many steps: the later steps train the DiT alone on fixed latents, and cost a fraction
of a joint step (no VAE decode or backward).

``face_loss_weight`` w weights both losses towards the head: a pixel the driving mesh covers (N^D != 0)
counts ``1 + w`` times, the rest once (in the latent loss, per latent cell by its covered share).
``use_reference = False`` is the no-reference ablation: the reference tokens are zeroed in training and
sampling, so the DiT sees N^D only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from expgen.backbone import build_backbone
from expgen.objectives import Sampler, make_objective
from expgen.pose_encoder import SPATIAL_FACTOR, TEMPORAL_FACTOR
from expgen.sampling import generate
from expgen.transformer import ConditionTokens
from expgen.vae import encode_image, encode_posterior, kl_to_standard_normal, normalize_latents

SAMPLING_CONFIG_NAME = "expgen_sampling.json"


class DiffusionModule(L.LightningModule):
    """The ExpPortrait video generator as a LightningModule.

    Args:
        backbone: ``"tiny"`` (embedded random-initialised default) or ``"wan"`` (weights from ``wan_path``).
        wan_path: a diffusers Wan 2.1 T2V folder (``transformer/``, ``vae/``) or one written by
            ``save_pretrained``; ``None`` reads ``$EXPPORTRAIT_WAN_PATH``.
        transformer_config: tiny: overrides of the tiny transformer; wan: the conditioning keys.
        vae_config: overrides of the tiny VAE (tiny only).
        objective: ``"flow"`` (Wan's rectified flow) or ``"epsilon"`` (paper Eq. 10).
        flow_shift: timestep shift of the flow objective and its samplers.
        num_train_timesteps: discretisation of the diffusion time.
        sampler: ``"unipc"`` / ``"euler"`` (flow) or ``"ddim"`` (epsilon); ``None`` picks the default.
        num_inference_steps: sampling steps of ``generate`` / ``predict_step``.
        guidance_scale: classifier-free guidance scale of ``generate``; 1 disables it.
        condition_drop_prob: probability of dropping pose + reference for a training sample.
        lr: AdamW learning rate (paper: 1e-4).
        weight_decay: AdamW weight decay.
        lr_schedule: ``"constant"``, or ``"cosine"``: from ``lr`` down to 0 at the trainer's last step.
        lr_warmup_steps: linear warm-up from 0 to ``lr`` over the first steps (both schedules).
        gradient_checkpointing: checkpoint the DiT blocks.
        vae_loss_weight: weight of the VAE reconstruction loss; 0 freezes the VAE.
        vae_kl_weight: weight of the KL term inside the VAE loss.
        vae_train_steps: training steps in which the VAE trains (with ``vae_loss_weight > 0``); None: all.
        face_loss_weight: extra weight of the pixels (latent cells) the driving mesh covers; 0 weights all alike.
        use_reference: condition on I_R and N^R; False zeroes the reference tokens (ablation).
    """

    def __init__(
        self,
        backbone: Literal["tiny", "wan"] = "tiny",
        wan_path: str | None = None,
        transformer_config: dict[str, Any] | None = None,
        vae_config: dict[str, Any] | None = None,
        objective: Literal["flow", "epsilon"] = "flow",
        flow_shift: float = 3.0,
        num_train_timesteps: int = 1000,
        sampler: Sampler | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 1.0,
        condition_drop_prob: float = 0.1,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        lr_warmup_steps: int = 0,
        gradient_checkpointing: bool = False,
        vae_loss_weight: float = 0.0,
        vae_kl_weight: float = 1e-3,
        vae_train_steps: int | None = None,
        face_loss_weight: float = 0.0,
        use_reference: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= condition_drop_prob < 1.0:
            raise ValueError(f"condition_drop_prob must be in [0, 1), got {condition_drop_prob}")
        if face_loss_weight < 0:
            raise ValueError(f"face_loss_weight must be >= 0, got {face_loss_weight}")
        lr_factor(lr_schedule, lr_warmup_steps, 0)  # fail early on an unknown schedule
        self.objective = make_objective(objective, num_train_timesteps, flow_shift)
        self.objective.make_scheduler(sampler)  # fail early on a sampler that does not fit the objective
        self.transformer, self.vae = build_backbone(backbone, wan_path, transformer_config, vae_config)
        self.vae.requires_grad_(vae_loss_weight > 0)
        if gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()

    def _common_step(self, batch: dict[str, Any], batch_idx: int, stage: str) -> Tensor:
        frames, driving = batch["frames"], batch["driving_normals"]
        ref_image, ref_normal = batch["reference_image"], batch["reference_normal"]
        b = frames.shape[0]
        # validation/test draw the same noise and timesteps every epoch, so their losses are comparable
        generator = None if stage == "train" else torch.Generator(self.device).manual_seed(batch_idx)
        vae_steps = self.hparams.vae_train_steps
        train_vae = self.hparams.vae_loss_weight > 0 and (
            stage != "train" or vae_steps is None or self.global_step < vae_steps)

        # 1. Latents: z_0 of the clip, z_R of the reference image (normalised)
        with torch.set_grad_enabled(train_vae and torch.is_grad_enabled()):
            posterior = encode_posterior(self.vae, frames)
        latents = normalize_latents(self.vae, posterior.mode()).detach().float()  # fp32 targets under autocast
        with torch.no_grad():
            ref_latents = encode_image(self.vae, ref_image)

        # 2. Noise, timesteps and condition dropout
        noise = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        timesteps = self.objective.sample_timesteps(b, self.device, generator)
        noisy = self.objective.add_noise(latents, noise, timesteps)
        keep = torch.ones(b, device=self.device)
        if stage == "train" and self.hparams.condition_drop_prob > 0:
            keep = (torch.rand(b, device=self.device) >= self.hparams.condition_drop_prob).float()

        # 3. Denoiser and objective
        conditions = self.transformer.encode_conditions(driving, ref_latents, ref_normal)
        if not self.hparams.use_reference:
            conditions = ConditionTokens(pose=conditions.pose, reference=torch.zeros_like(conditions.reference))
        prediction = self.transformer(noisy, timesteps, conditions, condition_mask=keep).sample
        face = self.hparams.face_loss_weight
        if face > 0:
            target = self.objective.target(latents, noise).float()
            diffusion_loss = weighted_mse(prediction.float(), target, 1.0 + face * latent_coverage(driving))
        else:
            diffusion_loss = self.objective.loss(prediction, latents, noise)
        loss = diffusion_loss
        if train_vae:
            x = frames.permute(0, 2, 1, 3, 4) * 2.0 - 1.0
            reconstruction = self.vae.decode(posterior.sample(generator)).sample
            if face > 0:
                recon_loss = weighted_mse(reconstruction.float(), x.float(), 1.0 + face * pixel_coverage(driving))
            else:
                recon_loss = F.mse_loss(reconstruction.float(), x.float())
            vae_loss = recon_loss + self.hparams.vae_kl_weight * kl_to_standard_normal(posterior)
            loss = loss + self.hparams.vae_loss_weight * vae_loss
            self.log(f"{stage}_vae_loss", vae_loss, batch_size=b)
        self.log(f"{stage}_diffusion_loss", diffusion_loss, batch_size=b)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=b)
        return loss

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, batch_idx, "train")

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, batch_idx, "val")

    @override
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._common_step(batch, batch_idx, "test")

    @override
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        generator = torch.Generator(self.device).manual_seed(batch_idx)
        return self.generate(batch["reference_image"], batch["reference_normal"], batch["driving_normals"],
                             generator=generator, progress=False)

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = self.hparams.lr_schedule
        total = int(self.trainer.estimated_stepping_batches) if schedule == "cosine" else 0
        factor = lr_factor(schedule, self.hparams.lr_warmup_steps, total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def generate(self, reference_image: Tensor, reference_normal: Tensor, driving_normals: Tensor,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, progress: bool = True,
                 context_frames: Tensor | None = None, output_type: Literal["frames", "latent"] = "frames") -> Tensor:
        """``B x 3 x H x W`` I_R and N^R, ``B x F x 3 x H x W`` N^D in ``[0, 1]`` -> ``B x F x 3 x H x W`` frames
        (``output_type="latent"``: the normalised latents before decoding).

        ``context_frames`` (``B x K x 3 x H x W``, ``K = 1 + 4j < F``) are held as the first K frames while sampling
        (:func:`expgen.sampling.generate`), e.g. the previous window's last frames.
        """
        return generate(
            self.transformer, self.vae, self.objective.make_scheduler(self.hparams.sampler),
            reference_image, reference_normal, driving_normals,
            num_inference_steps=num_inference_steps or self.hparams.num_inference_steps,
            guidance_scale=self.hparams.guidance_scale if guidance_scale is None else guidance_scale,
            generator=generator, progress=progress, use_reference=self.hparams.use_reference,
            context_frames=context_frames, output_type=output_type,
        )

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``transformer/``, ``vae/`` (diffusers safetensors + JSON config) and the sampling settings.

        The folder loads back with ``DiffusionModule.from_pretrained(folder)``.
        """
        folder = Path(folder)
        self.transformer.save_pretrained(folder / "transformer")
        self.vae.save_pretrained(folder / "vae")
        keys = ("objective", "flow_shift", "num_train_timesteps", "sampler", "num_inference_steps", "guidance_scale",
                "use_reference")
        (folder / SAMPLING_CONFIG_NAME).write_text(json.dumps({k: self.hparams[k] for k in keys}, indent=2))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **overrides: Any) -> DiffusionModule:
        """Load a folder written by ``save_pretrained``; ``overrides`` replace init arguments (e.g. ``sampler``)."""
        folder = Path(folder)
        settings_file = folder / SAMPLING_CONFIG_NAME
        if not settings_file.is_file():
            raise FileNotFoundError(
                f"{settings_file} not found: {folder} was not written by DiffusionModule.save_pretrained "
                "(for raw Wan 2.1 weights use DiffusionModule(backbone='wan', wan_path=...))"
            )
        settings = json.loads(settings_file.read_text())
        return cls(**{**settings, "backbone": "wan", "wan_path": str(folder), **overrides})


def lr_factor(schedule: Literal["constant", "cosine"], warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning rate's multiplier at step ``s``: linear warm-up over ``warmup_steps``, then 1 (constant) or a
    half cosine that reaches 0 at ``total_steps``."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {schedule!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def pixel_coverage(driving_normals: Tensor) -> Tensor:
    """``B x F x 3 x H x W`` N^D -> ``B x 1 x F x H x W``: 1 where the driving mesh covers the pixel (N^D != 0)."""
    return (driving_normals.amax(2, keepdim=True) > 0).to(driving_normals.dtype).transpose(1, 2)


def latent_coverage(driving_normals: Tensor) -> Tensor:
    """``B x F x 3 x H x W`` N^D -> ``B x 1 x f x H/8 x W/8``: the covered share of each latent cell.

    Latent frame 0 holds frame 0, latent frame k frames ``4k - 3 .. 4k`` (the causal VAE); a cell takes its
    most covered frame.
    """
    mask = pixel_coverage(driving_normals)
    mask = F.avg_pool3d(mask, (1, SPATIAL_FACTOR, SPATIAL_FACTOR))
    first, rest = mask[:, :, :1], mask[:, :, 1:]
    rest = F.max_pool3d(rest, (TEMPORAL_FACTOR, 1, 1)) if rest.shape[2] else rest
    return torch.cat([first, rest], 2)


def weighted_mse(prediction: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean of ``weight x (prediction - target)^2`` over all elements, divided by the mean weight."""
    weight = weight.expand_as(prediction)
    return (weight * (prediction - target) ** 2).sum() / weight.sum()
