"""Synthetic training folders and ground-truth identity-adapted targets for the transfer module.

A folder of fitted heads holds one sub-folder per subject with ``head.json`` + ``head.safetensors``
(:meth:`exphead.personalized.PersonalizedHead.save`). Here the "fits" are exact: each head carries the
synthetic subject's ground-truth β, Δg, ψ_i, ω_i, pose and Δf(i) (:mod:`exphead.synthetic`).

Resting creases: :func:`exphead.synthetic.subject.make_subject` draws the age that sets wrinkle depth,
width and spacing independently of the neutral geometry, so no G(V_neutral, q) could see it. Real faces
show their age at rest: faint lines where the expression wrinkles form. ``resting_creases = ρ`` adds
that to Δg: ρ times the subject's own full-activation wrinkles (all three families), inward along the
normals, on the face only. ``ρ = 0`` gives exphead's subjects unchanged. Δf(i) is unchanged either way.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from torch import Tensor

from exphead.geometry import vertex_normals
from exphead.head_model import HeadModel, HeadParams
from exphead.synthetic.details import expression_details, wrinkle_bases
from exphead.synthetic.subject import SyntheticSubject, make_subject

logger = logging.getLogger(__name__)
DONE_MARKER = ".complete"


def default_synthetic_root(num_subjects: int, num_frames: int, seed: int, resting_creases: float) -> Path:
    """``$EXPPORTRAIT_CACHE/exptransfer/synthetic-n{N}-f{F}-s{seed}-r{ρ}`` (default cache ``~/.cache/expportrait``)."""
    cache = os.environ.get("EXPPORTRAIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "expportrait")
    return Path(cache) / "exptransfer" / f"synthetic-n{num_subjects}-f{num_frames}-s{seed}-r{resting_creases:g}"


def _rest_frame(model: HeadModel, betas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The β-only neutral mesh (no Δg) as ``make_subject`` sees it: vertices, normals (``N_s x 3``), landmarks."""
    params = HeadParams.zeros(1, model.num_betas, model.num_expression, device=betas.device)
    params.betas = betas.reshape(1, -1)
    neutral = model.canonical(params)
    return neutral[0], vertex_normals(neutral, model.faces)[0], model.landmarks_of(neutral)[0]


def make_creased_subject(model: HeadModel, seed: int, num_frames: int, age: float | None = None,
                         resting_creases: float = 0.0) -> SyntheticSubject:
    """:func:`~exphead.synthetic.subject.make_subject` with resting creases of depth ``resting_creases`` times
    the full-activation wrinkles added to Δg (see the module docstring)."""
    subject = make_subject(model, seed, num_frames, age=age)
    if resting_creases > 0:
        neutral, normals, landmarks = _rest_frame(model, subject.params.betas[0])
        depth = wrinkle_bases(neutral, landmarks, model.face_mask, subject.age).sum(0)  # N_s, metres
        subject.delta_g = subject.delta_g - resting_creases * depth[:, None] * normals
    return subject


def write_synthetic_heads(root: str | os.PathLike, num_subjects: int, num_frames: int = 16, seed: int = 0,
                          model: HeadModel | None = None, resting_creases: float = 0.0) -> Path:
    """Write ``num_subjects`` synthetic heads (``subject_0000`` ...; subject ``k`` drawn with seed
    ``seed + k``, random age) into ``root``, skipping the work when a completed folder is already there.

    The folder is built beside ``root`` and renamed into place, so an interrupted run leaves nothing behind.

    Raises:
        FileExistsError: ``root`` exists, is not empty and is not a completed synthetic folder.
    """
    root = Path(root)
    if (root / DONE_MARKER).is_file():
        return root
    if num_subjects < 2:
        raise ValueError(f"need at least 2 synthetic subjects (one to train, one held out), got {num_subjects}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and holds other files: choose an empty or new folder for the "
                              "synthetic heads")
    model = model or HeadModel()
    logger.info("writing %d synthetic heads of %d frames to %s", num_subjects, num_frames, root)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for k in range(num_subjects):
        subject = make_creased_subject(model, seed + k, num_frames, resting_creases=resting_creases)
        subject.head(model, "exptransfer.synthetic").save(tmp / f"subject_{k:04d}")
    (tmp / DONE_MARKER).write_text(f"{num_subjects} subjects, {num_frames} frames, seed {seed}, "
                                   f"resting creases {resting_creases}\n")
    if root.exists():
        root.rmdir()
    os.replace(tmp, root)
    return root


def adapted_details(model: HeadModel, target: SyntheticSubject, expression: Tensor) -> Tensor:
    """Ground truth of cross-identity transfer: the target's own Δf for the driver's ``F x E`` ψ,
    ``F x N_s x 3`` (the wrinkles the target identity makes with that expression, as in ``make_subject``)."""
    neutral, normals, landmarks = _rest_frame(model, target.params.betas[0])
    return expression_details(neutral, normals, landmarks, model.face_mask, target.age, expression)
