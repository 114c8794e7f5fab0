"""exp-bench: the paper's Table 1 protocols (Sec. 4.1) on RAVDESS, NeRSemble or any folder of videos.

Protocols (every frame cropped around the face, one box per clip, and resized to --size, 512 in the paper):
  self   reference = frame --reference_frame of a clip; driving = the next --num_frames frames at a
         temporal --stride; ground truth = the driving frames. Metrics: PSNR, SSIM, LPIPS, L1 (vs the
         ground truth), AED, APD (vs the driving motion), CSIM (vs the reference).
  cross  reference and driving clips of two different identities, no ground truth. Metrics: AED, APD, CSIM.

The split is the fixed one shipped for the paper's Table 1 (--split paper: 20 RAVDESS / 80 NeRSemble videos,
see expgen/bench/splits), a split file (--split PATH), or drawn with --seed; it is written to OUT/manifest.json
(clips, frame indices, crop boxes found on your data) and a manifest that exists is reused as it is. Results
are cached per item (OUT/results/<method>/<item>.json), so an interrupted run resumes. The report
(OUT/report.md, .csv, .json, .html) has one row per method, the paper's Table 1 rows beside them, and names
what ran and what scored. Scoring: CSIM with dlib (default, not comparable to ArcFace) or --csim arcface
--arcface_model PATH; AED / APD / jitter / no-face with mediapipe's face mesh (default, independent of
ExpPortrait) or --motion tracker; LPIPS only with torchvision's hash-verified AlexNet file.

  exp-bench run --dataset ravdess --root RAVDESS --protocol self --split paper --methods ours reference_copy \
      --out runs/self
  exp-bench run --dataset nersemble --root NERSEMBLE --protocol cross --split paper --out runs/cross
  exp-bench prepare --manifest runs/self/manifest.json --out inputs/      # inputs for other tools
  exp-bench score --manifest runs/self/manifest.json --generated liveportrait_out/ --out runs/self
  exp-bench report runs/self runs/cross --dest runs/table1

"ours" is the expgen Animator with exactly exp-animate's configuration (options --ours.*, the same names
and defaults as exp-animate's); its output size, stride and frame count are the manifest's.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from exphead.cli.common import make_parser, run_command
from exphead.head_model import HeadModel
from exphead.media import write_image, write_video
from exphead.tracking import DlibFaceDetector, TrackerConfig, VideoTracker

from ..animator import AnimateConfig, Animator
from ..cli.animate import add_animate_options
from .datasets import NERSEMBLE_FRONTAL_CAMERA, load_dataset
from .protocols import Manifest, load_or_make_manifest, missing_clips, prepare_item, split_manifest
from .report import write_report
from .scoring import METRICS, MOTION_METRICS, Scorer, run_benchmark
from .splits import load_split

logger = logging.getLogger("exp-bench")
METHOD_NAMES = ("ours", "reference_copy", "driving_copy")


def _split_args(p: ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("dataset and split (ignored when the manifest exists)")
    g.add_argument("--dataset", choices=["ravdess", "nersemble", "folder"], required=required)
    g.add_argument("--root", required=required, help="dataset root folder")
    g.add_argument("--protocol", choices=["self", "cross"], required=required)
    g.add_argument("--size", type=int, default=512, help="frames are cropped and resized to SIZE x SIZE")
    g.add_argument("--stride", type=int, default=4, help="temporal stride between driving frames")
    g.add_argument("--num_frames", type=int, default=16, help="driving frames per item (at most)")
    g.add_argument("--num_items", type=int, help="items to draw (default: one per clip)")
    g.add_argument("--reference_frame", type=int, default=0, help="index of the reference frame in its clip")
    g.add_argument("--seed", type=int, default=0, help="seed of the selection")
    g.add_argument("--crop", choices=["face", "full"], default="face",
                   help="face: box around the detected face (2.4x its size); full: the centre square")
    g.add_argument("--select", nargs="+", default=[], help="keep clips whose attribute KEY is one of the "
                   "values: KEY=V1,V2 items, e.g. emotion_name=happy,angry vocal_channel=01 identity=Actor_01")
    g.add_argument("--camera", nargs="+", default=[NERSEMBLE_FRONTAL_CAMERA],
                   help="NeRSemble camera serials, or all (default: the frontal camera)")
    g.add_argument("--listing", help="folder dataset: CSV/JSON listing (video, identity[, id])")
    g.add_argument("--split", help="paper: the fixed split shipped for --dataset (the paper's 20 RAVDESS / 80 "
                   "NeRSemble videos), or a split file (.json); it fixes clips, frames and pairs, so --stride, "
                   "--num_frames, --num_items, --reference_frame, --seed and --select are not used")


def _scoring_args(p: ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--metrics", nargs="+", help=f"metrics to compute, of {list(METRICS)} (default: all the "
                   "protocol's)")
    g.add_argument("--lpips_backbone", help="LPIPS backbone file (torchvision AlexNet state dict); default: "
                                            "$EXPPORTRAIT_LPIPS_BACKBONE or the torch hub cache")
    g.add_argument("--csim", choices=["dlib", "arcface"], default="dlib",
                   help="CSIM embedder: dlib (offline default, not comparable to ArcFace) or arcface (the paper's; "
                        "needs --arcface_model)")
    g.add_argument("--arcface_model", help="insightface ArcFace recognition ONNX file (e.g. w600k_r50.onnx; 112x112 "
                                           "crops aligned by five landmarks)")
    g.add_argument("--motion", choices=["mediapipe", "tracker"], default="mediapipe",
                   help="AED/APD/jitter/no-face extractor: mediapipe's face mesh (independent of ExpPortrait) or "
                        "exphead's SMPL-X tracker (ExpPortrait's own; gives no jitter or no-face values)")
    g.add_argument("--motion_steps", type=int, default=300, help="--motion tracker: iterations (full stage)")
    g.add_argument("--motion_size", type=int, default=256, help="--motion tracker: frames are tracked at this size")
    g.add_argument("--smplx", help="--motion tracker: SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the "
                                   "procedural model)")
    g.add_argument("--force", action="store_true", help="recompute cached results")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")


def build_parser() -> ArgumentParser:
    """The ``exp-bench`` argument parser (subcommands manifest, prepare, run, score, report)."""
    p = make_parser("exp-bench", __doc__, config_file=False)
    sub = p.add_subcommands(required=True, dest="command")

    m = make_parser("exp-bench manifest", "draw a split and write its manifest")
    _split_args(m, required=True)
    m.add_argument("--out", required=True, help="manifest file to write (.json)")
    sub.add_subcommand("manifest", m, help="draw a split and write its manifest")

    pr = make_parser("exp-bench prepare", "write each item's cropped inputs")
    pr.add_argument("--manifest", required=True)
    pr.add_argument("--root", help="dataset root, if it moved since the manifest was made")
    pr.add_argument("--out", required=True)
    sub.add_subcommand("prepare", pr, help="write each item's cropped inputs: OUT/<item>/reference.png, driving.mp4")

    r = make_parser("exp-bench run", "run methods on a split and score them")
    r.add_argument("--manifest", help="split to use (default: OUT/manifest.json, made from the dataset options)")
    _split_args(r, required=False)
    r.add_argument("--methods", nargs="+", default=["ours", "reference_copy"],
                   help="of ours (expgen's animator), reference_copy (every frame is the reference: no motion), "
                        "driving_copy (the driving frames; self: the ground truth, cross: the identity floor)")
    r.add_argument("--out", required=True, help="run folder")
    _scoring_args(r)
    add_animate_options(r, "ours")
    r.add_argument("--no_videos", action="store_true", help="do not keep the generated videos")
    sub.add_subcommand("run", r, help="run methods on a split and score them")

    s = make_parser("exp-bench score", "score videos generated elsewhere")
    s.add_argument("--manifest", required=True)
    s.add_argument("--root", help="dataset root, if it moved since the manifest was made")
    s.add_argument("--generated", required=True, help="folder of <item id>.mp4 (or <item id>/ frame folders)")
    s.add_argument("--name", help="method name in the report (default: the folder's name)")
    s.add_argument("--describe", help="how the videos were made, for the report (tool, version, settings)")
    s.add_argument("--out", required=True, help="run folder")
    _scoring_args(s)
    sub.add_subcommand("score", s, help="score videos generated elsewhere (one per item, named <item id>.mp4)")

    rep = make_parser("exp-bench report", "write the report of run folders (one table)", config_file=False)
    rep.add_argument("runs", nargs="+", help="run folders (e.g. a self and a cross run)")
    rep.add_argument("--dest", help="report folder (default: the first run folder)")
    sub.add_subcommand("report", rep, help="write the report of run folders (one table)")
    return p


def _select(pairs: list[str]) -> dict[str, list[str]]:
    out = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--select expects KEY=V1,V2, got {pair!r}")
        out[key] = values.split(",")
    return out


def _manifest(args: Namespace, path: Path) -> Manifest:
    if args.dataset is None or args.root is None or args.protocol is None:
        raise ValueError(f"no manifest at {path}: give --manifest, or --dataset, --root and --protocol")
    if args.split:
        split = load_split(args.split, args.dataset)
        name = f"{split.name}: {split.source}"
        if path.is_file():
            held = Manifest.load(path)
            if held.split != name or held.protocol != args.protocol:
                raise ValueError(f"{path} holds the {held.protocol} manifest of split {held.split}, not the "
                                 f"{args.protocol} manifest of {name}: use another --out folder")
            return held
        detector = _detector() if args.crop == "face" else None
        manifest = split_manifest(split, args.root, args.protocol, size=args.size, crop=args.crop, detector=detector)
        manifest.save(path)
        logger.info("wrote manifest %s: %d items of split %s (%d left out)", path, len(manifest.items), name,
                    len(manifest.skipped))
        return manifest
    cameras = None if args.camera == ["all"] else args.camera
    records = functools.partial(load_dataset, args.dataset, args.root, listing=args.listing, cameras=cameras,
                                select=_select(args.select))
    detector = _detector() if args.crop == "face" and not path.is_file() else None
    return load_or_make_manifest(path, records, dataset=args.dataset, root=args.root, protocol=args.protocol,
                                 size=args.size, stride=args.stride, num_frames=args.num_frames,
                                 num_items=args.num_items, reference_frame=args.reference_frame, seed=args.seed,
                                 crop=args.crop, detector=detector)


def _run_manifest(args: Namespace, out: Path) -> Manifest:
    """The run folder's manifest: a given one copied in (it must match any already there), or made."""
    target = out / "manifest.json"
    if args.manifest:
        given = Manifest.load(args.manifest, args.get("root"))
        if target.is_file() and Manifest.load(target).fingerprint() != given.fingerprint():
            raise ValueError(f"{out} holds results of another manifest: use a new --out folder")
        if not target.is_file():
            out.mkdir(parents=True, exist_ok=True)
            given.save(target)
        manifest = given
    else:
        out.mkdir(parents=True, exist_ok=True)
        manifest = _manifest(args, target)
    _check_clips(manifest)
    return manifest


def _check_clips(manifest: Manifest) -> None:
    """One error naming every clip of the manifest missing under its root."""
    missing = missing_clips(manifest)
    if missing:
        listing = "\n  ".join(missing)
        raise FileNotFoundError(f"{len(missing)} clips of the manifest are missing under {manifest.root}:\n  "
                                f"{listing}\nGive --root the dataset root the manifest was made on.")


@functools.cache
def _detector() -> DlibFaceDetector:
    """One dlib face detector for the crops, ours and the motion extractor (its model loads in seconds)."""
    return DlibFaceDetector()


def _scorer(args: Namespace, model: Callable[[], HeadModel], out: Path) -> Scorer:
    from exphead.metrics import ArcFaceOnnxEmbedder, MediaPipeMotionExtractor, TrackerMotionExtractor

    motion = None
    if args.metrics is None or set(MOTION_METRICS) & set(args.metrics):
        if args.motion == "tracker":
            tracker = VideoTracker(TrackerConfig(steps=args.motion_steps), args.motion_size, _detector(), model())
            motion = TrackerMotionExtractor(tracker)
        else:
            motion = MediaPipeMotionExtractor()
    embedder = None
    if args.csim == "arcface":
        if not args.arcface_model:
            raise ValueError("--csim arcface needs --arcface_model PATH (an insightface recognition ONNX file, e.g. "
                             "w600k_r50.onnx); or use --csim dlib")
        embedder = ArcFaceOnnxEmbedder(args.arcface_model)
    elif args.arcface_model:
        raise ValueError("--arcface_model is used with --csim arcface only: add --csim arcface")
    return Scorer(args.metrics, args.lpips_backbone, embedder=embedder, motion=motion,
                  cache_dir=out / "cache" / "motion")


def ours_config(config: AnimateConfig, manifest_size: int) -> AnimateConfig:
    """The animator configuration of "ours": exp-animate's options as given, with the output size, stride and
    frame count of the manifest (its items are already cropped and sampled) and no progress bars."""
    return replace(config, size=manifest_size, stride=1, max_frames=None, show_progress=False)


def _finish(out: Path) -> int:
    paths = write_report([out])
    logger.info("\n%s", paths["md"].read_text())
    logger.info("report: %s", ", ".join(str(p) for p in paths.values()))
    return 0


def _command(args: Namespace) -> int:
    """Run the parsed and instantiated command (``args.run.ours`` is an :class:`AnimateConfig`)."""
    command = args.command
    sub = args[command]
    if command == "manifest":
        manifest = _manifest(sub, Path(sub.out))
        logger.info("%d %s-reenactment items in %s", len(manifest.items), manifest.protocol, sub.out)
        return 0
    if command == "prepare":
        manifest = Manifest.load(sub.manifest, sub.root)
        _check_clips(manifest)
        for item in manifest.items:
            prepared = prepare_item(manifest, item)
            write_image(Path(sub.out) / item.id / "reference.png", prepared.reference)
            write_video(Path(sub.out) / item.id / "driving.mp4", prepared.driving, prepared.fps)
        manifest.save(Path(sub.out) / "manifest.json")
        logger.info("inputs of %d items in %s", len(manifest.items), sub.out)
        return 0
    if command == "report":
        paths = write_report(sub.runs, sub.dest)
        logger.info("\n%s", paths["md"].read_text())
        return 0
    out = Path(sub.out)
    manifest = _run_manifest(sub, out)
    model = functools.cache(lambda: HeadModel(sub.smplx))  # built only for AED / APD
    scorer = _scorer(sub, model, out)
    if command == "score":
        from .baselines import GeneratedVideos

        methods = [GeneratedVideos(sub.generated, sub.name, sub.describe)]
        run_benchmark(manifest, methods, out, scorer, sub.force, progress=not sub.no_progress)
        return _finish(out)
    from .methods import make_method

    unknown = sorted(set(sub.methods) - set(METHOD_NAMES))
    if unknown:
        raise ValueError(f"unknown methods {unknown}: use {list(METHOD_NAMES)}, or score videos made elsewhere "
                         "with exp-bench score --generated DIR")
    animator = None
    if "ours" in sub.methods:
        animator = Animator(ours_config(sub.ours, manifest.size), detector=_detector())
    methods = [make_method(name, animator) for name in dict.fromkeys(sub.methods)]
    run_benchmark(manifest, methods, out, scorer, sub.force, not sub.no_videos, not sub.no_progress)
    return _finish(out)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    return _command(parser.instantiate(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``exp-bench``; returns 0 on success, 2 on a usage or input error."""
    return run_command("exp-bench", _main, argv)


__all__ = ["build_parser", "main", "ours_config"]

if __name__ == "__main__":
    sys.exit(main())
