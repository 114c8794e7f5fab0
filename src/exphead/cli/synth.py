"""exp-synth OUT_DIR: write synthetic subjects with complete ground truth (for tests and benchmarks)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from exphead.head_model import HeadModel
from exphead.synthetic import write_synthetic_subject

from .common import make_parser, run_command

log = logging.getLogger("exp-synth")


def build_parser():
    p = make_parser("exp-synth", __doc__)
    p.add_argument("out", help="output folder; subjects go to OUT/subject_<seed>")
    p.add_argument("--subjects", type=int, default=1, help="number of subjects")
    p.add_argument("--seed", type=int, default=0, help="seed of the first subject")
    p.add_argument("--frames", type=int, default=16, help="frames per subject")
    p.add_argument("--size", type=int, default=256, help="frame side in pixels")
    p.add_argument("--age", type=float, help="age-like wrinkle parameter in [0, 1] (random by default)")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.subjects < 1 or args.frames < 1 or args.size < 16:
        raise ValueError(f"need --subjects >= 1, --frames >= 1 and --size >= 16, got {args.subjects}, "
                         f"{args.frames}, {args.size}")
    model = HeadModel()
    for k in range(args.subjects):
        seed = args.seed + k
        path = write_synthetic_subject(model, f"{args.out}/subject_{seed:04d}", seed, args.frames, args.size, args.age)
        log.info("%s", path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-synth", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
