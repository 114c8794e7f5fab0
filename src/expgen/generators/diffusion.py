"""The ``diffusion`` generator: the normal-map-conditioned Wan DiT of Sec. 3.3 behind the generator interface.

It loads a folder written by :meth:`expgen.module.DiffusionModule.save_pretrained` once, renders the driving
normal maps N^D of the driven meshes, and samples the video in windows of ``window = 1 + 4k`` frames
(Wan's causal VAE), conditioned on I_R, N^R and each window's N^D.

Every window starts from the same noise (drawn from ``seed``), so windows differ only by their conditions.
Consecutive windows share ``overlap`` frames, carried in one of two ways (``carry``):

* ``"blend"`` (default): both windows generate the shared frames and the output cross-fades linearly from the
  previous window's to the new one's (weight ``i / (overlap + 1)`` on the new window at the ``i``-th shared
  frame), so a border becomes ``overlap + 1`` small steps instead of one jump. Any ``0 <= overlap < window``.
* ``"context"``: the new window holds the previous window's last ``overlap = 1 + 4j`` frames as known context
  (:func:`expgen.sampling.generate`, inpainting-style: their latents are fixed at every noise level) and only
  its frames after them are kept: Wan-Animate's scheme, for checkpoints trained to continue a context.

On the tiny checkpoint of ``benchmarks/expgen_ablation.py`` (window 9, 60 frames) the border jump (change across
a border over the change inside windows) is 3.04 with shared noise and no overlap, 1.17 with blend 3 and 1.10 with
blend 5 (face PSNR 22.8 -> 23.1 dB, expression error 0.73 -> 0.65), and 2.35 with context 5, which costs 4 dB on a
checkpoint not trained with context (``docs/architecture.md``, "Long videos").
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
Carry = Literal["blend", "context"]


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
        seed: seed of the sampling noise, the same for every window and call (the output does not depend on
            call order).
        overlap: frames consecutive windows share (module docstring); 0: independent windows.
        carry: how the shared frames pass from one window to the next: ``"blend"`` (cross-fade, any
            ``overlap < window``) or ``"context"`` (known context latents, ``overlap = 1 + 4j``).

    Raises:
        FileNotFoundError: the folder is missing or not a saved DiffusionModule.
    """

    name = "diffusion"

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", dtype: DType = "float32",
                 window: int = 17, seed: int = 0, overlap: int = 4, carry: Carry = "blend") -> None:
        from expgen.backbone import cast_for_inference
        from expgen.module import DiffusionModule

        if not Path(weights).is_dir():
            raise FileNotFoundError(f"generator weights folder not found: {weights} (--generator_weights: a folder "
                                    "written by DiffusionModule.save_pretrained)")
        if window < 1 or (window - 1) % 4:
            raise ValueError(f"diffusion_window must be 1 + 4k frames (Wan's causal VAE), got {window}")
        check_overlap(window, overlap, carry)
        self.weights, self.device, self.dtype, self.window, self.seed = str(weights), device, dtype, window, seed
        self.overlap, self.carry = overlap, carry
        self.carry_frames = overlap
        self.module = DiffusionModule.from_pretrained(weights).to(device).eval()
        for part in (self.module.transformer, self.module.vae):
            cast_for_inference(part, getattr(torch, dtype))
        self.fingerprint = weights_fingerprint(weights)

    def describe(self) -> dict:
        """The generator, its weights folder and fingerprint, device and precision."""
        return {"generator": self.name, "weights": self.weights, "weights_fingerprint": self.fingerprint,
                "device": self.device, "dtype": self.dtype, "window": self.window, "overlap": self.overlap,
                "carry": self.carry, "seed": self.seed}

    @torch.no_grad()
    def __call__(self, inputs: GeneratorInputs, progress: bool = False) -> GeneratorOutput:
        """Render N^D and sample the frames window by window (module docstring; the last window is padded with its
        last frame)."""
        x = inputs.to(self.device)
        normals = render_normal_images(x.driving_vertices, x.faces, x.camera)
        return GeneratorOutput(self.sample(x.reference, x.reference_normal, normals, progress, x.previous),
                               normals.float().cpu())

    @torch.no_grad()
    def sample(self, reference: Tensor, reference_normal: Tensor, normals: Tensor, progress: bool = False,
               previous: Tensor | None = None) -> Tensor:
        """``3 x S x S`` I_R and N^R, ``F x 3 x S x S`` N^D -> ``F x 3 x S x S`` frames on the CPU, in ``[0, 1]``.

        ``previous``: ``overlap x 3 x S x S`` frames an earlier call generated for the first ``overlap`` frames (the
        end of its last window); the first window then carries them as if they came from a window before it.
        """
        reference, reference_normal = reference.to(self.device), reference_normal.to(self.device)
        normals = normals.to(self.device)
        gen = torch.Generator(self.device)
        n, win = normals.shape[0], self.window
        out = torch.zeros(n, *normals.shape[1:])
        done = 0  # frames generated so far
        if previous is not None:
            if previous.shape[0] != self.overlap or previous.shape[0] >= n:
                raise ValueError(f"previous: {previous.shape[0]} frames given for an overlap of {self.overlap} and "
                                 f"{n} frames")
            done = previous.shape[0]
            out[:done] = previous.float().cpu()
        for s in window_starts(n, win, self.overlap):
            chunk = normals[s:s + win]
            pad = win - chunk.shape[0]
            if pad:
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, -1, -1, -1)])
            shared = done - s  # frames of this window the previous ones generated
            context = out[s:done][None].to(self.device) if shared and self.carry == "context" else None
            video = self.module.generate(reference[None], reference_normal[None], chunk[None],
                                         generator=gen.manual_seed(self.seed), progress=progress,
                                         context_frames=context)[0][:win - pad].float().cpu()
            if shared and self.carry == "blend":
                weight = torch.arange(1, shared + 1).div(shared + 1.0)[:, None, None, None]
                out[s:done] = torch.lerp(out[s:done], video[:shared], weight)
            out[s + shared:s + win - pad] = video[shared:]
            done = s + win - pad
        return out.clamp(0, 1)


def check_overlap(window: int, overlap: int, carry: str) -> None:
    """Raise ValueError unless ``overlap`` frames can be carried by ``carry`` between windows of ``window``."""
    if carry not in ("blend", "context"):
        raise ValueError(f"carry must be 'blend' or 'context', got {carry!r}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be 0 <= overlap < window ({window}), got {overlap}")
    if carry == "context" and overlap and (overlap - 1) % 4:
        raise ValueError(f"overlap carried as context must be 0 or 1 + 4j frames (Wan's causal VAE), got {overlap}")


def window_starts(num_frames: int, window: int, overlap: int = 0) -> list[int]:
    """First frames of the windows covering ``num_frames`` frames, each ``window - overlap`` after the last."""
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(starts[-1] + window - overlap)
    return starts
