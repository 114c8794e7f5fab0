"""Accuracy of the personalized head on synthetic subjects (the paper's Fig. 7 ablation as numbers).

For each subject (known β, Δg, Δf(i), ψ_i, pose, camera), three fits are scored against the
ground truth, all in camera space:

* ``smplx`` — the tracker alone (SMPL-X parameters from landmarks, no detail fields);
* ``personalized`` — the full detail fit on landmarks + normal + depth maps of all frames;
* ``single_image`` — the full detail fit on frame 0 alone, scored on frame 0.

Columns: ``normal_error_deg`` (mean angle between rendered and true normals where both cover),
``depth_error_mm`` (mean absolute depth difference there), ``vertex_error_mm`` (mean distance
of all dense vertices) and ``face_vertex_error_mm`` (face region only).

Leakage rows (``method: leakage``), for the ``personalized`` fit, following Sec. 3.1.3
(Δg = the average geometry, Δf(i) = zero-mean deviations): ``static_in_dynamic`` =
‖mean_i Δf_fit(i)‖ / ‖Δg_true‖ and ``dynamic_in_static`` = ‖Δg_fit on the face‖ / rms_i ‖Δf_true(i)‖
(the true Δg is zero on the face). ``*_ideal`` columns give the same ratios for the true fields
re-centred by the principle (the floor a perfect fit reaches, since wrinkles are one-sided).

    python benchmarks/head_accuracy.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from exphead.camera import Camera  # noqa: E402
from exphead.fitting import FitConfig, FitTargets, fit_subject, synthetic_targets  # noqa: E402
from exphead.head_model import HeadModel  # noqa: E402
from exphead.render import render_normal_depth  # noqa: E402
from exphead.synthetic.subject import make_subject  # noqa: E402
from exphead.tracking.tracker import TrackerConfig, track_landmarks  # noqa: E402


def camera_space(cam: Camera, verts: torch.Tensor) -> torch.Tensor:
    return cam.expand(verts.shape[0]).world_to_camera(verts)


def scores(model: HeadModel, verts_cam: torch.Tensor, truth_cam: torch.Tensor, K: torch.Tensor, size: int) -> dict:
    eye = Camera(K.expand(verts_cam.shape[0], 3, 3), torch.eye(3).expand(verts_cam.shape[0], 3, 3),
                 torch.zeros(verts_cam.shape[0], 3), size, size)
    r = render_normal_depth(verts_cam, model.faces, eye)
    t = render_normal_depth(truth_cam, model.faces, eye)
    both = ((r.mask * t.mask)[:, 0] > 0)
    angle = torch.rad2deg(torch.acos((r.normal * t.normal).sum(1).clamp(-1, 1)))[both].mean()
    depth = (r.depth - t.depth)[:, 0][both].abs().mean() * 1000
    dist = (verts_cam - truth_cam).norm(dim=-1) * 1000
    face = model.face_mask > 0
    return {"normal_error_deg": angle.item(), "depth_error_mm": depth.item(),
            "vertex_error_mm": dist.mean().item(), "face_vertex_error_mm": dist[:, face].mean().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 subjects, 6 frames, 128 px, 60 steps")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.subjects, args.frames, args.size, args.steps = 2, 6, 128, 60
    torch.set_num_threads(args.threads)
    model = HeadModel()
    tracker = TrackerConfig()
    per_method: dict[str, list[dict]] = {"smplx": [], "personalized": [], "single_image": []}
    leak: list[dict] = []
    t0 = time.time()
    for k in range(args.subjects):
        seed = 100 + k
        targets = synthetic_targets(model, seed, args.frames, args.size)
        truth = make_subject(model, seed, args.frames, height=args.size, width=args.size)
        gt_cam = truth.camera.scaled(args.size, args.size)
        with torch.no_grad():
            truth_c = camera_space(gt_cam, model(truth.params, truth.delta_g, truth.delta_f).vertices)
        K = gt_cam.K
        tr = track_landmarks(model, targets.landmarks, args.size, args.size, tracker)
        with torch.no_grad():
            per_method["smplx"].append(scores(model, camera_space(tr.camera, model(tr.params).vertices), truth_c, K,
                                              args.size))
        cfg = FitConfig(steps=args.steps, frames_per_step=4, tracker=tracker, show_progress=False)
        head = fit_subject(targets, None, cfg, model=model)
        with torch.no_grad():
            fit_c = camera_space(head.camera, head.frame(slice(None)).vertices)
            per_method["personalized"].append(scores(model, fit_c, truth_c, K, args.size))
        one = FitTargets(targets.landmarks[:1], targets.valid[:1], args.size, args.size, targets.normal[:1],
                         targets.depth[:1], targets.mask[:1])
        single = fit_subject(one, None, FitConfig(steps=args.steps // 2, frames_per_step=1, tracker=tracker,
                                                  show_progress=False), model=model)
        with torch.no_grad():
            single_c = camera_space(single.camera, single.frame(0).vertices)
            per_method["single_image"].append(scores(model, single_c, truth_c[:1], K, args.size))
        # Leakage (Sec. 3.1.3), on the canonical fields.
        face = model.face_mask > 0
        mean_df_true = truth.delta_f.mean(0)
        g_ideal = truth.delta_g + mean_df_true
        rms_df = truth.delta_f[:, face].norm(dim=(1, 2)).pow(2).mean().sqrt()
        leak.append({"static_in_dynamic": (head.delta_f().mean(0).norm() / g_ideal.norm()).item(),
                     "dynamic_in_static": (head.delta_g[face].norm() / rms_df).item(),
                     "static_in_dynamic_ideal": 0.0,
                     "dynamic_in_static_ideal": (mean_df_true[face].norm() / rms_df).item()})
        print(f"subject {seed}: done at {time.time() - t0:.0f} s", file=sys.stderr)
    rows = []
    for method, items in per_method.items():
        row = {"method": method}
        for key in items[0]:
            row[key] = sum(i[key] for i in items) / len(items)
        rows.append(row)
    rows.append({"method": "leakage", **{k: sum(r[k] for r in leak) / len(leak) for k in leak[0]}})
    print_table(rows[:3])
    print_table(rows[3:])
    meta = {**machine_meta(), "subjects": args.subjects, "frames": args.frames, "size": args.size,
            "steps": args.steps, "seconds": time.time() - t0, "model": "procedural SMPL-X, level 2"}
    if args.json:
        write_json(args.json, "head_accuracy", rows, meta)


if __name__ == "__main__":
    main()
