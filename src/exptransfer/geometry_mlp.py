"""The per-vertex geometry network G (paper Eq. 9): Δf(i)[v] = G(V_neutral, q_i)[v] on face vertices."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .identity import DETAIL_SCALES, KEY_LANDMARKS, IdentityGeometry


def fourier_encoding(x: Tensor, num_frequencies: int) -> Tensor:
    """``... x C`` -> ``... x 2 C L``: ``sin`` and ``cos`` of ``2^k π x`` for ``k < L``."""
    freqs = (2.0 ** torch.arange(num_frequencies, device=x.device, dtype=x.dtype)) * math.pi
    angles = (x[..., None] * freqs).flatten(-2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def tangent_frame(normals: Tensor) -> tuple[Tensor, Tensor]:
    """Unit tangents ``(t1, t2)`` completing ``... x 3`` head-frame normals to a right-handed frame
    ``(t1, t2, n)``; ``t1 ∝ y × n`` is horizontal on the face (well defined while ``n`` is not vertical)."""
    up = torch.zeros_like(normals)
    up[..., 1] = 1.0
    t1 = F.normalize(torch.linalg.cross(up, normals, dim=-1), dim=-1, eps=1e-6)
    return t1, torch.linalg.cross(normals, t1, dim=-1)


class GeometryMLP(nn.Module):
    """G: a per-vertex MLP on the identity's neutral geometry, FiLM-modulated by the code ``q_i``.

    Vertex features (all in the normalised head frame of :mod:`exptransfer.identity`): the position and
    its Fourier encoding, the normal, the multi-scale personal-detail heights, and the offset to and
    distance from each key landmark. They pass through a frame-independent vertex encoder once; each of
    the ``num_layers`` layers is then ``h <- SiLU(W h ⊙ (1 + γ_l(q)) + β_l(q))``. The output is the offset
    in the vertex's local frame (two tangents and the normal), in units of ``offset_scale`` metres (see
    :class:`exptransfer.network.ExpressionTransfer`).

    Args:
        code_dim: D, the size of ``q_i``.
        hidden_dim: width of every layer.
        num_layers: FiLM-modulated layers.
        num_frequencies: octaves of the positional encoding (the finest wavelength is ``2^(1-L)`` eye
            distances, about 1.5 mm for ``L = 8``).
    """

    def __init__(self, code_dim: int = 64, hidden_dim: int = 96, num_layers: int = 3, num_frequencies: int = 8) -> None:
        super().__init__()
        self.num_frequencies, self.num_layers, self.hidden_dim = num_frequencies, num_layers, hidden_dim
        k = len(KEY_LANDMARKS)
        in_dim = 3 + 6 * num_frequencies + 3 + 1 + len(DETAIL_SCALES) + 4 * k
        # 1. Frame-independent vertex encoder
        self.vertex_encoder = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        # 2. FiLM from the expression code, starting near the identity modulation
        self.film = nn.Linear(code_dim, 2 * hidden_dim * num_layers)
        with torch.no_grad():
            self.film.weight.mul_(0.1)
            self.film.bias.zero_()
        # 3. Modulated layers and the offset head, starting at zero offsets
        self.layers = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers))
        self.head = nn.Linear(hidden_dim, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def vertex_features(self, geometry: IdentityGeometry) -> Tensor:
        """``B x N x C`` input features of a batched :class:`IdentityGeometry`."""
        p = geometry.positions
        rel = p[..., :, None, :] - geometry.landmarks[..., None, :, :]  # B x N x K x 3
        dist = rel.norm(dim=-1)
        detail = torch.asinh(geometry.detail / 0.1)  # linear below 0.1 mm, logarithmic above
        return torch.cat([p, fourier_encoding(p, self.num_frequencies), geometry.normals, detail,
                          rel.flatten(-2), dist], dim=-1)

    def forward(self, geometry: IdentityGeometry, codes: Tensor) -> Tensor:
        """Batched geometry (``B x N`` vertices) and ``B x F x D`` codes -> ``B x F x N x 3`` local offsets
        (tangent 1, tangent 2, normal), in ``offset_scale`` units."""
        h_vertex = self.vertex_encoder(self.vertex_features(geometry))  # B x N x H
        gamma_beta = self.film(codes).unflatten(-1, (self.num_layers, 2, self.hidden_dim))  # B x F x L x 2 x H
        h = h_vertex[:, None]
        for layer_index, layer in enumerate(self.layers):
            gamma = gamma_beta[:, :, layer_index, 0, None]  # B x F x 1 x H
            beta = gamma_beta[:, :, layer_index, 1, None]
            h = F.silu(layer(h) * (1 + gamma) + beta)
        return self.head(h)
