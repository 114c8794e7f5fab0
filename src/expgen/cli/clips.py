"""exp-clips: build the video generator's training clips from fitted heads (paper Sec. 3.3, 4.1).

Each SOURCE (a video, a folder of frames, or an exp-synth subject folder) is one subject: its head is fitted
(or reused from --heads/<name>/), its frames are cut into clips, and each clip gets the driving normal maps
N^D (from the frozen expression transfer module, or the fitted details), the reference image I_R and its
normal map N^R. Re-running skips finished sources and existing clips.

  exp-clips videos/*.mp4 --out data/expgen-clips --transfer runs/transfer/last.ckpt
  exp-clips data/synth/subject_* --out data/clips-fitted --driving fitted --num_frames 17 --size 256
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from exphead.cli.common import CommandError, instantiate_config, make_parser, run_command
from exphead.head_model import HeadModel

from ..data.clip_builder import ClipBuildConfig, build_clips

log = logging.getLogger("exp-clips")


def build_parser():
    p = make_parser("exp-clips", __doc__)
    p.add_argument("sources", nargs="+", help="video files, frame folders or exp-synth subjects")
    p.add_argument("-o", "--out", required=True, help="clip folder (flat; VideoDataModule's data_dir)")
    p.add_argument("--transfer", help="trained transfer module: a TransferModule .ckpt or an "
                                      "ExpressionTransfer.save_pretrained folder (needed for --driving transfer)")
    p.add_argument("--heads", help="folder of fitted heads, HEADS/<name>/head.json (default OUT/heads)")
    p.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the procedural model)")
    p.add_argument("--level", type=int, help="subdivision level of the dense head model (default: the saved "
                                             "heads' own; 2 for new fits)")
    p.add_class_arguments(ClipBuildConfig, None, sub_configs=True)
    return p


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = instantiate_config(parser, args, ClipBuildConfig)
    model = HeadModel(args.smplx, 2 if args.level is None else args.level) \
        if args.smplx or args.level is not None else None
    report = build_clips(args.sources, args.out, args.transfer, cfg, args.heads, model)
    log.info("%d clip(s) written, %d already present, in %s", len(report.written), len(report.existing), args.out)
    for source, reason in report.failed.items():
        log.warning("skipped %s: %s", source, reason)
    if report.failed and not report.clips:
        raise CommandError(f"no clip written: all {len(report.failed)} source(s) failed (see the warnings)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-clips", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
