"""Wan causal-VAE handling: pixel videos <-> normalised latents, as the diffusers Wan pipelines do it.

Videos are ``B x F x 3 x H x W`` in ``[0, 1]`` (library convention); the VAE takes
``B x 3 x F x H x W`` in ``[-1, 1]`` and returns ``B x C x (1 + (F-1)/4) x H/8 x W/8`` latents, which are
normalised channel-wise with the VAE config's ``latents_mean`` / ``latents_std``:
``z = (x - mean) / std`` (``pipeline_wan_animate.prepare_reference_image_latents``) and
``x = z * std + mean`` before decoding (``pipeline_wan.__call__``).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import Tensor


def _latent_stats(vae: AutoencoderKLWan, like: Tensor) -> tuple[Tensor, Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(shape)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(shape)
    return mean, std


def normalize_latents(vae: AutoencoderKLWan, latents: Tensor) -> Tensor:
    """Raw ``B x C x f x h x w`` VAE latents -> normalised ``(z - mean) / std``."""
    mean, std = _latent_stats(vae, latents)
    return (latents - mean) / std


def denormalize_latents(vae: AutoencoderKLWan, latents: Tensor) -> Tensor:
    """Normalised latents -> raw VAE latents ``z * std + mean``."""
    mean, std = _latent_stats(vae, latents)
    return latents * std + mean


def encode_posterior(vae: AutoencoderKLWan, frames: Tensor) -> DiagonalGaussianDistribution:
    """``B x F x 3 x H x W`` video in ``[0, 1]`` -> the VAE's Gaussian posterior over raw latents."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be B x F x 3 x H x W in [0, 1], got shape {tuple(frames.shape)}")
    x = frames.permute(0, 2, 1, 3, 4).to(vae.dtype) * 2.0 - 1.0
    return vae.encode(x).latent_dist


def encode_video(vae: AutoencoderKLWan, frames: Tensor) -> Tensor:
    """``B x F x 3 x H x W`` in ``[0, 1]`` -> normalised ``B x C x (1 + (F-1)/4) x H/8 x W/8`` (posterior mode)."""
    return normalize_latents(vae, encode_posterior(vae, frames).mode())


def encode_image(vae: AutoencoderKLWan, image: Tensor) -> Tensor:
    """``B x 3 x H x W`` in ``[0, 1]`` -> normalised ``B x C x 1 x H/8 x W/8`` (a one-frame video)."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be B x 3 x H x W in [0, 1], got shape {tuple(image.shape)}")
    return encode_video(vae, image[:, None])


def decode_latents(vae: AutoencoderKLWan, latents: Tensor) -> Tensor:
    """Normalised ``B x C x f x h x w`` latents -> ``B x (1 + 4(f-1)) x 3 x 8h x 8w`` video in ``[0, 1]``."""
    raw = denormalize_latents(vae, latents.to(vae.dtype))
    video = vae.decode(raw).sample
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 1, 3, 4)


def kl_to_standard_normal(posterior: DiagonalGaussianDistribution) -> Tensor:
    """Mean over all elements of ``KL(q(z|x) || N(0, I))`` (a scalar)."""
    return 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
