"""``exp-bench``: the paper's Table 1 protocols (Sec. 4.1) on RAVDESS, NeRSemble or any folder of videos.

Protocols (every frame cropped around the face, one box per clip, and resized to --size, 512 in the paper):
  self   reference = frame --reference-frame of a clip; driving = the next --num-frames frames at a
         temporal --stride; ground truth = the driving frames. Metrics: PSNR, SSIM, LPIPS, L1 (vs the
         ground truth), AED, APD (vs the driving motion), CSIM (vs the reference).
  cross  reference and driving clips of two different identities, no ground truth. Metrics: AED, APD, CSIM.

The split is drawn with --seed and written to OUT/manifest.json (clips, frame indices, crop boxes); a
manifest that exists is reused as it is. Results are cached per item (OUT/results/<method>/<item>.json),
so an interrupted run resumes. The report (OUT/report.md, .csv, .json, .html) has one row per method.

  exp-bench run --dataset ravdess --root RAVDESS --protocol self --methods ours reference_copy --out runs/self
  exp-bench run --dataset nersemble --root NERSEMBLE --protocol cross --out runs/cross
  exp-bench prepare --manifest runs/self/manifest.json --out inputs/      # inputs for other tools
  exp-bench score --manifest runs/self/manifest.json --generated liveportrait_out/ --out runs/self
  exp-bench report runs/self runs/cross --dest runs/table1
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from exphead.head_model import HeadModel
from exphead.media import MediaError, write_image, write_video
from exphead.tracking.landmarks import DlibLandmarkDetector, NoFaceError

from .datasets import NERSEMBLE_FRONTAL_CAMERA, load_dataset
from .protocols import Manifest, load_or_make_manifest, prepare_item
from .report import write_report
from .scoring import METRICS, Scorer, run_benchmark

logger = logging.getLogger("exp-bench")


def _split_args(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("dataset and split (ignored when the manifest exists)")
    g.add_argument("--dataset", choices=["ravdess", "nersemble", "folder"], required=required)
    g.add_argument("--root", required=required, help="dataset root folder")
    g.add_argument("--protocol", choices=["self", "cross"], required=required)
    g.add_argument("--size", type=int, default=512, help="frames are cropped and resized to SIZE x SIZE")
    g.add_argument("--stride", type=int, default=4, help="temporal stride between driving frames")
    g.add_argument("--num-frames", type=int, default=16, help="driving frames per item (at most)")
    g.add_argument("--num-items", type=int, help="items to draw (default: one per clip)")
    g.add_argument("--reference-frame", type=int, default=0, help="index of the reference frame in its clip")
    g.add_argument("--seed", type=int, default=0, help="seed of the selection")
    g.add_argument("--crop", choices=["face", "full"], default="face",
                   help="face: box around the detected face (2.4x its size); full: the centre square")
    g.add_argument("--select", action="append", default=[], metavar="KEY=V1,V2",
                   help="keep clips whose attribute KEY is one of the values, e.g. emotion_name=happy,angry, "
                        "vocal_channel=01, identity=Actor_01 (repeatable)")
    g.add_argument("--camera", nargs="+", default=[NERSEMBLE_FRONTAL_CAMERA],
                   help="NeRSemble camera serials, or 'all' (default: the frontal camera)")
    g.add_argument("--listing", help="folder dataset: CSV/JSON listing (video, identity[, id])")


def _scoring_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scoring")
    g.add_argument("--metrics", nargs="+", choices=METRICS, help="metrics to compute (default: all the protocol's)")
    g.add_argument("--lpips-backbone", help="LPIPS backbone file (torchvision AlexNet state dict); default: "
                                            "$EXPPORTRAIT_LPIPS_BACKBONE or the torch hub cache")
    g.add_argument("--motion-steps", type=int, default=300, help="AED/APD tracker iterations (full stage)")
    g.add_argument("--motion-size", type=int, default=256, help="AED/APD frames are tracked at this size")
    g.add_argument("--smplx", help="SMPLX_NEUTRAL.npz (default: $SMPLX_MODEL_PATH or the procedural model)")
    g.add_argument("--force", action="store_true", help="recompute cached results")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``exp-bench`` argument parser (subcommands manifest, prepare, run, score, report)."""
    p = argparse.ArgumentParser(prog="exp-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("manifest", help="draw a split and write its manifest")
    _split_args(m, required=True)
    m.add_argument("--out", required=True, help="manifest file to write (.json)")

    pr = sub.add_parser("prepare", help="write each item's cropped inputs: OUT/<item>/reference.png, driving.mp4")
    pr.add_argument("--manifest", required=True)
    pr.add_argument("--root", help="dataset root, if it moved since the manifest was made")
    pr.add_argument("--out", required=True)

    r = sub.add_parser("run", help="run methods on a split and score them")
    r.add_argument("--manifest", help="split to use (default: OUT/manifest.json, made from the dataset options)")
    _split_args(r, required=False)
    r.add_argument("--methods", nargs="+", default=["ours", "reference_copy"],
                   choices=["ours", "reference_copy", "driving_copy"],
                   help="ours: expgen's pipeline; reference_copy: every frame is the reference (no motion); "
                        "driving_copy: the driving frames (self: the ground truth; cross: the identity floor)")
    r.add_argument("--out", required=True, help="run folder")
    _scoring_args(r)
    o = r.add_argument_group("ours (expgen.pipeline.animate)")
    o.add_argument("--generator-weights", help="diffusion weights folder (default: the geometric generator)")
    o.add_argument("--transfer-weights", help="expression transfer module folder (exptransfer)")
    o.add_argument("--fit-size", type=int, default=256)
    o.add_argument("--fit-steps", type=int, default=120)
    o.add_argument("--track-steps", type=int, default=200, help="driving tracker iterations (full stage)")
    o.add_argument("--device", default="cpu")
    r.add_argument("--no-videos", action="store_true", help="do not keep the generated videos")

    s = sub.add_parser("score", help="score videos generated elsewhere (one per item, named <item id>.mp4)")
    s.add_argument("--manifest", required=True)
    s.add_argument("--root", help="dataset root, if it moved since the manifest was made")
    s.add_argument("--generated", required=True, help="folder of <item id>.mp4 (or <item id>/ frame folders)")
    s.add_argument("--name", help="method name in the report (default: the folder's name)")
    s.add_argument("--out", required=True, help="run folder")
    _scoring_args(s)

    rep = sub.add_parser("report", help="write the report of run folders (one table)")
    rep.add_argument("runs", nargs="+", help="run folders (e.g. a self and a cross run)")
    rep.add_argument("--dest", help="report folder (default: the first run folder)")
    return p


def _select(pairs: list[str]) -> dict[str, list[str]]:
    out = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--select expects KEY=V1,V2, got {pair!r}")
        out[key] = values.split(",")
    return out


def _manifest(args: argparse.Namespace, path: Path) -> Manifest:
    if args.dataset is None or args.root is None or args.protocol is None:
        raise ValueError(f"no manifest at {path}: give --manifest, or --dataset, --root and --protocol")
    cameras = None if args.camera == ["all"] else args.camera
    records = functools.partial(load_dataset, args.dataset, args.root, listing=args.listing, cameras=cameras,
                                select=_select(args.select))
    detector = _detector() if args.crop == "face" and not path.is_file() else None
    return load_or_make_manifest(path, records, dataset=args.dataset, root=args.root, protocol=args.protocol,
                                 size=args.size, stride=args.stride, num_frames=args.num_frames,
                                 num_items=args.num_items, reference_frame=args.reference_frame, seed=args.seed,
                                 crop=args.crop, detector=detector)


def _run_manifest(args: argparse.Namespace, out: Path) -> Manifest:
    """The run folder's manifest: a given one copied in (it must match any already there), or made."""
    target = out / "manifest.json"
    if args.manifest:
        given = Manifest.load(args.manifest, getattr(args, "root", None))
        if target.is_file() and Manifest.load(target).fingerprint() != given.fingerprint():
            raise ValueError(f"{out} holds results of another manifest: use a new --out folder")
        if not target.is_file():
            out.mkdir(parents=True, exist_ok=True)
            given.save(target)
        return given
    return _manifest(args, target)


@functools.cache
def _detector() -> DlibLandmarkDetector:
    """One dlib landmark detector for the crops, ours and the motion extractor (its model loads in seconds)."""
    return DlibLandmarkDetector()


def _scorer(args: argparse.Namespace, model: Callable[[], HeadModel], out: Path) -> Scorer:
    from exphead.tracking.tracker import TrackerConfig

    from .motion import TrackerMotionExtractor

    steps = args.motion_steps
    metrics = args.metrics
    motion = None
    if metrics is None or {"aed", "apd"} & set(metrics):
        config = TrackerConfig(rigid_steps=max(1, steps // 3), steps=steps)
        motion = TrackerMotionExtractor(model(), _detector(), config=config, size=args.motion_size)
    return Scorer(metrics, args.lpips_backbone, motion=motion, cache_dir=out / "cache" / "motion")


def _finish(out: Path) -> int:
    paths = write_report([out])
    logger.info("\n%s", paths["md"].read_text())
    logger.info("report: %s", ", ".join(str(p) for p in paths.values()))
    return 0


def _command(args: argparse.Namespace) -> int:
    if args.command == "manifest":
        manifest = _manifest(args, Path(args.out))
        logger.info("%d %s-reenactment items in %s", len(manifest.items), manifest.protocol, args.out)
        return 0
    if args.command == "prepare":
        manifest = Manifest.load(args.manifest, args.root)
        for item in manifest.items:
            prepared = prepare_item(manifest, item)
            write_image(Path(args.out) / item.id / "reference.png", prepared.reference)
            write_video(Path(args.out) / item.id / "driving.mp4", prepared.driving, prepared.fps)
        manifest.save(Path(args.out) / "manifest.json")
        logger.info("inputs of %d items in %s", len(manifest.items), args.out)
        return 0
    if args.command == "report":
        paths = write_report(args.runs, args.dest)
        logger.info("\n%s", paths["md"].read_text())
        return 0
    out = Path(args.out)
    manifest = _run_manifest(args, out)
    model = functools.cache(lambda: HeadModel(args.smplx))  # built only for ours and AED / APD
    scorer = _scorer(args, model, out)
    if args.command == "score":
        from .baselines import GeneratedVideos

        methods = [GeneratedVideos(args.generated, args.name)]
        run_benchmark(manifest, methods, out, scorer, args.force, progress=not args.no_progress)
        return _finish(out)
    from exphead.tracking.tracker import TrackerConfig

    from ..pipeline import AnimateConfig
    from .methods import make_method

    ours = AnimateConfig(fit_size=args.fit_size, fit_steps=args.fit_steps, generator_weights=args.generator_weights,
                         transfer_weights=args.transfer_weights, device=args.device,
                         tracker=TrackerConfig(rigid_steps=max(1, args.track_steps * 2 // 5), steps=args.track_steps))
    methods = [make_method(name, ours, model(), _detector()) if name == "ours" else make_method(name)
               for name in dict.fromkeys(args.methods)]
    run_benchmark(manifest, methods, out, scorer, args.force, not args.no_videos, not args.no_progress)
    return _finish(out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``exp-bench``; returns 0 on success, 2 on a usage or input error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _command(args)
    except (MediaError, NoFaceError, FileNotFoundError, ValueError, PermissionError) as err:
        logger.error("exp-bench: error: %s", err)
        return 2


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
