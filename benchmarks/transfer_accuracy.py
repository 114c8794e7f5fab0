"""Cross-identity expression transfer accuracy (paper Sec. 3.2, Fig. 8 ablation) on synthetic identities.

Drivers and targets are synthetic identities held out from training, paired with different ages (they
differ by at least 0.35 on the [0, 1] age scale). Identities carry resting creases of ``--resting-creases``
times their full wrinkle depth (:mod:`exptransfer.synthetic`; 0 = exphead's subjects, whose age is
invisible in V_neutral). The ground truth is the target's own identity-adapted
Δf for the driver's ψ (:func:`exptransfer.adapted_details`). Methods, all on the target's canonical
detailed mesh V_neutral + B(E ψ_driver) + Δf:

* ``none``: no dynamic offsets (SMPL-X expression only);
* ``copy``: the driver's own Δf(i) copied onto the target (the paper's Fig. 8 baseline);
* ``module``: Δf(i) predicted by the transfer module (trained here unless ``--checkpoint``).

Columns: ``vertex_error_mm`` (mean over face vertices and frames) and ``normal_error_deg`` (mean angle of
the face vertex normals), plus ``detail_ratio`` (mean |Δf| predicted / ground truth: 1 = as expressive).

    python benchmarks/transfer_accuracy.py --quick --json results/transfer_accuracy.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from exphead.head_model import HeadModel, HeadParams  # noqa: E402
from exptransfer import (  # noqa: E402
    TransferDataModule,
    TransferModule,
    adapted_details,
    load_transfer,
    transfer,
    write_synthetic_heads,
)
from exptransfer.metrics import normal_error_deg, vertex_error_mm  # noqa: E402
from exptransfer.synthetic import make_creased_subject  # noqa: E402

EVAL_SEED = 100_000  # evaluation identities are drawn far from the training seeds (0 ..)


def train_module(model: HeadModel, root: Path, args: argparse.Namespace) -> TransferModule:
    """Train a TransferModule (small-config settings) on ``args.train_subjects`` synthetic heads."""
    write_synthetic_heads(root, args.train_subjects, args.train_frames, seed=0, model=model,
                          resting_creases=args.resting_creases)
    data = TransferDataModule(root=str(root), val_fraction=0.1, frames_per_sample=8, vertices_per_sample=1024,
                              samples_per_epoch=8 * args.steps, batch_size=8, seed=0)
    data.head_model = model
    module = TransferModule(hidden_dim=args.hidden, lr=args.lr)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    return module


def evaluate(model: HeadModel, net: torch.nn.Module, pairs: int, frames: int,
             resting_creases: float) -> tuple[list[dict], list[dict]]:
    """Per-method rows averaged over ``pairs`` (driver, target) pairs, and per-pair details."""
    g = torch.Generator().manual_seed(0)
    sums: dict[str, list[float]] = {m: [0.0, 0.0, 0.0] for m in ("none", "copy", "module")}
    details = []
    for k in range(pairs):
        age_d = float(torch.rand(1, generator=g))
        age_t = (age_d + 0.35 + 0.3 * float(torch.rand(1, generator=g))) % 1.0
        driver = make_creased_subject(model, EVAL_SEED + 2 * k, frames, age_d, resting_creases)
        target = make_creased_subject(model, EVAL_SEED + 2 * k + 1, frames, age_t, resting_creases)
        truth = adapted_details(model, target, driver.params.expression)
        predictions = {"none": torch.zeros_like(truth), "copy": driver.delta_f,
                       "module": transfer(target.head(model), driver.params, net).delta_f}
        params = HeadParams.zeros(frames, model.num_betas, model.num_expression)
        params.betas, params.expression = target.params.betas, driver.params.expression
        base = model.canonical(params, target.delta_g)
        gt_mesh = base + truth
        row = {"pair": k, "age_driver": round(age_d, 3), "age_target": round(age_t, 3)}
        for method, delta_f in predictions.items():
            mesh = base + delta_f
            ve = float(vertex_error_mm(mesh, gt_mesh, model.face_mask))
            ne = float(normal_error_deg(mesh, gt_mesh, model.faces, model.face_mask))
            ratio = float(delta_f.norm(dim=-1).sum() / truth.norm(dim=-1).sum().clamp_min(1e-12))
            sums[method] = [s + v for s, v in zip(sums[method], (ve, ne, ratio))]
            row[f"{method}_vertex_error_mm"], row[f"{method}_normal_error_deg"] = ve, ne
        details.append(row)
    rows = [{"method": m, "vertex_error_mm": s[0] / pairs, "normal_error_deg": s[1] / pairs,
             "detail_ratio": s[2] / pairs} for m, s in sums.items()]
    return rows, details


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer identities and training steps (about a minute)")
    parser.add_argument("--json", type=Path, help="write the rows and settings to this JSON file")
    parser.add_argument("--checkpoint", type=Path, help="a saved transfer module (folder or .ckpt) instead of training")
    parser.add_argument("--train-subjects", type=int, help="synthetic training identities")
    parser.add_argument("--train-frames", type=int, default=16, help="frames per training identity")
    parser.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--hidden", type=int, default=64, help="width of G")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--pairs", type=int, help="evaluated (driver, target) pairs")
    parser.add_argument("--frames", type=int, default=16, help="driving frames per pair")
    parser.add_argument("--resting-creases", type=float, default=0.15,
                        help="resting-crease depth of the synthetic identities, as a fraction of their wrinkle depth")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work-dir", type=Path, help="where the synthetic training heads are written (default: temp)")
    args = parser.parse_args(argv)
    args.train_subjects = args.train_subjects or (16 if args.quick else 48)
    args.steps = args.steps or (120 if args.quick else 600)
    args.pairs = args.pairs or (4 if args.quick else 12)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    L.seed_everything(0, verbose=False)

    model = HeadModel()
    start = time.time()
    if args.checkpoint is not None:
        net = load_transfer(args.checkpoint)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            name = f"heads-n{args.train_subjects}-f{args.train_frames}-r{args.resting_creases:g}"
            root = (args.work_dir or Path(tmp)) / name
            net = train_module(model, root, args).net
    train_s = time.time() - start
    net.eval()
    rows, details = evaluate(model, net, args.pairs, args.frames, args.resting_creases)
    print_table(rows)
    by = {r["method"]: r for r in rows}
    for base in ("copy", "none"):
        for col in ("vertex_error_mm", "normal_error_deg"):
            gain = 100 * (1 - by["module"][col] / by[base][col])
            logging.info("module vs %s: %s %.1f %% lower", base, col, gain)
    if args.json:
        meta = {**machine_meta(), "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "train_seconds": round(train_s, 1), "pairs": details,
                "ground_truth": "exptransfer.adapted_details (target identity, driver expression)"}
        write_json(args.json, "transfer_accuracy", rows, meta)


if __name__ == "__main__":
    main()
