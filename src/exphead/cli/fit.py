"""``exp-fit SOURCE --out DIR``: fit a personalized head to a video, a folder of frames or an image."""

from __future__ import annotations

import argparse
import logging
import sys

from exphead.fitting import FitConfig, fit_subject
from exphead.head_model import HeadModel
from exphead.media import MediaError
from exphead.tracking.landmarks import NoFaceError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exp-fit", description=__doc__)
    p.add_argument("source", help="video file, folder of frames, image, or an exp-synth subject folder")
    p.add_argument("-o", "--out", required=True, help="output folder (head.json + head.safetensors, checkpoints)")
    p.add_argument("--maps", help="folder with normals/ and/or depth/ maps named like the frames")
    p.add_argument("--normal-model", metavar="PATH",
                   help="DAViD surface-normal ONNX model estimating the normal maps (default $EXPPORTRAIT_DAVID_NORMAL "
                        "when no normal maps are given); needs pip install 'expportrait[onnx]'")
    p.add_argument("--depth-model", metavar="PATH",
                   help="DAViD relative-depth ONNX model estimating the depth maps (default $EXPPORTRAIT_DAVID_DEPTH "
                        "when no depth maps are given)")
    p.add_argument("--foreground-model", metavar="PATH",
                   help="DAViD foreground-segmentation ONNX model whose matte (> 0.5) limits the model maps to the "
                        "person (default: the multi-task model when it gives the maps, else "
                        "$EXPPORTRAIT_DAVID_FOREGROUND); without one background pixels enter the losses")
    p.add_argument("--normal-frame", choices=["auto", "opengl", "opencv"], default="auto",
                   help="axes of the normal model's output: opengl (y up, z to the camera), opencv (y down, z forward) "
                        "or auto (from the sign of n_z at the image centre; default)")
    p.add_argument("--size", type=int, default=256, help="square crop size the fit runs at (default 256)")
    p.add_argument("--steps", type=int, default=300, help="detail-stage optimisation steps (default 300)")
    p.add_argument("--frames-per-step", type=int, default=4)
    p.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    p.add_argument("--max-frames", type=int, help="use at most this many frames")
    p.add_argument("--on-missing-face", choices=["skip", "fail"], default="skip",
                   help="frames without a face: skip with a warning, or fail (default skip)")
    p.add_argument("--depth-alignment", choices=["auto", "none", "shift", "scale_shift"], default="auto",
                   help="depth targets' alignment to the render: auto (default) = scale_shift for depth from "
                        "--depth-model (relative), none for metric depth maps")
    p.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the embedded procedural model)")
    p.add_argument("--export", action="store_true", help="also write neutral.ply and frame_000000.ply")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = FitConfig(image_size=args.size, steps=args.steps, frames_per_step=args.frames_per_step,
                    on_missing_face=args.on_missing_face, max_frames=args.max_frames, stride=args.stride,
                    depth_alignment=args.depth_alignment, normal_model=args.normal_model,
                    depth_model=args.depth_model, foreground_model=args.foreground_model,
                    normal_frame=args.normal_frame)
    try:
        model = HeadModel(args.smplx)
        head = fit_subject(args.source, args.out, cfg, model=model, maps=args.maps)
    except (MediaError, NoFaceError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"exp-fit: error: {err}", file=sys.stderr)
        return 2
    if args.export:
        head.export_neutral(f"{args.out}/neutral.ply")
        head.export_frame(f"{args.out}/frame_000000.ply", 0)
    logging.getLogger("exp-fit").info("saved %d-frame head to %s (tracking error %.2f px)", head.num_frames,
                                      args.out, head.meta.get("tracking_error_px", float("nan")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
