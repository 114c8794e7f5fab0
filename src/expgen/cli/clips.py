"""exp-clips: build the video generator's training clips from fitted heads (paper Sec. 3.3, 4.1).

Each SOURCE (a video, a folder of frames, or an exp-synth subject folder) is one subject: its head is fitted
(or reused from --heads/<name>/), its frames are cut into clips, and each clip gets the driving normal maps
N^D (from the frozen expression transfer module, or the fitted details), the reference image I_R and its
normal map N^R. Re-running skips finished sources and existing clips.

  exp-clips videos/*.mp4 --out data/expgen-clips --transfer runs/transfer/last.ckpt
  exp-clips data/synth/subject_* --out data/clips-fitted --driving fitted --num_frames 17 --size 256

Across processes and GPUs: launch it with torchrun; each rank fits and cuts its share of the sources (rank r
takes sources r, r + N, ...; on GPU machines rank r fits on cuda:<local rank>):

  torchrun --nproc_per_node 8 -m expgen.cli.clips videos/*.mp4 --out data/expgen-clips --transfer t.ckpt
  torchrun --nnodes 4 --nproc_per_node 8 --rdzv_endpoint HOST:29400 -m expgen.cli.clips ...
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import torch

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


def _distributed() -> tuple[int, int]:
    """``(rank, world size)`` of a torchrun launch (a gloo process group is set up), else ``(0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = instantiate_config(parser, args, ClipBuildConfig)
    rank, world = _distributed()
    if world > 1 and cfg.fit.accelerator == "auto":  # each rank fits on its own device
        cfg.fit.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    model = HeadModel(args.smplx, 2 if args.level is None else args.level) \
        if args.smplx or args.level is not None else None
    report = build_clips(args.sources, args.out, args.transfer, cfg, args.heads, model, rank=rank, world_size=world)
    counts = [len(report.written), len(report.existing), len(report.failed), len(report.clips)]
    if world > 1:
        import torch.distributed as dist

        everyone = [None] * world
        dist.all_gather_object(everyone, counts)
        counts = [sum(c[i] for c in everyone) for i in range(4)]
        dist.destroy_process_group()
    for source, reason in report.failed.items():
        log.warning("skipped %s: %s", source, reason)
    if rank == 0:
        log.info("%d clip(s) written, %d already present, in %s (%d process(es))", counts[0], counts[1], args.out,
                 world)
    if counts[2] and not counts[3]:
        raise CommandError(f"no clip written: all {counts[2]} source(s) failed (see the warnings)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-clips", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
