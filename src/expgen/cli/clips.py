"""``exp-clips``: build the video generator's training clips from fitted heads (paper Sec. 3.3, 4.1).

Each SOURCE (a video, a folder of frames, or an ``exp-synth`` subject folder) is one subject: its head is fitted
(or reused from ``--heads/<name>/``), its frames are cut into clips, and each clip gets the driving normal maps
N^D (from the frozen expression transfer module, or the fitted details), the reference image I_R and its
normal map N^R. Re-running skips finished sources and existing clips.

    exp-clips videos/*.mp4 --out data/expgen-clips --transfer runs/transfer/last.ckpt
    exp-clips data/synth/subject_* --out data/clips-fitted --driving fitted --frames 17 --size 256
"""

from __future__ import annotations

import argparse
import logging
import sys

from exphead.fitting import FitConfig
from exphead.head_model import HeadModel

from ..data.heads import ClipBuildConfig, build_clips


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exp-clips", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="video file, frame folder or exp-synth subject")
    p.add_argument("-o", "--out", required=True, help="clip folder (flat; VideoDataModule's data_dir)")
    p.add_argument("--transfer", help="trained transfer module: a TransferModule .ckpt or an "
                                      "ExpressionTransfer.save_pretrained folder (needed for --driving transfer)")
    p.add_argument("--driving", choices=["transfer", "fitted"], default="transfer",
                   help="N^D from the frozen transfer module (paper) or from the fitted expression details")
    p.add_argument("--frames", type=int, default=81, help="frames per clip, 1 + 4k (default 81)")
    p.add_argument("--size", type=int, default=512, help="clip side in pixels (default 512)")
    p.add_argument("--stride", type=int, default=1, help="use every n-th source frame")
    p.add_argument("--hop", type=int, help="frames between clip starts (default: --frames, no overlap)")
    p.add_argument("--max-frames", type=int, help="read at most this many frames per source (after --stride)")
    p.add_argument("--reference", choices=["outside", "first"], default="outside",
                   help="I_R: a random frame outside the clip (default) or the first frame of the video")
    p.add_argument("--heads", help="folder of fitted heads, HEADS/<name>/head.json (default OUT/heads)")
    p.add_argument("--fit-size", type=int, default=256, help="side of the crops the heads are fitted at")
    p.add_argument("--fit-steps", type=int, default=300, help="detail-fit steps per head (default 300)")
    p.add_argument("--skip-bad", action="store_true", help="skip sources that cannot be used instead of stopping")
    p.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the procedural model)")
    p.add_argument("--level", type=int, help="subdivision level of the dense head model (default: the saved "
                                             "heads' own; 2 for new fits)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference-frame choice")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("exp-clips")
    cfg = ClipBuildConfig(num_frames=args.frames, size=args.size, stride=args.stride, hop=args.hop,
                          max_frames=args.max_frames, driving=args.driving, reference=args.reference,
                          on_error="skip" if args.skip_bad else "fail", seed=args.seed,
                          fit=FitConfig(image_size=args.fit_size, steps=args.fit_steps, show_progress=False))
    try:
        model = HeadModel(args.smplx, 2 if args.level is None else args.level) \
            if args.smplx or args.level is not None else None
        report = build_clips(args.sources, args.out, args.transfer, cfg, args.heads, model)
    except (ValueError, OSError) as err:
        parser.exit(2, f"exp-clips: error: {err}\n")
    log.info("%d clip(s) written, %d already present, in %s", len(report.written), len(report.existing), args.out)
    for source, reason in report.failed.items():
        log.warning("skipped %s: %s", source, reason)
    return 1 if report.failed and not report.clips else 0


if __name__ == "__main__":
    sys.exit(main())
