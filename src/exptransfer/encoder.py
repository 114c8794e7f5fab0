"""The driving-signal encoder E (paper Eq. 8): ψ ∈ F×100, ω ∈ F×3 -> Q ∈ F×D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _TemporalBlock(nn.Module):
    """Residual centred 1D convolution over frames with replicate padding (so F = 1 and constant
    sequences are handled: a constant input gives a constant output)."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """``B x F x C`` -> ``B x F x C``."""
        h = self.norm(x).transpose(1, 2)
        if self.kernel > 1:
            h = F.pad(h, (self.kernel // 2, self.kernel // 2), mode="replicate")
        return x + self.proj(F.gelu(self.conv(h).transpose(1, 2)))


class ExpressionEncoder(nn.Module):
    """E: per-frame conditioning codes from SMPL-X expression and jaw pose.

    A per-frame MLP lifts ``[ψ_i, jaw_scale * ω_i]``; ``num_blocks`` residual temporal convolutions
    (centred, ``temporal_kernel`` frames, replicate padding) add context from the neighbouring frames;
    a linear layer gives ``q_i``. With ``temporal_kernel = 1`` each ``q_i`` sees frame ``i`` only.

    Args:
        num_expression: length of ψ.
        code_dim: D, the size of ``q_i``.
        hidden_dim: width of the encoder.
        temporal_kernel: odd number of frames each temporal block sees.
        num_blocks: number of temporal blocks.
        jaw_scale: ω (radians, about ±0.3) is multiplied by this to reach unit range.
    """

    def __init__(self, num_expression: int = 100, code_dim: int = 64, hidden_dim: int = 128,
                 temporal_kernel: int = 3, num_blocks: int = 2, jaw_scale: float = 5.0) -> None:
        super().__init__()
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be a positive odd number of frames, got {temporal_kernel}")
        self.num_expression, self.jaw_scale = num_expression, jaw_scale
        self.lift = nn.Sequential(nn.Linear(num_expression + 3, hidden_dim), nn.GELU(),
                                  nn.Linear(hidden_dim, hidden_dim))
        self.blocks = nn.ModuleList(_TemporalBlock(hidden_dim, temporal_kernel) for _ in range(num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, code_dim))

    def forward(self, expression: Tensor, jaw_pose: Tensor) -> Tensor:
        """``(B x) F x num_expression`` ψ and ``(B x) F x 3`` ω -> ``(B x) F x D`` codes Q."""
        if expression.shape[-1] != self.num_expression or jaw_pose.shape[-1] != 3 \
                or expression.shape[:-1] != jaw_pose.shape[:-1]:
            raise ValueError(f"expected ψ (..., F, {self.num_expression}) and ω (..., F, 3) with the same frames, "
                             f"got {tuple(expression.shape)} and {tuple(jaw_pose.shape)}")
        unbatched = expression.dim() == 2
        x = torch.cat([expression, self.jaw_scale * jaw_pose], dim=-1)
        x = x[None] if unbatched else x
        h = self.lift(x)
        for block in self.blocks:
            h = block(h)
        q = self.out(h)
        return q[0] if unbatched else q
