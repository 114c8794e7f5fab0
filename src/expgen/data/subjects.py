"""Clips of synthetic subjects with exact ground truth (``exphead.synthetic``), in the clip format of
``expgen.data.clips``.

Each subject is an :func:`exphead.synthetic.subject.make_subject` head (β, hair and clothing Δg, a talking and
smiling sequence ψ_i / ω_i / head pose, identity-dependent wrinkles Δf(i), portrait camera) rendered by
:func:`~exphead.synthetic.subject.render_subject` at ``size x size``. Its sequence has
``clips_per_subject x num_frames + 1`` frames, cut into consecutive clips; the last frame belongs to no clip, so
every clip has a reference frame outside it. The clip tensors are what a perfect fit of the subject followed by
self-reenactment with ``driving="fitted"`` gives (:mod:`expgen.data.clip_builder`, with the ground truth as the head):

* ``frames``: the rendered RGB frames;
* ``driving_normals`` N^D: the ground-truth meshes V^s + Δg + Δf(i), posed by LBS with frame i's pose (the normal
  buffer of the same ``render_subject`` call that renders the frames);
* ``reference_image`` I_R: a frame of the same subject outside the clip, drawn by the rule of
  :mod:`expgen.data.clip_builder` (seeded by subject id and clip start): a frame inside the clip would let the generator
  copy it instead of following N^D;
* ``reference_normal`` N^R: V_neutral (ψ = 0, ω = 0, Δg, no Δf) posed with the reference frame's pose.

Normals are camera-space (``exphead.camera``: x right, y down, z forward) encoded by
:func:`exphead.render.normal_to_image`. Subjects are split like :func:`expgen.data.synthetic.write_synthetic_dataset`:
``out_dir/train/train-XXXX_SSSSSS.safetensors`` and held-out subjects in ``out_dir/val/val-XXXX_SSSSSS.safetensors``
(subject id, clip start frame).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from exphead.head_model import HeadModel
from exphead.render import normal_to_image, render_normal_images
from exphead.synthetic.subject import make_subject, render_subject

from .clip_builder import ClipBuildConfig, reference_frame
from .clips import Clip, write_clip
from .synthetic import clip_bytes

logger = logging.getLogger(__name__)

SOURCE = "expgen.data.subjects"


@torch.no_grad()
def subject_clips(model: HeadModel, subject_id: str, subject_seed: int, clips_per_subject: int = 4,
                  num_frames: int = 9, size: int = 64, seed: int = 0, fps: float = 25.0,
                  pose_scale: float = 1.0) -> list[Clip]:
    """Make and render one synthetic subject and cut it into ``clips_per_subject`` clips (module docstring).

    Args:
        model: the dense head model of the subject.
        subject_id: the clips' ``subject_id``.
        subject_seed: seed of :func:`make_subject` (identity, appearance and motion).
        clips_per_subject: consecutive clips cut from the subject's sequence.
        num_frames: frames per clip, ``1 + 4k``.
        size: clip side in pixels.
        seed: seed of the reference-frame choice.
        fps: the clips' frame rate.
        pose_scale: scale of the head-pose motion (:func:`make_subject`).

    Returns:
        clips, uint8 ``num_frames x 3 x size x size`` videos; their ``extra`` holds ``source``, ``subject_seed``,
        ``age``, ``level`` (of ``model``), ``pose_scale``, ``start``, ``reference_frame`` and
        ``reference_outside_clip``.
    """
    n = num_frames
    total = clips_per_subject * n + 1
    subject = make_subject(model, subject_seed, total, pose_scale=pose_scale, height=size, width=size)
    renders = render_subject(model, subject)  # poses V^s + Δg + Δf(i) by LBS: its normals are N^D
    frames, normals = clip_bytes(renders.rgb), clip_bytes(normal_to_image(renders.normal))
    head = subject.head(model, SOURCE)
    cfg = ClipBuildConfig(num_frames=n, size=size, seed=seed)
    valid = torch.ones(total, dtype=torch.bool)
    clips = []
    for start in range(0, clips_per_subject * n, n):
        ref, outside = reference_frame(valid, start, cfg, subject_id)
        reference = render_normal_images(head.posed_neutral(ref), model.faces, subject.camera)
        extra = {"source": SOURCE, "subject_seed": subject_seed, "age": subject.age, "level": model.level,
                 "pose_scale": pose_scale, "start": start, "reference_frame": ref, "reference_outside_clip": outside}
        clips.append(Clip(frames[start:start + n].clone(), normals[start:start + n].clone(), frames[ref].clone(),
                          clip_bytes(reference)[0], subject_id, fps, extra=extra))
    return clips


def write_subject_clips(out_dir: str | os.PathLike, num_subjects: int = 16, clips_per_subject: int = 4,
                        num_frames: int = 9, size: int = 64, seed: int = 0, num_val_subjects: int = 2,
                        model: HeadModel | None = None, fps: float = 25.0, pose_scale: float = 1.0) -> list[Path]:
    """Write clips of ``num_subjects`` training subjects to ``out_dir/train`` and ``num_val_subjects`` held-out
    subjects to ``out_dir/val`` (``clips_per_subject`` each; layout in the module docstring), each file atomically.

    Args:
        out_dir: the clip folder.
        num_subjects: training subjects (``train-0000``, ...).
        clips_per_subject: clips per subject, consecutive in its sequence.
        num_frames: frames per clip, ``1 + 4k``.
        size: clip side in pixels.
        seed: seed of the subjects (drawn in order, training then held-out) and of the reference frames.
        num_val_subjects: held-out subjects (``val-0000``, ...).
        model: the dense head model; default ``HeadModel()`` (embedded model unless ``$SMPLX_MODEL_PATH``).
        fps: the clips' frame rate.
        pose_scale: scale of the subjects' head-pose motion (1: :func:`make_subject`'s default).

    Returns:
        the written files, training then held-out, in subject and clip order.
    """
    if num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames must be 1 + 4k for the causal VAE, got {num_frames}")
    if num_subjects < 1 or num_val_subjects < 0 or clips_per_subject < 1 or size < 8:
        raise ValueError(f"need num_subjects >= 1, num_val_subjects >= 0, clips_per_subject >= 1 and size >= 8; "
                         f"got {num_subjects}, {num_val_subjects}, {clips_per_subject}, {size}")
    model = model or HeadModel()
    out = Path(out_dir)
    generator = torch.Generator().manual_seed(seed)
    paths = []
    for split, count in (("train", num_subjects), ("val", num_val_subjects)):
        for i in range(count):
            subject_id = f"{split}-{i:04d}"
            subject_seed = int(torch.randint(2**31 - 1, (), generator=generator))
            for clip in subject_clips(model, subject_id, subject_seed, clips_per_subject, num_frames, size, seed,
                                      fps, pose_scale):
                paths.append(write_clip(out / split / f"{subject_id}_{clip.extra['start']:06d}.safetensors", clip))
            logger.info("%s: %d clip(s) of %d frames at %d px", subject_id, clips_per_subject, num_frames, size)
    return paths
