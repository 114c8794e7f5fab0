"""``exp-head-demo --out DIR``: build the default dense head, pose it with a few expressions, render
normal and depth maps, and write PNGs and PLY meshes (the exphead core on its embedded default)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from exphead.camera import Camera
from exphead.head_model import HeadModel, HeadParams, split_head_rotation
from exphead.media import contact_sheet, to_uint8, write_image
from exphead.mesh_io import export_mesh
from exphead.render import normal_to_image, render_normal_depth
from exphead.visualize import depth_to_image

from .common import make_parser, run_command

POSES = {
    "neutral": {},
    "smile": {"expression": {0: 2.0}},
    "jaw_open": {"jaw": 0.3},
    "brows_up_turn": {"expression": {3: 2.0}, "rotation": (0.0, 0.35, 0.0)},
    "pucker_nod": {"expression": {2: 2.0}, "rotation": (0.25, 0.0, 0.05)},
}


def demo_params(model: HeadModel) -> HeadParams:
    p = HeadParams.zeros(len(POSES), model.num_betas, model.num_expression)
    for i, spec in enumerate(POSES.values()):
        for k, v in spec.get("expression", {}).items():
            p.expression[i, k] = v
        p.jaw_pose[i, 0] = spec.get("jaw", 0.0)
        p.neck_pose[i], p.head_pose[i] = split_head_rotation(torch.tensor(spec.get("rotation", (0.0, 0.0, 0.0))))
    return p


def _main(argv: Sequence[str] | None) -> int:
    ap = make_parser("exp-head-demo", __doc__)
    ap.add_argument("-o", "--out", default="out/head_demo", help="output folder")
    ap.add_argument("--size", type=int, default=512, help="render resolution")
    ap.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the procedural model)")
    args = ap.parse_args(argv)
    if args.size < 16:
        raise ValueError(f"--size must be >= 16, got {args.size}")
    log = logging.getLogger("exp-head-demo")
    out = Path(args.out)
    model = HeadModel(args.smplx)
    log.info("head model: N=%d coarse vertices, N_s=%d dense vertices, %d dense faces",
             model.num_coarse, model.num_vertices, model.faces.shape[0])
    with torch.no_grad():
        heads = model(demo_params(model))
        r = render_normal_depth(heads.vertices, model.faces, Camera.portrait(len(POSES), args.size, args.size))
    normals, depths = to_uint8(normal_to_image(r.normal, r.mask)), to_uint8(depth_to_image(r.depth))
    for i, name in enumerate(POSES):
        write_image(out / f"{name}_normal.png", normals[i])
        write_image(out / f"{name}_depth.png", depths[i])
        export_mesh(out / f"{name}.ply", heads.vertices[i], model.faces)
    write_image(out / "contact_sheet.png", contact_sheet([list(normals), list(depths)]))
    log.info("wrote %d poses (normal/depth PNGs, PLY meshes) and contact_sheet.png to %s", len(POSES), out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-head-demo", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
