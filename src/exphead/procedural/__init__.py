"""The embedded default body model: a procedural head-and-shoulders template in SMPL-X format.

:func:`write_procedural_smplx` writes an ``SMPLX_NEUTRAL.npz`` with every array the ``smplx``
package reads (template, 300 shape + 100 expression blendshapes, pose correctives, joint
regressor, kinematic tree, skinning weights, 51 static + 17 contour landmark embedding, hand
PCA placeholders), so it loads through the very same ``smplx.create`` code path as the real
model. Extra keys ``extra_vertex_ids`` hold the keypoint vertices that ``smplx`` hard-codes for
the 10,475-vertex mesh, remapped to this mesh.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .rig import (
    NUM_JOINTS,
    SMPLX_PARENTS,
    expression_blendshapes,
    eyeball_vertices,
    joint_regressor,
    landmark_embedding,
    pose_correctives,
    shape_blendshapes,
    skinning_weights,
)
from .surface import NOSE_TIP_Y, feature_displacement, swept_grid

VERSION = 1


def procedural_smplx_arrays(cols: int = 88) -> dict[str, np.ndarray]:
    """All arrays of the procedural model, keyed as in an SMPL-X ``.npz`` file."""
    grid = swept_grid(cols)
    features = feature_displacement(grid.vertices)
    v = grid.vertices + features
    f = grid.faces
    eyes = eyeball_vertices(v)
    lmk_faces, lmk_bary = landmark_embedding(v, f)
    shapedirs = np.concatenate([shape_blendshapes(v, features), expression_blendshapes(v)], axis=2)
    kintree = np.stack([SMPLX_PARENTS, np.arange(NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = 2**32 - 1
    front = np.argmax(v[:, 2] - 10 * np.abs(v[:, 0]) - 10 * np.abs(v[:, 1] - NOSE_TIP_Y))
    eye_front = [int(np.nonzero(eyes[s])[0][np.argmax(v[eyes[s], 2])]) for s in (-1, 1)]
    ears = [int(np.argmin(v[:, 0])), int(np.argmax(v[:, 0]))]
    chest = int(np.argmin(np.abs(v[:, 1] + 0.2) + np.abs(v[:, 0])))
    # smplx order: nose, reye, leye, rear, lear, 6 feet, 10 finger tips (no feet or hands here).
    extra = np.array([front, eye_front[0], eye_front[1], ears[0], ears[1]] + [chest] * 16, dtype=np.int64)
    eye_hands = np.eye(45, dtype=np.float32)
    return {
        "v_template": v.astype(np.float32),
        "f": f.astype(np.int64),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": pose_correctives(v).astype(np.float32),
        "J_regressor": joint_regressor(v, eyes).astype(np.float32),
        "kintree_table": kintree,
        "weights": skinning_weights(v, eyes).astype(np.float32),
        # smplx order: 51 static landmarks (iBUG 17..67), then 17 contour landmarks (iBUG 0..16)
        "lmk_faces_idx": lmk_faces[17:].astype(np.int64),
        "lmk_bary_coords": lmk_bary[17:].astype(np.float32),
        "dynamic_lmk_faces_idx": np.tile(lmk_faces[None, :17], (79, 1)).astype(np.int64),
        "dynamic_lmk_bary_coords": np.tile(lmk_bary[None, :17], (79, 1, 1)).astype(np.float32),
        "hands_componentsl": eye_hands, "hands_componentsr": eye_hands,
        "hands_meanl": np.zeros(45, np.float32), "hands_meanr": np.zeros(45, np.float32),
        "extra_vertex_ids": extra,
        "procedural_version": np.array(VERSION),
    }


def default_cache_dir() -> Path:
    root = os.environ.get("EXPPORTRAIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "expportrait")
    return Path(root) / f"procedural-v{VERSION}"


def write_procedural_smplx(directory: str | os.PathLike | None = None) -> Path:
    """Write (once) and return the path of the procedural ``SMPLX_NEUTRAL.npz``."""
    directory = Path(directory) if directory is not None else default_cache_dir()
    path = directory / "SMPLX_NEUTRAL.npz"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".SMPLX_NEUTRAL.{os.getpid()}.tmp.npz"
    np.savez(tmp, **procedural_smplx_arrays())
    os.replace(tmp, path)
    return path
