"""Identity-adaptive expression transfer (paper Sec. 3.2).

A driver's SMPL-X expression ψ and jaw pose ω are encoded per frame, Q = E(ψ, ω) (Eq. 8), and a per-vertex
MLP predicts the target identity's expression details Δf(i) = G(V_neutral, q_i) (Eq. 9) on its face
vertices, so that wrinkle placement and depth follow the *target's* anatomy instead of being copied from
the driver. :func:`transfer` turns a fitted target head plus driving parameters into detailed canonical and
posed dense meshes; :class:`TransferModule` / :class:`TransferDataModule` train it on a folder of fitted heads.
"""

from .data import HeadWindowDataset, TransferDataModule
from .encoder import ExpressionEncoder
from .geometry_mlp import GeometryMLP
from .identity import IdentityGeometry, identity_geometry
from .module import TransferModule
from .network import ExpressionTransfer
from .retarget import Retargeting, driving_params, still_params
from .synthetic import adapted_details, write_synthetic_heads
from .transfer import (
    TransferResult,
    freeze_transfer,
    load_transfer,
    temporal_context,
    transfer,
    transfer_fingerprint,
)

__all__ = [
    "ExpressionEncoder",
    "ExpressionTransfer",
    "GeometryMLP",
    "HeadWindowDataset",
    "IdentityGeometry",
    "Retargeting",
    "TransferDataModule",
    "TransferModule",
    "TransferResult",
    "adapted_details",
    "driving_params",
    "freeze_transfer",
    "identity_geometry",
    "load_transfer",
    "still_params",
    "temporal_context",
    "transfer",
    "transfer_fingerprint",
    "write_synthetic_heads",
]
