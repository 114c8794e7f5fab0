"""exp-clips with 1 and 2 processes (torchrun, gloo) on the same sources: seconds and clips per process count.

The sources are exp-synth subjects (their frames, landmarks and exact maps on disk), each fitted and cut into
clips from scratch in a fresh output folder per run; each process runs one torch thread, so 2 processes use the
machine's 2 cores.

    python benchmarks/clips_scaling.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 subjects of 9 frames at 64 px, 20 fit steps")
    ap.add_argument("--json")
    ap.add_argument("--subjects", type=int, default=6)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--fit-steps", type=int, default=60)
    args = ap.parse_args()
    if args.quick:
        args.subjects, args.frames, args.size, args.fit_steps = 4, 9, 64, 20
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "exphead.cli.synth", str(root / "subjects"), "--subjects",
                        str(args.subjects), "--frames", str(args.frames), "--size", str(args.size)], check=True,
                       env=env, capture_output=True)
        sources = sorted(str(p) for p in (root / "subjects").iterdir())
        for processes in (1, 2):
            out = root / f"clips_{processes}"
            clip_args = [*sources, "--out", str(out), "--driving", "fitted", "--num_frames", "9", "--hop", "8",
                         "--size", str(args.size), "--fit.image_size", str(args.size), "--fit.steps",
                         str(args.fit_steps), "--fit.tracker.steps", "100"]
            launch = [sys.executable, "-m", "expgen.cli.clips", *clip_args] if processes == 1 else \
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                 "-m", "expgen.cli.clips", *clip_args]
            start = time.perf_counter()
            subprocess.run(launch, check=True, env=env, capture_output=True)
            seconds = time.perf_counter() - start
            rows.append({"processes": processes, "sources": len(sources), "clips": len(list(out.glob("*.safetensors"))),
                         "seconds": seconds, "s_per_source": seconds / len(sources)})
            print_table(rows[-1:])
    rows[1]["speedup"] = rows[0]["seconds"] / rows[1]["seconds"]
    print_table(rows)
    if args.json:
        write_json(args.json, "clips_scaling", rows, {**machine_meta(), **vars(args), "threads_per_process": 1})


if __name__ == "__main__":
    main()
