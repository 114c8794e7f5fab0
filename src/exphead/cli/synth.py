"""``exp-synth OUT_DIR``: write synthetic subjects with complete ground truth (for tests and benchmarks)."""

from __future__ import annotations

import argparse
import sys

from exphead.head_model import HeadModel
from exphead.synthetic.storage import write_synthetic_subject


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="exp-synth", description=__doc__)
    p.add_argument("out", help="output folder; subjects go to OUT/subject_<seed>")
    p.add_argument("--subjects", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the first subject")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--age", type=float, help="age-like wrinkle parameter in [0, 1] (random by default)")
    args = p.parse_args(argv)
    model = HeadModel()
    for k in range(args.subjects):
        seed = args.seed + k
        path = write_synthetic_subject(model, f"{args.out}/subject_{seed:04d}", seed, args.frames, args.size, args.age)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
