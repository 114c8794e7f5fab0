"""How much of a head turn does the geometric generator show? A pose sweep read by a detector the tracker does not use.

The README's reference (``skimage.data.astronaut()``) is fitted as exp-animate fits it, then its mesh is posed
with known head rotations only (no expression): yaw, pitch and roll from ``-max`` to ``+max`` degrees, one axis at
a time, applied to the neck and head joints as the tracker's rotation is. The geometric generator warps the
reference along each posed mesh, and mediapipe's face mesh reads the output's pose
(:func:`exphead.metrics.face_channels.face_channels`). Per axis: the slope of the read angle over the applied one
(1: the output shows the whole turn), its correlation, and the read angles; and the mouth's opening as mediapipe
reads it, over its reading on the unturned face (``mouth_at_min`` / ``mouth_at_max`` at ``-max`` / ``+max``, the
list in ``mouth``): the lips do not move, so 1 is right (a tilt down that hides the reference's teeth reads far
below 1).

``--depth`` repeats the sweep with the reference mesh's depth stretched about its landmarks' centre (the mesh
turned rigidly about that centre, so the comparison is between depths only): how much of what is missing is the
face's parallax, which a 2D warp shows only as far as the mesh's depth makes it move.

    python benchmarks/pose_rendering.py [--json PATH] [--max-angle 20] [--steps 9] [--depth 1 2]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen.animator import AnimateConfig, Animator  # noqa: E402
from expgen.examples import real_driving_video  # noqa: E402
from expgen.generators import GeneratorInputs  # noqa: E402
from expgen.stream import Plan  # noqa: E402
from exphead.head_model import split_head_rotation  # noqa: E402
from exphead.metrics.face_channels import face_channels, pearson  # noqa: E402
from exphead.metrics.mediapipe_motion import MediaPipeMotionExtractor  # noqa: E402
from exphead.rotations import axis_angle_to_matrix, matrix_to_axis_angle  # noqa: E402
from exptransfer import still_params, transfer  # noqa: E402

AXES = {"pitch": 0, "yaw": 1, "roll": 2}  # axis-angle component of each turn (camera: x right, y up, z to it)
SIGN = {"pitch": -1.0, "yaw": 1.0, "roll": 1.0}  # face_channels' sign of a positive turn about that axis


def generate(animator: Animator, plan: Plan, vertices: torch.Tensor, landmarks: torch.Tensor,
             ref_vertices: torch.Tensor, ref_landmarks: torch.Tensor) -> torch.Tensor:
    """The geometric generator's frames ``F x 3 x S x S`` for driven meshes ``F x N x 3`` / ``F x 68 x 3``."""
    inputs = GeneratorInputs(plan.reference, plan.reference_normal, ref_vertices, vertices, landmarks,
                             animator.model.faces, plan.camera, animator.model.head_weight(), ref_landmarks, None,
                             plan.reference_box.inside(plan.reference.shape[-1]), None, plan.reference_marks)
    return animator.generator(inputs).frames


def sweep(animator: Animator, plan: Plan, axis: str, angles: torch.Tensor, depth: float | None) -> torch.Tensor:
    """Frames of the reference turned by ``angles`` (degrees) about ``axis``: through the neck and head joints
    (``depth`` None), or rigidly about the landmarks' centre with the mesh's depth scaled by ``depth``."""
    turn = torch.zeros(len(angles), 3)
    turn[:, AXES[axis]] = angles * (math.pi / 180)
    with torch.no_grad():
        still = transfer(plan.head, still_params(plan.head, 1), None)
        vertices, landmarks = still.vertices[0], still.landmarks[0]
        if depth is None:
            params = still_params(plan.head, len(angles))
            rotation = axis_angle_to_matrix(turn) @ axis_angle_to_matrix(params.neck_pose + params.head_pose)
            params.neck_pose, params.head_pose = split_head_rotation(matrix_to_axis_angle(rotation))
            driven = transfer(plan.head, params, None)
            return generate(animator, plan, driven.vertices, driven.landmarks, vertices, landmarks)
        centre = landmarks.mean(dim=0)
        stretch = torch.tensor([1.0, 1.0, depth])
        vertices, landmarks = (vertices - centre) * stretch + centre, (landmarks - centre) * stretch + centre
        rotation = axis_angle_to_matrix(turn).transpose(1, 2)
        return generate(animator, plan, (vertices - centre) @ rotation + centre,
                        (landmarks - centre) @ rotation + centre, vertices, landmarks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--max-angle", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--depth", type=float, nargs="*", default=[1.0, 2.0], help="depth stretches of the rigid sweep")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    animator = Animator(AnimateConfig(size=args.size, max_frames=2, show_progress=False))
    plan = animator.prepare(data.astronaut(), str(real_driving_video()))
    extractor = MediaPipeMotionExtractor()
    angles = torch.linspace(-args.max_angle, args.max_angle, args.steps)
    rows: list[dict[str, Any]] = []
    for axis in AXES:
        for depth in [None, *args.depth]:
            if depth is not None and axis != "yaw":
                continue  # parallax matters for turns out of the image plane; yaw is the one the clips lack
            frames = sweep(animator, plan, axis, angles, depth)
            points, _ = extractor.landmarks(frames)
            channels = face_channels(points)
            read = channels[axis] * SIGN[axis]
            mouth = channels["mouth"] / channels["mouth"][len(angles) // 2]  # the lips do not move: 1 is right
            read = read - read[len(angles) // 2]  # the reference's own reading at 0 (a frontal face reads a pitch)
            ok = read.isfinite()
            slope = float(np.polyfit(angles[ok].numpy(), read[ok].numpy(), 1)[0]) if ok.sum() > 2 else float("nan")
            rows.append({"axis": axis, "turn": "neck" if depth is None else f"rigid, depth x{depth:g}",
                         "slope": slope, "corr": pearson(read, angles.double()),
                         "mouth_at_min": float(mouth[0]), "mouth_at_max": float(mouth[-1]),
                         "read": [round(float(v), 2) for v in read],
                         "mouth": [round(float(v), 3) for v in mouth]})
    print_table([{k: v for k, v in row.items() if k not in ("read", "mouth")} for row in rows])
    meta = {**machine_meta(), "size": args.size, "angles": angles.tolist(), "detector": extractor.label(),
            "reference": "skimage.data.astronaut(), fitted as exp-animate fits it (landmarks only)"}
    if args.json:
        write_json(args.json, "pose_rendering", rows, meta)


if __name__ == "__main__":
    main()
