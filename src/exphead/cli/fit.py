"""exp-fit SOURCE --out DIR: fit a personalized head to a video, a folder of frames or an image.

  exp-fit talk.mp4 --out heads/talk --steps 300
  exp-fit me.jpg --out heads/me --normal_model david_normal.onnx --depth_model david_depth.onnx
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from exphead.fitting import FitConfig, fit_subject
from exphead.head_model import HeadModel

from .common import instantiate_config, make_parser, run_command

log = logging.getLogger("exp-fit")


def build_parser():
    p = make_parser("exp-fit", __doc__)
    p.add_argument("source", help="video file, folder of frames, image, or an exp-synth subject folder")
    p.add_argument("-o", "--out", required=True, help="output folder (head.json + head.safetensors, checkpoints)")
    p.add_argument("--maps", help="folder with normals/ and/or depth/ maps named like the frames")
    p.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the embedded procedural model)")
    p.add_argument("--export", action="store_true", help="also write neutral.ply and frame_000000.ply")
    p.add_class_arguments(FitConfig, None, sub_configs=True)
    return p


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = instantiate_config(parser, args, FitConfig)
    head = fit_subject(args.source, args.out, cfg, model=HeadModel(args.smplx), maps=args.maps)
    if args.export:
        head.export_neutral(f"{args.out}/neutral.ply")
        head.export_frame(f"{args.out}/frame_000000.ply", 0)
    log.info("saved %d-frame head to %s (tracking error %.2f px)", head.num_frames, args.out,
             head.meta.get("tracking_error_px", float("nan")))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-fit", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
