"""Training the tiny generator on synthetic subjects improves held-out val loss and PSNR.

Claim: the embedded tiny configuration (``configs/expgen/tiny.yaml``: Wan-class DiT and VAE with tiny
widths, random init) learns, on a CPU in minutes, to animate held-out synthetic subjects from their
reference image and driving normal maps. The data are tiny.yaml's: clips of synthetic heads with exact
N^D / N^R (``expgen.data.subjects``), written by ``VideoDataModule.prepare_data``; the full run trains as
many steps as ``exp-train fit --config configs/expgen/tiny.yaml`` (``max_epochs`` x batches per epoch).
``--quick`` uses 4 + 1 subjects at 32 px, 5 frames, 120 steps.

Rows, one per evaluated ``step`` (0 and final): ``val_loss`` is ``Trainer.validate``'s ``val_loss``
(diffusion loss at fixed noise and timesteps, plus the weighted VAE loss) over the held-out subjects;
``psnr`` is the PSNR (dB, data range 1) of ``DiffusionModule.generate`` (UniPC, ``steps`` steps, fixed
seed) against the true frames, averaged over held-out clips. Also: ``recon_psnr``, the VAE's own
reconstruction PSNR (a ceiling for ``psnr``), and ``copy_reference_psnr``, the PSNR of repeating the
reference image (a floor a generator that ignores the normals would get near).

    python benchmarks/expgen_tiny.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torchmetrics.functional.image import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen import DiffusionModule, VideoDataModule  # noqa: E402
from expgen.vae import decode_latents, encode_video  # noqa: E402

log = logging.getLogger("expgen_tiny")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "expgen" / "tiny.yaml"


@torch.no_grad()
def psnr_scores(module: DiffusionModule, data: VideoDataModule, steps: int) -> dict[str, float]:
    """Mean PSNR over the validation clips of generated frames, VAE reconstructions and reference copies."""
    module.eval()
    scores: dict[str, list[float]] = {"psnr": [], "recon_psnr": [], "copy_reference_psnr": []}
    for i, batch in enumerate(data.val_dataloader()):
        frames = batch["frames"]
        generated = module.generate(batch["reference_image"], batch["reference_normal"], batch["driving_normals"],
                                    num_inference_steps=steps, generator=torch.Generator().manual_seed(i),
                                    progress=False)
        recon = decode_latents(module.vae, encode_video(module.vae, frames))
        copy = batch["reference_image"][:, None].expand_as(frames)
        for key, pred in (("psnr", generated), ("recon_psnr", recon), ("copy_reference_psnr", copy)):
            scores[key] += [float(peak_signal_noise_ratio(p, f, data_range=1.0)) for p, f in zip(pred, frames)]
    module.train()
    return {k: sum(v) / len(v) for k, v in scores.items()}


def evaluate(module: DiffusionModule, data: VideoDataModule, step: int, sample_steps: int, seconds: float
             ) -> dict[str, Any]:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(module, datamodule=data, verbose=False)[0]
    row = {"step": step, "val_loss": metrics["val_loss"], **psnr_scores(module, data, sample_steps),
           "val_diffusion_loss": metrics["val_diffusion_loss"], "val_vae_loss": metrics.get("val_vae_loss"),
           "train_s": seconds}
    log.info("step %d: %s", step, row)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer clips and steps")
    parser.add_argument("--json", type=Path, help="write the rows and metadata here")
    parser.add_argument("--steps", type=int, help="training steps (default: tiny.yaml's epochs; quick 120)")
    parser.add_argument("--lr", type=float, help="learning rate (default: tiny.yaml's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small convs scale poorly)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    config = yaml.safe_load(CONFIG.read_text())
    model_args = {**config["model"]["init_args"], **({"lr": args.lr} if args.lr else {})}
    data_args = config["data"]["init_args"]
    if args.quick:
        data_args = {**data_args, "synthetic_subjects": 4, "synthetic_size": 32, "resolution": 32,
                     "synthetic_frames": 5, "num_frames": 5}
    sample_steps = 10 if args.quick else model_args.get("num_inference_steps", 20)
    L.seed_everything(0, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        data = VideoDataModule(**{**data_args, "data_dir": tmp})
        start = time.perf_counter()
        data.prepare_data()
        write_s = time.perf_counter() - start
        data.setup("fit")
        clips, val_clips = len(data.train_set), len(data.val_set)
        epoch_steps = math.ceil(clips / data_args["batch_size"])
        train_steps = args.steps or (120 if args.quick else config["trainer"]["max_epochs"] * epoch_steps)
        log.info("wrote %d + %d clips in %.0f s; training %d steps", clips, val_clips, write_s, train_steps)
        module = DiffusionModule(**model_args)
        rows = [evaluate(module, data, 0, sample_steps, 0.0)]
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=train_steps, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0)
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        rows.append(evaluate(module, data, train_steps, sample_steps, time.perf_counter() - start))
    print_table(rows)
    if args.json:
        meta = {**machine_meta(), "config": str(CONFIG.relative_to(CONFIG.parents[2])), "model": model_args,
                "data": data_args, "train_clips": clips, "val_clips": val_clips, "write_s": write_s,
                "batch_size": data_args["batch_size"], "train_steps": train_steps, "sampling_steps": sample_steps,
                "sampler": "unipc", "load_average": os.getloadavg(), "quick": args.quick}
        write_json(args.json, "expgen_tiny", rows, meta)


if __name__ == "__main__":
    main()
