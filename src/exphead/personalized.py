"""The personalized head of one subject (Sec. 3.1): β, the static field Δg, per-frame SMPL-X
parameters and expression fields Δf(i), on a fixed :class:`~exphead.head_model.HeadModel`.

Saved as ``head.safetensors`` + ``head.json`` in a folder; loading rebuilds the same
``HeadModel`` from the JSON (body-model file and subdivision level) and restores the tensors
bit-exactly. Δf(i) is stored for the facial vertices only (it is zero elsewhere by
construction), so a frame costs ``N_face x 3`` floats.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .body_model import resolve_model_file
from .camera import Camera
from .head_model import HeadModel, HeadOutput, HeadParams
from .io_utils import atomic_path
from .mesh_io import export_mesh

FORMAT_VERSION = 1


def model_fingerprint(path: str | os.PathLike | None) -> str:
    """SHA-256 (first 16 hex digits) of the body-model file, to refuse a head fitted on another model."""
    file = Path(resolve_model_file(path)).resolve()
    stat = file.stat()
    return _file_digest(str(file), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class PersonalizedHead:
    """A fitted subject.

    Attributes:
        model: the dense head model the fields live on.
        params: ``F`` frames of SMPL-X parameters (β repeated per frame).
        delta_g: ``N_s x 3`` static offsets Δg (metres, canonical frame).
        delta_f_face: ``F x N_face x 3`` expression offsets Δf(i) on the facial vertices.
        camera: the camera (batch 1) the frames were seen with.
        meta: JSON-serialisable facts (source, losses, errors).
    """

    model: HeadModel
    params: HeadParams
    delta_g: Tensor
    delta_f_face: Tensor
    camera: Camera
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.params.batch_size

    def to(self, device: torch.device | str) -> PersonalizedHead:
        """The head with its tensors on ``device`` (the head model is shared, not moved)."""
        return PersonalizedHead(self.model, self.params.map(lambda v: v.to(device)), self.delta_g.to(device),
                                self.delta_f_face.to(device), self.camera.to(device), self.meta)

    @property
    def face_index(self) -> Tensor:
        return torch.nonzero(self.model.face_mask > 0).squeeze(1)

    def delta_f(self, frames: Tensor | slice | None = None) -> Tensor:
        """Full ``F' x N_s x 3`` Δf for the selected frames (all by default)."""
        sel = self.delta_f_face if frames is None else self.delta_f_face[frames]
        out = sel.new_zeros(sel.shape[0], self.model.num_vertices, 3)
        out[:, self.face_index] = sel
        return out

    @property
    def betas(self) -> Tensor:
        return self.params.betas[:1]

    def neutral(self) -> Tensor:
        """V_neutral = V^s + Δg: ``N_s x 3`` (β only, ψ = 0, no pose)."""
        p = HeadParams.zeros(1, self.model.num_betas, self.model.num_expression, dtype=self.delta_g.dtype,
                             device=self.delta_g.device)
        p.betas = self.betas
        return self.model.canonical(p, self.delta_g)[0]

    def frame(self, frames: Tensor | slice | int) -> HeadOutput:
        """Posed dense meshes of the selected frames (Eq. 4)."""
        if isinstance(frames, int):
            frames = slice(frames, frames + 1)
        p = self.params.map(lambda v: v[frames])
        return self.model(p, self.delta_g, self.delta_f(frames))

    def pose(self, params: HeadParams, delta_f: Tensor | None = None, chunk: int = 32) -> HeadOutput:
        """This identity (β replaced by its own, its Δg) posed with ``params`` (``F`` frames) and per-frame
        ``delta_f`` (``F x N_s x 3``, or None for none), ``chunk`` frames at a time (memory bound)."""
        params = params.map(lambda v: v)
        params.betas = self.betas.to(params.expression).expand(params.batch_size, -1)
        outs = [self.model(params.map(lambda v, s=s: v[s:s + chunk]), self.delta_g,
                           None if delta_f is None else delta_f[s:s + chunk])
                for s in range(0, params.batch_size, chunk)]
        return HeadOutput(*(torch.cat([getattr(o, k) for o in outs]) for k in ("vertices", "canonical", "landmarks",
                                                                               "joints")))

    def posed_neutral(self, frame: int) -> Tensor:
        """``1 x N_s x 3``: V_neutral (ψ = 0, ω = 0, with Δg, no Δf) posed by LBS with frame ``frame``'s pose
        (what the reference normal map N^R shows, lined up with the frame)."""
        rest = self.params.map(lambda v: v[frame:frame + 1].clone())
        rest.expression.zero_()
        rest.jaw_pose.zero_()
        return self.model(rest, self.delta_g).vertices

    def render_normals(self, frames: Tensor | slice | int, height: int | None = None, width: int | None = None):
        """:class:`exphead.render.RenderOutput` of the selected frames."""
        from .render import render_normal_depth

        out = self.frame(frames)
        cam = self.camera if height is None else self.camera.scaled(height, width or height)
        return render_normal_depth(out.vertices, self.model.faces, cam.expand(out.vertices.shape[0]))

    def export_neutral(self, path: str | os.PathLike) -> Path:
        return export_mesh(path, self.neutral(), self.model.faces)

    def export_frame(self, path: str | os.PathLike, frame: int) -> Path:
        return export_mesh(path, self.frame(frame).vertices[0], self.model.faces)

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``head.safetensors`` and ``head.json`` atomically into ``directory``."""
        directory = Path(directory)
        tensors = {**self.params.to_tensors(), **self.camera.to_tensors(), "face_index": self.face_index.contiguous(),
                   "delta_g": self.delta_g.detach().contiguous(),
                   "delta_f_face": self.delta_f_face.detach().contiguous()}
        config = {"format_version": FORMAT_VERSION, **self.model.config(),
                  "model_fingerprint": model_fingerprint(self.model.model_path), "num_frames": self.num_frames,
                  "image_size": [self.camera.height, self.camera.width], "meta": self.meta}
        with atomic_path(directory / "head.safetensors") as tmp:
            save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp))
        with atomic_path(directory / "head.json") as tmp:
            tmp.write_text(json.dumps(config, indent=2))
        return directory

    @staticmethod
    def read_config(directory: str | os.PathLike, check_model: bool = True) -> dict:
        """The ``head.json`` of a saved head, checked (format version and, with ``check_model``, the body-model
        file's fingerprint).

        Raises:
            FileNotFoundError: not a saved head. ValueError: another format or another body-model file.
        """
        directory = Path(directory)
        cfg_path, tensor_path = directory / "head.json", directory / "head.safetensors"
        if not cfg_path.is_file() or not tensor_path.is_file():
            raise FileNotFoundError(f"{directory} is not a saved personalized head (needs head.json and "
                                    "head.safetensors, written by PersonalizedHead.save / exp-fit)")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: format version {cfg.get('format_version')} != {FORMAT_VERSION}")
        if check_model and model_fingerprint(cfg["model_path"]) != cfg["model_fingerprint"]:
            raise ValueError(f"{directory} was fitted on a different body-model file than {cfg['model_path']!r} "
                             "(set SMPLX_MODEL_PATH / model_path to the file used for fitting)")
        return cfg

    @staticmethod
    def load_model(directory: str | os.PathLike) -> HeadModel:
        """The :class:`HeadModel` a saved head was fitted on (built from its ``head.json``)."""
        return HeadModel.from_config(PersonalizedHead.read_config(directory))

    @staticmethod
    def load(directory: str | os.PathLike, model: HeadModel | None = None) -> PersonalizedHead:
        """Load a saved head; ``model`` may be passed to share one :class:`HeadModel` between heads."""
        directory = Path(directory)
        cfg = PersonalizedHead.read_config(directory)
        model = model or HeadModel.from_config(cfg)
        t = load_file(str(directory / "head.safetensors"))
        if not torch.equal(t["face_index"], torch.nonzero(model.face_mask > 0).squeeze(1).cpu()):
            raise ValueError(f"{directory}: face region of the saved head does not match the head model")
        h, w = cfg["image_size"]
        return PersonalizedHead(model, HeadParams.from_tensors(t), t["delta_g"], t["delta_f_face"],
                                Camera.from_tensors(t, h, w), cfg["meta"])
