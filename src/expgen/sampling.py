"""Sampling: the denoising loop over a diffusers scheduler, and ``generate`` (reference + normals -> frames).

The loop is the Wan pipelines' (``pipeline_wan.py`` step 6) without text encoding: ``set_timesteps``,
then for each timestep ``scheduler.step(model_output, t, latents)``, with optional classifier-free
guidance ``uncond + s · (cond - uncond)`` where the unconditional pass drops pose and reference
(``condition_mask = 0``, the same drop used in training).

Context frames (inpainting-style conditioning, for overlapping windows): the first ``1 + j`` latent frames
are known (the VAE latents of the ``1 + 4j`` context frames; the causal VAE encodes them independently of the
frames after them). Before every step they are replaced by the known latents noised to that step's level with
fixed noise, and after the last step by the known latents themselves, so the rest of the window is sampled
consistently with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, SchedulerMixin
from torch import Tensor
from tqdm.auto import tqdm

from expgen.pose_encoder import SPATIAL_FACTOR, TEMPORAL_FACTOR, check_normal_video, latent_frames
from expgen.transformer import ConditionTokens, ExpPortraitTransformer
from expgen.vae import decode_latents, encode_image, encode_video


def noise_to(scheduler: SchedulerMixin, clean: Tensor, noise: Tensor, step: int) -> Tensor:
    """``clean`` latents noised to the level of the scheduler's ``step``-th timestep (after ``set_timesteps``).

    Flow schedulers (UniPC with flow sigmas, flow-matching Euler): ``(1 - σ) z + σ ε`` with the step's σ;
    the others (DDIM): their ``add_noise`` at the step's timestep.
    """
    flow = isinstance(scheduler, FlowMatchEulerDiscreteScheduler) or getattr(scheduler.config, "use_flow_sigmas", False)
    if flow:
        sigma = float(scheduler.sigmas[step])
        return (1.0 - sigma) * clean + sigma * noise
    t = scheduler.timesteps[step].reshape(1).long().to(clean.device)
    return scheduler.add_noise(clean, noise, t.expand(clean.shape[0]))


def sample_latents(
    predict: Callable[[Tensor, Tensor], Tensor],
    scheduler: SchedulerMixin,
    noise: Tensor,
    num_inference_steps: int,
    progress: bool = True,
    known: Tensor | None = None,
) -> Tensor:
    """Integrate ``predict(latents, t) -> model output`` from ``noise`` down to clean latents.

    Args:
        predict: the model's prediction (velocity / noise, matching the scheduler) for a batch at ``t``.
        scheduler: a diffusers scheduler; ``set_timesteps`` is called here.
        noise: ``B x C x f x h x w`` standard normal noise.
        num_inference_steps: number of scheduler steps.
        progress: show a tqdm bar over the steps.
        known: optional ``B x C x k x h x w`` clean latents of the first ``k < f`` latent frames, held fixed
            (module docstring); their noise is ``noise``'s first ``k`` frames.

    Returns:
        ``B x C x f x h x w`` denoised (normalised) latents.
    """
    scheduler.set_timesteps(num_inference_steps, device=noise.device)
    # flow-matching schedulers start at unit noise and take the latents unscaled
    latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    scale = getattr(scheduler, "scale_model_input", lambda sample, t: sample)
    k = 0 if known is None else known.shape[2]
    for i, t in enumerate(tqdm(scheduler.timesteps, desc="denoising", disable=not progress)):
        if k:
            held = noise_to(scheduler, known, noise[:, :, :k], i).to(latents.dtype)
            latents = torch.cat([held, latents[:, :, k:]], 2)
        prediction = predict(scale(latents, t), t)
        latents = scheduler.step(prediction.to(latents.dtype), t, latents, return_dict=False)[0]
    if k:
        latents = torch.cat([known.to(latents.dtype), latents[:, :, k:]], 2)
    return latents


@torch.no_grad()
def generate(
    transformer: ExpPortraitTransformer,
    vae: AutoencoderKLWan,
    scheduler: SchedulerMixin,
    reference_image: Tensor,
    reference_normal: Tensor,
    driving_normals: Tensor,
    num_inference_steps: int = 30,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    use_reference: bool = True,
    context_frames: Tensor | None = None,
    output_type: Literal["frames", "latent"] = "frames",
) -> Tensor:
    """Animate a reference image with driving normal maps.

    Args:
        transformer: the conditioned denoiser.
        vae: the Wan VAE whose normalised latents the transformer was trained on.
        scheduler: a scheduler matching the training objective (``DiffusionObjective.make_scheduler``).
        reference_image: ``B x 3 x H x W`` I_R in ``[0, 1]``.
        reference_normal: ``B x 3 x H x W`` N^R, image-encoded normals in ``[0, 1]``.
        driving_normals: ``B x F x 3 x H x W`` N^D_{1:F} in ``[0, 1]``, ``F = 1 + 4k``.
        num_inference_steps: scheduler steps.
        guidance_scale: classifier-free guidance on pose + reference; 1 disables the second pass.
        generator: RNG for the initial noise.
        progress: tqdm bar over the steps.
        use_reference: False zeroes the reference tokens (a model trained with ``use_reference=False``).
        context_frames: optional ``B x K x 3 x H x W`` frames in ``[0, 1]``, ``K = 1 + 4j < F``, held as the first
            K frames (module docstring); the output's first K frames are their VAE reconstruction.
        output_type: ``"frames"`` decodes; ``"latent"`` returns the denoised latents (as diffusers pipelines do).

    Returns:
        ``B x F x 3 x H x W`` generated frames in ``[0, 1]``, or the normalised ``B x C x f x h x w`` latents.
    """
    check_normal_video(driving_normals)
    b, f, _, h, w = driving_normals.shape
    if reference_image.shape != (b, 3, h, w) or reference_normal.shape != (b, 3, h, w):
        raise ValueError(
            f"reference_image {tuple(reference_image.shape)} and reference_normal {tuple(reference_normal.shape)} "
            f"must both be {(b, 3, h, w)} to match driving_normals {tuple(driving_normals.shape)}"
        )
    patch = transformer.config.patch_size
    if (h // SPATIAL_FACTOR) % patch[1] or (w // SPATIAL_FACTOR) % patch[2]:
        raise ValueError(f"{h}x{w} frames: sides must be multiples of {SPATIAL_FACTOR * patch[1]} (VAE x patch)")
    device, dtype = transformer.device, transformer.dtype
    reference_latents = encode_image(vae, reference_image.to(vae.device)).to(device, dtype)
    conditions = transformer.encode_conditions(driving_normals.to(device, dtype), reference_latents,
                                               reference_normal.to(device, dtype))
    if not use_reference:
        conditions = ConditionTokens(pose=conditions.pose, reference=torch.zeros_like(conditions.reference))
    known = None
    if context_frames is not None:
        k = context_frames.shape[1]
        if context_frames.shape[0] != b or context_frames.shape[2:] != driving_normals.shape[2:] or (
                (k - 1) % TEMPORAL_FACTOR or k >= f):
            raise ValueError(f"context_frames {tuple(context_frames.shape)} must be B x (1 + 4j) x 3 x H x W with "
                             f"fewer frames than driving_normals {tuple(driving_normals.shape)}")
        known = encode_video(vae, context_frames.to(vae.device)).to(device, torch.float32)
    shape = (b, transformer.config.in_channels, latent_frames(f), h // SPATIAL_FACTOR, w // SPATIAL_FACTOR)
    noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    keep, drop = torch.ones(b, device=device), torch.zeros(b, device=device)

    def predict(latents: Tensor, t: Tensor) -> Tensor:
        timestep = t.to(device).float().expand(b)
        cond = transformer(latents.to(dtype), timestep, conditions, condition_mask=keep).sample
        if guidance_scale == 1.0:
            return cond.float()
        uncond = transformer(latents.to(dtype), timestep, conditions, condition_mask=drop).sample
        return (uncond + guidance_scale * (cond - uncond)).float()

    latents = sample_latents(predict, scheduler, noise, num_inference_steps, progress, known)
    if output_type == "latent":
        return latents
    return decode_latents(vae, latents.to(vae.device))
