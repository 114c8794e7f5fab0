"""The ``diffusion`` generator: the normal-map-conditioned Wan DiT of Sec. 3.3 behind the generator interface.

It loads a folder written by :meth:`expgen.module.DiffusionModule.save_pretrained` once, renders the driving
normal maps N^D of the driven meshes, and samples the video in windows of ``window = 1 + 4k`` frames
(Wan's causal VAE), conditioned on I_R, N^R and each window's N^D.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import torch

from exphead.render import render_normal_images

from .base import GeneratorInputs, GeneratorOutput

DType = Literal["float32", "bfloat16", "float16"]


def weights_fingerprint(folder: str | os.PathLike) -> str:
    """SHA-256 (16 hex digits) of a weights folder's files (names, sizes and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class DiffusionGenerator:
    """Wan DiT + pose / reference encoders from a saved :class:`~expgen.module.DiffusionModule`.

    Args:
        weights: the folder written by ``DiffusionModule.save_pretrained``.
        device: where the model runs (the frames come back to the CPU).
        dtype: precision of weights and activations (``bfloat16`` on a GPU; Wan's fp32 modules stay fp32).
        window: frames generated per DiT call (``1 + 4k``).
        seed: seed of the sampling noise (a new generator per call: the output does not depend on call order).

    Raises:
        FileNotFoundError: the folder is missing or not a saved DiffusionModule.
    """

    name = "diffusion"

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", dtype: DType = "float32",
                 window: int = 17, seed: int = 0) -> None:
        from expgen.backbone import cast_for_inference
        from expgen.module import DiffusionModule

        if not Path(weights).is_dir():
            raise FileNotFoundError(f"generator weights folder not found: {weights} (--generator_weights: a folder "
                                    "written by DiffusionModule.save_pretrained)")
        if window < 1 or (window - 1) % 4:
            raise ValueError(f"diffusion_window must be 1 + 4k frames (Wan's causal VAE), got {window}")
        self.weights, self.device, self.dtype, self.window, self.seed = str(weights), device, dtype, window, seed
        self.module = DiffusionModule.from_pretrained(weights).to(device).eval()
        for part in (self.module.transformer, self.module.vae):
            cast_for_inference(part, getattr(torch, dtype))
        self.fingerprint = weights_fingerprint(weights)

    def describe(self) -> dict:
        """The generator, its weights folder and fingerprint, device and precision."""
        return {"generator": self.name, "weights": self.weights, "weights_fingerprint": self.fingerprint,
                "device": self.device, "dtype": self.dtype, "window": self.window, "seed": self.seed}

    @torch.no_grad()
    def __call__(self, inputs: GeneratorInputs, progress: bool = False) -> GeneratorOutput:
        """Render N^D and sample the frames window by window (the last window is padded with its last frame)."""
        x = inputs.to(self.device)
        normals = render_normal_images(x.driving_vertices, x.faces, x.camera)
        gen = torch.Generator(self.device).manual_seed(self.seed)
        n, win, out = normals.shape[0], self.window, []
        for s in range(0, n, win):
            chunk = normals[s:s + win]
            pad = win - chunk.shape[0]
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, -1, -1, -1)])
            video = self.module.generate(x.reference[None], x.reference_normal[None], chunk[None], generator=gen,
                                         progress=progress)[0]
            out.append(video[: win - pad].float().cpu())
        return GeneratorOutput(torch.cat(out).clamp(0, 1), normals.float().cpu())
