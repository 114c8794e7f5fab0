"""Mesh export to PLY / OBJ (through trimesh) that MeshLab and Blender open."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh
from torch import Tensor

from .io_utils import atomic_path


def export_mesh(path: str | os.PathLike, vertices: Tensor | np.ndarray, faces: Tensor | np.ndarray,
                vertex_colors: Tensor | np.ndarray | None = None) -> Path:
    """Write one mesh (``N x 3`` vertices, ``M x 3`` faces, optional ``N x 3`` colours in [0, 1]).

    The format follows the suffix (``.ply`` binary or ``.obj``); the file appears atomically.
    """
    path = Path(path)
    if path.suffix.lower() not in (".ply", ".obj"):
        raise ValueError(f"mesh path {path} must end in .ply or .obj")
    v = np.asarray(vertices.detach().cpu() if isinstance(vertices, Tensor) else vertices, dtype=np.float64)
    f = np.asarray(faces.detach().cpu() if isinstance(faces, Tensor) else faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"expected N x 3 vertices and M x 3 faces, got {v.shape} and {f.shape}")
    colors = None
    if vertex_colors is not None:
        c = vertex_colors.detach().cpu().numpy() if isinstance(vertex_colors, Tensor) else vertex_colors
        colors = (np.clip(c, 0, 1) * 255).astype(np.uint8)
    mesh = trimesh.Trimesh(v, f, vertex_colors=colors, process=False)
    with atomic_path(path) as tmp:
        mesh.export(tmp, file_type=path.suffix.lower()[1:])
    return path
