"""Training objectives and their matching samplers.

* ``flow`` — Wan's native rectified flow: ``z_t = (1 - σ) z_0 + σ ε`` with the model predicting the
  velocity ``ε - z_0``; training ``σ = shift·u / (1 + (shift - 1)·u)``, ``u ~ U(0, 1)`` (the timestep
  shift of ``FlowMatchEulerDiscreteScheduler`` / ``UniPCMultistepScheduler(use_flow_sigmas=True)``),
  model timestep ``t = 1000·σ``. Sampled with UniPC (Wan's default) or flow-matching Euler.
* ``epsilon`` — the LDM noise-prediction loss of the paper's Eq. 10,
  ``|| ε - ε_θ(z_t, t, c) ||²`` with ``z_t = sqrt(ᾱ_t) z_0 + sqrt(1 - ᾱ_t) ε`` on the LDM
  ``scaled_linear`` β schedule (0.00085 to 0.012, 1000 steps); ``t`` integer. Sampled with DDIM.

Both losses are the mean squared error over all latent elements, computed in float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)
from torch import Tensor

Sampler = Literal["unipc", "euler", "ddim"]


class DiffusionObjective(ABC):
    """Noising, regression target and sampler of one diffusion formulation on ``B x C x f x h x w`` latents."""

    default_sampler: Sampler

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        self.num_train_timesteps = num_train_timesteps

    @abstractmethod
    def sample_timesteps(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
                         ) -> Tensor:
        """``B`` float training timesteps in ``[0, num_train_timesteps)``."""

    @abstractmethod
    def add_noise(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """``z_t`` from clean ``z_0``, ``ε`` and ``B`` timesteps."""

    @abstractmethod
    def target(self, latents: Tensor, noise: Tensor) -> Tensor:
        """The regression target for the model output."""

    @abstractmethod
    def make_scheduler(self, sampler: Sampler | None = None) -> SchedulerMixin:
        """A fresh diffusers scheduler that integrates this objective's predictions."""

    def loss(self, prediction: Tensor, latents: Tensor, noise: Tensor) -> Tensor:
        """Mean squared error to the target, in float32."""
        return F.mse_loss(prediction.float(), self.target(latents, noise).float())


class FlowMatchingObjective(DiffusionObjective):
    """Rectified flow with velocity target ``ε - z_0`` and timestep shift (Wan 2.1)."""

    default_sampler: Sampler = "unipc"

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 3.0) -> None:
        super().__init__(num_train_timesteps)
        if shift <= 0:
            raise ValueError(f"flow shift must be positive, got {shift}")
        self.shift = shift

    def sample_timesteps(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
                         ) -> Tensor:
        u = torch.rand(batch_size, device=device, generator=generator)
        sigma = self.shift * u / (1.0 + (self.shift - 1.0) * u)
        return sigma * self.num_train_timesteps

    def add_noise(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        sigma = (timesteps.float() / self.num_train_timesteps).view(-1, *([1] * (latents.ndim - 1)))
        return ((1.0 - sigma) * latents.float() + sigma * noise.float()).to(latents.dtype)

    def target(self, latents: Tensor, noise: Tensor) -> Tensor:
        return noise - latents

    def make_scheduler(self, sampler: Sampler | None = None) -> SchedulerMixin:
        sampler = sampler or self.default_sampler
        if sampler == "unipc":
            return UniPCMultistepScheduler(
                num_train_timesteps=self.num_train_timesteps, prediction_type="flow_prediction",
                use_flow_sigmas=True, flow_shift=self.shift,
            )
        if sampler == "euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=self.num_train_timesteps, shift=self.shift)
        raise ValueError(f"sampler {sampler!r} does not integrate flow predictions; use 'unipc' or 'euler'")


class EpsilonObjective(DiffusionObjective):
    """DDPM noise prediction (paper Eq. 10) on the LDM ``scaled_linear`` β schedule."""

    default_sampler: Sampler = "ddim"

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
                 ) -> None:
        super().__init__(num_train_timesteps)
        self._betas = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start,
                       "beta_end": beta_end, "beta_schedule": "scaled_linear"}
        self._ddpm = DDPMScheduler(**self._betas, prediction_type="epsilon")

    def sample_timesteps(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None
                         ) -> Tensor:
        return torch.randint(0, self.num_train_timesteps, (batch_size,), device=device, generator=generator).float()

    def add_noise(self, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        return self._ddpm.add_noise(latents, noise, timesteps.long())

    def target(self, latents: Tensor, noise: Tensor) -> Tensor:
        return noise

    def make_scheduler(self, sampler: Sampler | None = None) -> SchedulerMixin:
        sampler = sampler or self.default_sampler
        if sampler != "ddim":
            raise ValueError(f"sampler {sampler!r} does not match the epsilon objective; use 'ddim'")
        return DDIMScheduler(**self._betas, prediction_type="epsilon", clip_sample=False,
                             set_alpha_to_one=False, timestep_spacing="trailing")


def make_objective(name: Literal["flow", "epsilon"], num_train_timesteps: int = 1000, flow_shift: float = 3.0
                   ) -> DiffusionObjective:
    """``"flow"`` -> ``FlowMatchingObjective``; ``"epsilon"`` -> ``EpsilonObjective``."""
    if name == "flow":
        return FlowMatchingObjective(num_train_timesteps, flow_shift)
    if name == "epsilon":
        return EpsilonObjective(num_train_timesteps)
    raise ValueError(f"objective must be 'flow' or 'epsilon', got {name!r}")
