"""``ExpressionTransfer``: the identity-adaptive expression transfer module of paper Sec. 3.2 (E + G),
saved as ``transfer.safetensors`` + ``transfer.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from exphead.io_utils import atomic_path

from .encoder import ExpressionEncoder
from .geometry_mlp import GeometryMLP, tangent_frame
from .identity import FEATURE_VERSION, IdentityGeometry

FORMAT_VERSION = 1
CONFIG_NAME, WEIGHTS_NAME = "transfer.json", "transfer.safetensors"


class ExpressionTransfer(nn.Module):
    """Δf(i) = G(V_neutral, q_i), Q = E(ψ, ω) (Eqs. 8-9), on the face vertices of a target identity.

    With ``anchor_neutral`` the prediction is ``G(V, q_i) - G(V, E(0, 0))``, so the neutral expression
    (ψ = 0, ω = 0) gives zero offsets (to float rounding): ``V_neutral`` *is* the ψ = 0 geometry.

    Args:
        num_expression: length of ψ.
        code_dim: D, the size of ``q_i``.
        encoder_hidden, temporal_kernel, encoder_blocks, jaw_scale: see :class:`ExpressionEncoder`.
        hidden_dim, num_layers, num_frequencies: see :class:`GeometryMLP`.
        anchor_neutral: subtract the prediction for the neutral code.
        offset_scale: metres per output unit of G (1e-3: G works in millimetres).
        chunk_points: at most this many (frame, vertex) pairs are evaluated at once (memory bound).
    """

    def __init__(self, num_expression: int = 100, code_dim: int = 64, encoder_hidden: int = 128,
                 temporal_kernel: int = 3, encoder_blocks: int = 2, jaw_scale: float = 5.0, hidden_dim: int = 96,
                 num_layers: int = 3, num_frequencies: int = 8, anchor_neutral: bool = True,
                 offset_scale: float = 1e-3, chunk_points: int = 1 << 18) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "num_expression": num_expression, "code_dim": code_dim, "encoder_hidden": encoder_hidden,
            "temporal_kernel": temporal_kernel, "encoder_blocks": encoder_blocks, "jaw_scale": jaw_scale,
            "hidden_dim": hidden_dim, "num_layers": num_layers, "num_frequencies": num_frequencies,
            "anchor_neutral": anchor_neutral, "offset_scale": offset_scale, "chunk_points": chunk_points}
        self.encoder = ExpressionEncoder(num_expression, code_dim, encoder_hidden, temporal_kernel, encoder_blocks,
                                         jaw_scale)
        self.geometry_mlp = GeometryMLP(code_dim, hidden_dim, num_layers, num_frequencies)
        self.anchor_neutral, self.offset_scale, self.chunk_points = anchor_neutral, offset_scale, chunk_points

    def encode(self, expression: Tensor, jaw_pose: Tensor) -> Tensor:
        """Q = E(ψ, ω): ``(B x) F x D``."""
        return self.encoder(expression, jaw_pose)

    def forward(self, geometry: IdentityGeometry, expression: Tensor, jaw_pose: Tensor) -> Tensor:
        """Predict Δf(i) on the described face vertices.

        Args:
            geometry: batched identities (``B x N`` vertices) from :func:`exptransfer.identity_geometry`.
            expression: ``B x F x num_expression`` driving ψ.
            jaw_pose: ``B x F x 3`` driving ω (axis-angle, radians).

        Returns:
            ``B x F x N x 3`` offsets in the canonical world frame, metres.
        """
        if geometry.positions.dim() != 3 or expression.dim() != 3 or expression.shape[0] != geometry.positions.shape[0]:
            raise ValueError(f"expected batched geometry (B x N x 3) and ψ (B x F x E), got positions "
                             f"{tuple(geometry.positions.shape)} and ψ {tuple(expression.shape)}; "
                             "use IdentityGeometry.unsqueeze() and ψ[None] for one identity")
        b, f = expression.shape[:2]
        codes = self.encode(expression, jaw_pose)
        if self.anchor_neutral:
            zero = self.encode(expression.new_zeros(b, 1, expression.shape[-1]), jaw_pose.new_zeros(b, 1, 3))
            codes = torch.cat([zero, codes], dim=1)
        frames = codes.shape[1]
        step = max(1, self.chunk_points // frames)
        chunks = []
        for start in range(0, geometry.num_vertices, step):
            part = IdentityGeometry(geometry.positions[:, start:start + step], geometry.normals[:, start:start + step],
                                    geometry.detail[:, start:start + step], geometry.landmarks, geometry.rotation)
            chunks.append(self._offsets(part, codes))
        offsets = torch.cat(chunks, dim=2)
        if self.anchor_neutral:
            offsets = offsets[:, 1:] - offsets[:, :1]
        return offsets

    def _offsets(self, geometry: IdentityGeometry, codes: Tensor) -> Tensor:
        """G's local output -> ``B x F x N x 3`` world offsets in metres."""
        local = self.geometry_mlp(geometry, codes) * self.offset_scale
        n = geometry.normals[:, None]
        t1, t2 = tangent_frame(n)
        head = local[..., :1] * t1 + local[..., 1:2] * t2 + local[..., 2:] * n
        return head @ geometry.rotation[:, None]  # rows: head -> world

    # -- persistence -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``transfer.safetensors`` (weights) and ``transfer.json`` (config) into ``directory``."""
        directory = Path(directory)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp))
        meta = {"format_version": FORMAT_VERSION, "feature_version": FEATURE_VERSION, "config": self.config}
        with atomic_path(directory / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> ExpressionTransfer:
        """Load a module written by :meth:`save_pretrained` (bit-exact weights)."""
        directory = Path(directory)
        cfg_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"{directory} holds no saved transfer module (needs {CONFIG_NAME} and "
                                    f"{WEIGHTS_NAME}, written by ExpressionTransfer.save_pretrained)")
        meta = json.loads(cfg_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("feature_version") != FEATURE_VERSION:
            raise ValueError(f"{cfg_path}: format/feature version {meta.get('format_version')}/"
                             f"{meta.get('feature_version')} != {FORMAT_VERSION}/{FEATURE_VERSION} of this code")
        net = cls(**meta["config"])
        net.load_state_dict(load_file(str(weights_path), device=str(map_location)))
        return net
