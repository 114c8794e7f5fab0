"""Speed of the ExpPortrait denoiser: wrapper overhead over the bare Wan DiT, and sampling time per frame.

``bare_ms`` is diffusers' ``WanTransformer3DModel.forward`` on noisy latents ``z_t`` with a zero
512-token context; ``wrapped_ms`` is ``ExpPortraitTransformer`` with the same backbone weights on the
same ``z_t``: ``encode_conditions`` (pose encoder over the driving normals, reference encoder,
reference tokens) plus ``forward`` (pose tokens, reference cross-attention), i.e. one training step's
forward; ``wrapped_step_ms`` is ``forward`` alone with the conditions encoded once, i.e. one sampling
step. The calls alternate, after a warm-up, under ``torch.no_grad``; each time is the fastest of the
repeats (other processes on a shared machine only ever add time); ``overhead_ratio = wrapped_ms /
bare_ms``. The ``wan1.3b-width`` case has Wan2.1-T2V-1.3B's widths (12 x 128 heads, FFN 8960, text
4096, 16 latent channels) but 2 of its 30 blocks, randomly initialised, so its ratio overstates the
real model's overhead.
``sample_s_per_frame`` is ``expgen.generate`` end to end (reference VAE encode, ``steps`` UniPC
steps, VAE decode) divided by the number of frames.

    python benchmarks/expgen_speed.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from diffusers import WanTransformer3DModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_meta, print_table, write_json  # noqa: E402

from expgen.backbone import TINY_TRANSFORMER_CONFIG, build_backbone  # noqa: E402
from expgen.objectives import FlowMatchingObjective  # noqa: E402
from expgen.sampling import generate  # noqa: E402
from expgen.transformer import CONDITION_CONFIG_KEYS, TEXT_CONTEXT_LENGTH  # noqa: E402

log = logging.getLogger("expgen_speed")

WAN13_WIDTHS = {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "text_dim": 4096,
                "freq_dim": 256, "in_channels": 16, "out_channels": 16, "num_layers": 2,
                "pose_encoder_channels": (32, 64, 128), "pose_encoder_out_channels": 256,
                "reference_encoder_channels": (32, 64, 128), "reference_encoder_out_channels": 256}
VAE16 = {"z_dim": 16, "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16}

# (name, size, frames, transformer overrides, tiny-VAE overrides)
CASES = [
    ("tiny-64px-9f", 64, 9, {}, {}),
    ("tiny-128px-17f", 128, 17, {}, {}),
    ("wan1.3b-width-2blocks-128px-17f", 128, 17, WAN13_WIDTHS, VAE16),
]


def fastest_ms(fns: list, repeats: int) -> list[float]:
    """Best wall time in ms of each callable, calling them in turn ``repeats`` times after one warm-up."""
    best = [float("inf")] * len(fns)
    for i in range(repeats + 1):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            if i:
                best[k] = min(best[k], (time.perf_counter() - start) * 1e3)
    return best


def run_case(name: str, size: int, frames: int, overrides: dict[str, Any], vae_overrides: dict[str, Any],
             repeats: int, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    transformer, vae = build_backbone("tiny", transformer_config=overrides, vae_config=vae_overrides)
    transformer.eval()
    base_config = {k: v for k, v in transformer.config.items()
                   if k not in CONDITION_CONFIG_KEYS and not k.startswith("_")}
    bare = WanTransformer3DModel(**base_config).eval()
    bare.load_state_dict(transformer.state_dict(), strict=False)
    g = torch.Generator().manual_seed(0)
    f, s, c = 1 + (frames - 1) // 4, size // 8, transformer.config.in_channels
    z = torch.randn(1, c, f, s, s, generator=g)
    t = torch.tensor([500.0])
    context = torch.zeros(1, TEXT_CONTEXT_LENGTH, transformer.config.text_dim)
    driving = torch.rand(1, frames, 3, size, size, generator=g)
    ref_latent = torch.randn(1, c, 1, s, s, generator=g)
    ref_image, ref_normal = torch.rand(1, 3, size, size, generator=g), torch.rand(1, 3, size, size, generator=g)
    with torch.no_grad():
        conditions = transformer.encode_conditions(driving, ref_latent, ref_normal)
        bare_ms, wrapped_ms, step_ms = fastest_ms([
            lambda: bare(z, t, context),
            lambda: transformer(z, t, transformer.encode_conditions(driving, ref_latent, ref_normal), context),
            lambda: transformer(z, t, conditions, context),
        ], repeats)
    scheduler = FlowMatchingObjective().make_scheduler("unipc")
    start = time.perf_counter()
    generate(transformer, vae, scheduler, ref_image, ref_normal, driving, num_inference_steps=steps,
             generator=torch.Generator().manual_seed(0), progress=False)
    sample_s = time.perf_counter() - start
    return {"config": name, "bare_ms": bare_ms, "wrapped_ms": wrapped_ms, "overhead_ratio": wrapped_ms / bare_ms,
            "sample_s_per_frame": sample_s / frames, "wrapped_step_ms": step_ms,
            "step_overhead_ratio": step_ms / bare_ms, "tokens": f * (s // 2) ** 2, "frames": frames, "size": size}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sampling steps")
    parser.add_argument("--json", type=Path, help="write the rows and metadata here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    repeats, steps = (3, 5) if args.quick else (10, 30)
    rows = []
    for name, size, frames, overrides, vae_overrides in CASES:
        log.info("running %s", name)
        rows.append(run_case(name, size, frames, overrides, vae_overrides, repeats, steps))
    print_table(rows)
    if args.json:
        meta = {**machine_meta(), "repeats": repeats, "sampling_steps": steps, "sampler": "unipc",
                "tiny_transformer": {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in TINY_TRANSFORMER_CONFIG.items()},
                "load_average": os.getloadavg(), "quick": args.quick}
        write_json(args.json, "expgen_speed", rows, meta)


if __name__ == "__main__":
    main()
