"""Loading the SMPL-X body model through the ``smplx`` package.

The real model (``SMPLX_NEUTRAL.npz`` from the SMPL-X website, licence required) is found from
an explicit path or the environment variable ``SMPLX_MODEL_PATH`` (a file or a folder holding
``SMPLX_NEUTRAL.npz``). Without either, the embedded procedural head-and-shoulders model
(:mod:`exphead.procedural`) is written in the same file format and loaded through the same
``smplx.create`` call.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import smplx
import torch

from .procedural import write_procedural_smplx

logger = logging.getLogger(__name__)

ENV_VAR = "SMPLX_MODEL_PATH"
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights",
                 "lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")
NUM_SMPLX_VERTICES = 10475


def resolve_model_file(path: str | os.PathLike | None = None) -> Path:
    """The SMPL-X file to load: ``path``, else ``$SMPLX_MODEL_PATH``, else the procedural default.

    Raises:
        FileNotFoundError: the given file (or ``SMPLX_NEUTRAL.npz`` in the given folder) is missing.
        ValueError: the file name does not start with ``SMPLX_`` (``smplx.create`` infers the model
            type from it) or is not ``.npz``.
    """
    source = "argument"
    if path is None and os.environ.get(ENV_VAR):
        path, source = os.environ[ENV_VAR], f"${ENV_VAR}"
    if path is None:
        return write_procedural_smplx()
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "SMPLX_NEUTRAL.npz"
    if not p.is_file():
        raise FileNotFoundError(
            f"SMPL-X model file not found: {p} (from {source}). Download SMPLX_NEUTRAL.npz from "
            f"https://smpl-x.is.tue.mpg.de and pass its path (or its folder) as model_path or set {ENV_VAR}; "
            "leave both unset to use the embedded procedural head model.")
    if p.suffix != ".npz":
        raise ValueError(f"SMPL-X model file {p} must be an .npz file (SMPLX_NEUTRAL.npz)")
    if not p.name.upper().startswith("SMPLX_"):
        raise ValueError(f"SMPL-X model file {p} must be named SMPLX_<GENDER>.npz: smplx.create infers the "
                         "model type from the file name")
    return p


def _check_file(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with np.load(path, allow_pickle=True) as data:
            shapes = {k: data[k].shape for k in data.files}
    except Exception as err:  # zip/pickle/format errors all mean the same thing to the user
        raise ValueError(f"SMPL-X model file {path} is not a readable .npz archive: {err}") from err
    missing = [k for k in REQUIRED_KEYS if k not in shapes]
    if missing:
        raise ValueError(f"SMPL-X model file {path} is malformed: missing arrays {missing}")
    return shapes


def load_body_model(path: str | os.PathLike | None = None, num_betas: int = 300,
                    num_expression_coeffs: int = 100, dtype: torch.dtype = torch.float32) -> smplx.SMPLX:
    """Load SMPL-X (real or procedural) as an ``smplx.SMPLX`` module.

    Args:
        path: file or folder; see :func:`resolve_model_file`.
        num_betas: shape coefficients (at most 300, fewer if the file has fewer).
        num_expression_coeffs: expression coefficients (at most 100). A file whose ``shapedirs``
            has fewer than 400 columns only offers 10 shape and 10 expression coefficients.
    """
    file = resolve_model_file(path)
    shapes = _check_file(file)
    columns = shapes["shapedirs"][-1]
    if columns < 400:
        logger.warning("%s has %d blendshape columns (< 300 shape + 100 expression): smplx uses only 10 shape "
                       "and 10 expression coefficients", file, columns)
        num_betas, num_expression_coeffs = min(num_betas, 10), min(num_expression_coeffs, 10)
    model = smplx.create(str(file), model_type="smplx", num_betas=num_betas,
                         num_expression_coeffs=num_expression_coeffs, use_pca=False, flat_hand_mean=True,
                         use_face_contour=True, dtype=dtype)
    num_vertices = shapes["v_template"][0]
    with np.load(file, allow_pickle=True) as data:
        extra = data["extra_vertex_ids"] if "extra_vertex_ids" in data.files else None
    if extra is not None:
        model.vertex_joint_selector.extra_joints_idxs = torch.as_tensor(extra, dtype=torch.long)
    elif num_vertices != NUM_SMPLX_VERTICES:
        raise ValueError(f"{file} has {num_vertices} vertices, not SMPL-X's {NUM_SMPLX_VERTICES}: add an "
                         "'extra_vertex_ids' array (21 keypoint vertex ids in smplx's order) to the file")
    return model
