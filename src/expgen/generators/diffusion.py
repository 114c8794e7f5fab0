"""The ``diffusion`` generator: the normal-map-conditioned Wan DiT of Sec. 3.3 behind the generator interface.

It loads a folder written by :meth:`expgen.module.DiffusionModule.save_pretrained` once, renders the driving
normal maps N^D of the driven meshes, and samples the video in windows of ``window = 1 + 4k`` frames
(Wan's causal VAE), conditioned on I_R, N^R and each window's N^D.

Consecutive windows overlap by ``overlap = 1 + 4j`` frames: a window after the first starts ``overlap`` frames
before the end of the frames generated so far and holds those frames as context while it is sampled
(:func:`expgen.sampling.generate`, inpainting-style: their latents are fixed at every noise level), so it
continues them instead of starting from fresh noise; only its frames after the overlap are kept. With
``overlap = 0`` the windows are independent (each from fresh noise) and borders can jump.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

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
        overlap: frames a window shares with the previous one, held as its context (``1 + 4j < window``);
            0 (default): independent windows; on the tiny checkpoint of ``benchmarks/expgen_ablation.py`` 5 lowers the
            face PSNR of a 60-frame video from 20.1 to 15.3 dB (border jump ratio 2.8 -> 2.3).

    Raises:
        FileNotFoundError: the folder is missing or not a saved DiffusionModule.
    """

    name = "diffusion"

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", dtype: DType = "float32",
                 window: int = 17, seed: int = 0, overlap: int = 0) -> None:
        from expgen.backbone import cast_for_inference
        from expgen.module import DiffusionModule

        if not Path(weights).is_dir():
            raise FileNotFoundError(f"generator weights folder not found: {weights} (--generator_weights: a folder "
                                    "written by DiffusionModule.save_pretrained)")
        if window < 1 or (window - 1) % 4:
            raise ValueError(f"diffusion_window must be 1 + 4k frames (Wan's causal VAE), got {window}")
        if overlap and (overlap < 0 or (overlap - 1) % 4 or overlap >= window):
            raise ValueError(f"overlap must be 0 or 1 + 4j frames below the window ({window}), got {overlap}")
        self.weights, self.device, self.dtype, self.window, self.seed = str(weights), device, dtype, window, seed
        self.overlap = overlap
        self.module = DiffusionModule.from_pretrained(weights).to(device).eval()
        for part in (self.module.transformer, self.module.vae):
            cast_for_inference(part, getattr(torch, dtype))
        self.fingerprint = weights_fingerprint(weights)

    def describe(self) -> dict:
        """The generator, its weights folder and fingerprint, device and precision."""
        return {"generator": self.name, "weights": self.weights, "weights_fingerprint": self.fingerprint,
                "device": self.device, "dtype": self.dtype, "window": self.window, "overlap": self.overlap,
                "seed": self.seed}

    @torch.no_grad()
    def __call__(self, inputs: GeneratorInputs, progress: bool = False) -> GeneratorOutput:
        """Render N^D and sample the frames window by window (module docstring; the last window is padded with its
        last frame)."""
        x = inputs.to(self.device)
        normals = render_normal_images(x.driving_vertices, x.faces, x.camera)
        return GeneratorOutput(self.sample(x.reference, x.reference_normal, normals, progress),
                               normals.float().cpu())

    @torch.no_grad()
    def sample(self, reference: Tensor, reference_normal: Tensor, normals: Tensor, progress: bool = False) -> Tensor:
        """``3 x S x S`` I_R and N^R, ``F x 3 x S x S`` N^D -> ``F x 3 x S x S`` frames on the CPU, in ``[0, 1]``."""
        reference, reference_normal = reference.to(self.device), reference_normal.to(self.device)
        normals = normals.to(self.device)
        gen = torch.Generator(self.device).manual_seed(self.seed)
        n, win, out = normals.shape[0], self.window, []
        done = 0
        for s in window_starts(n, win, self.overlap):
            chunk = normals[s:s + win]
            pad = win - chunk.shape[0]
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, -1, -1, -1)])
            keep = done - s  # frames of this window already generated: its context
            context = torch.cat(out)[s:done][None].to(self.device) if keep else None
            video = self.module.generate(reference[None], reference_normal[None], chunk[None], generator=gen,
                                         progress=progress, context_frames=context)[0]
            out.append(video[keep: win - pad].float().cpu())
            done = s + win - pad
        return torch.cat(out).clamp(0, 1)


def window_starts(num_frames: int, window: int, overlap: int = 0) -> list[int]:
    """First frames of the windows covering ``num_frames`` frames, each ``window - overlap`` after the last."""
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(starts[-1] + window - overlap)
    return starts
