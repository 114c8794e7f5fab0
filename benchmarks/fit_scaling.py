"""Seconds and peak memory of ``fit_subject`` for F = 1, 8, 32, 128 frames.

Each F runs in a fresh child process (so ``peak_mem_mb``, the child's resident-set high-water
mark from ``ru_maxrss``, is its own) on a synthetic subject: tracking (all frames, batched) and a
fixed number of detail steps of ``frames_per_step`` frames each. Per-frame state (ψ_i, ω_i, pose,
Δf(i) on the face vertices, and their optimiser moments) grows linearly in F; a detail step's cost
does not depend on F. ``track_s`` and ``detail_s`` split the time.

    python benchmarks/fit_scaling.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[5]))
from exphead.fitting import FitConfig, fit_subject, synthetic_targets
from exphead.fitting.data import SubjectDataModule
from exphead.head_model import HeadModel
from exphead.tracking.tracker import TrackerConfig
frames, size, steps, track_steps = (int(a) for a in sys.argv[1:5])
model = HeadModel()
targets = synthetic_targets(model, 7, frames, size)
tracker = TrackerConfig(steps=track_steps)
t0 = time.time()
dm = SubjectDataModule(targets=targets, model=model, tracker=tracker)
dm.setup()
t1 = time.time()
fit_subject(targets, None, FitConfig(steps=steps, frames_per_step=4, tracker=tracker, show_progress=False),
            model=model)
t2 = time.time()
print(json.dumps({"track_s": t1 - t0, "fit_s": t2 - t1,
                  "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="128 px, 10 detail steps, 60 tracking steps")
    ap.add_argument("--json")
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--track-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.size, args.steps, args.track_steps = 128, 10, 60
    rows = []
    for f in args.frames:
        out = subprocess.run([sys.executable, "-c", CHILD, str(f), str(args.size), str(args.steps),
                              str(args.track_steps), str(args.threads)], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        # fit_subject re-tracks; detail time = its total minus one tracking pass
        detail = max(res["fit_s"] - res["track_s"], 0.0)
        rows.append({"frames": f, "seconds": res["track_s"] + detail, "track_s": res["track_s"],
                     "detail_s": detail, "detail_ms_per_step": 1000 * detail / max(args.steps, 1),
                     "peak_mem_mb": res["peak_mem_mb"]})
        print_table(rows[-1:])
    print_table(rows)
    meta = {**machine_meta(), "size": args.size, "detail_steps": args.steps, "track_steps": args.track_steps,
            "frames_per_step": 4, "threads": args.threads}
    if args.json:
        write_json(args.json, "fit_scaling", rows, meta)


if __name__ == "__main__":
    main()
