"""Writing a synthetic subject to disk in the layout every fitting input reader understands::

    DIR/frames/000000.png    RGB frames
    DIR/normals/000000.npy   3 x H x W float16 camera-space normals (0 = empty)
    DIR/depth/000000.npy     H x W float32 depth in metres (0 = empty)
    DIR/landmarks.npy        F x 68 x 2 pixel landmarks
    DIR/ground_truth.safetensors + DIR/subject.json   the ground truth
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from exphead.io_utils import atomic_path
from exphead.media import to_uint8, write_image

from .subject import SubjectRenders, SyntheticSubject


def save_subject(directory: str | os.PathLike, subject: SyntheticSubject, renders: SubjectRenders) -> Path:
    directory = Path(directory)
    for sub in ("frames", "normals", "depth"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    rgb = to_uint8(renders.rgb)
    for i in range(subject.num_frames):
        write_image(directory / "frames" / f"{i:06d}.png", rgb[i])
        np.save(directory / "normals" / f"{i:06d}.npy", renders.normal[i].numpy().astype(np.float16))
        np.save(directory / "depth" / f"{i:06d}.npy", renders.depth[i, 0].numpy().astype(np.float32))
    np.save(directory / "landmarks.npy", renders.landmarks.numpy().astype(np.float32))
    cam = subject.camera.scaled(renders.rgb.shape[-2], renders.rgb.shape[-1])
    tensors = {**subject.params.to_tensors(), **cam.to_tensors(), "delta_g": subject.delta_g,
               "delta_f": subject.delta_f, "albedo": subject.albedo}
    with atomic_path(directory / "ground_truth.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    meta = {"age": subject.age, "seed": subject.seed, "num_frames": subject.num_frames,
            "image_size": [cam.height, cam.width]}
    with atomic_path(directory / "subject.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return directory


def write_synthetic_subject(model, directory: str | os.PathLike, seed: int, num_frames: int = 16,
                            size: int = 256, age: float | None = None) -> Path:
    """Make, render and save one subject (the ``exp-synth`` command)."""
    from .subject import make_subject, render_subject

    with torch.no_grad():
        subject = make_subject(model, seed, num_frames, age=age, height=size, width=size)
        renders = render_subject(model, subject)
    return save_subject(directory, subject, renders)
