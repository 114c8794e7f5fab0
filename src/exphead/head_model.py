"""The dense head model: SMPL-X base -> head-and-shoulders subset P -> up-sampling B -> detail
fields -> LBS (paper Sec. 3.1.1, Eqs. 1-4).

``HeadModel`` holds only fixed buffers (the body model restricted to P, B, dense faces, dense
skinning weights, landmark embedding, face mask); every per-subject or per-frame quantity is an
argument, gathered in :class:`HeadParams`, so one model serves any number of subjects and frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from .body_model import ENV_VAR, load_body_model
from .camera import Camera
from .geometry import apply_sparse, vertex_normals
from .lbs import joint_transforms, pose_feature, pose_to_rotations, skin
from .regions import face_region, head_and_shoulders_subset
from .subdivision import barycentric_upsampling

NECK, HEAD, JAW, L_EYE, R_EYE = 12, 15, 22, 23, 24
NECK_SHARE = 0.4  # a head rotation r is split as neck_pose = 0.4 r, head_pose = 0.6 r


def split_head_rotation(rotation: Tensor) -> tuple[Tensor, Tensor]:
    """``B x 3`` axis-angle head rotation -> (neck_pose, head_pose), the convention of tracker and synthetic data."""
    return NECK_SHARE * rotation, (1 - NECK_SHARE) * rotation


@dataclass
class HeadParams:
    """SMPL-X parameters of a batch of frames (all ``B x ...``, axis-angle poses).

    ``betas`` (``B x num_betas``) and ``expression`` (``B x num_expression``, ψ) are blendshape
    coefficients; ``jaw_pose`` is ω. ``global_orient`` rotates about the pelvis joint; ``neck_pose``
    and ``head_pose`` are the local rotations of joints 12 and 15; ``transl`` is added last.
    """

    betas: Tensor
    expression: Tensor
    global_orient: Tensor
    neck_pose: Tensor
    head_pose: Tensor
    jaw_pose: Tensor
    leye_pose: Tensor
    reye_pose: Tensor
    transl: Tensor

    @staticmethod
    def zeros(batch_size: int, num_betas: int = 300, num_expression: int = 100,
              dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> HeadParams:
        z3 = lambda: torch.zeros(batch_size, 3, dtype=dtype, device=device)  # noqa: E731
        return HeadParams(torch.zeros(batch_size, num_betas, dtype=dtype, device=device),
                          torch.zeros(batch_size, num_expression, dtype=dtype, device=device),
                          z3(), z3(), z3(), z3(), z3(), z3(), z3())

    @property
    def batch_size(self) -> int:
        return self.expression.shape[0]

    def to_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def map(self, fn) -> HeadParams:
        return HeadParams(**{k: fn(v) for k, v in self.to_dict().items()})

    def to_tensors(self, prefix: str = "params.") -> dict[str, Tensor]:
        """``{prefix}<field>`` -> contiguous tensor (for safetensors)."""
        return {f"{prefix}{k}": v.detach().contiguous() for k, v in self.to_dict().items()}

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor], prefix: str = "params.") -> HeadParams:
        """Inverse of :meth:`to_tensors` (other keys are ignored)."""
        return HeadParams(**{k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


@dataclass
class HeadOutput:
    """Result of :meth:`HeadModel.forward` (world frame, metres).

    Attributes:
        vertices: ``B x N_s x 3`` posed dense vertices Ṽ_p^s(i) (Eq. 4).
        canonical: ``B x N_s x 3`` detailed canonical vertices Ṽ^s(i) (Eq. 3).
        landmarks: ``B x 68 x 3`` posed iBUG-68 landmarks L_3D(i) on the dense mesh.
        joints: ``B x 55 x 3`` posed joints.
    """

    vertices: Tensor
    canonical: Tensor
    landmarks: Tensor
    joints: Tensor


class HeadModel(nn.Module):
    """Fixed dense head-and-shoulders model built from an SMPL-X file.

    Its buffers are not persistent: the model is rebuilt from its file, never stored in a checkpoint or
    a ``state_dict`` of a module that holds it.

    Args:
        model_path: SMPL-X ``.npz`` (or folder); ``None`` uses ``$SMPLX_MODEL_PATH`` or the
            embedded procedural model (see :mod:`exphead.body_model`).
        level: subdivision level of B (each coarse triangle becomes ``4**level`` triangles).
        num_betas, num_expression: blendshape counts (at most 300 and 100).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, level: int = 2, num_betas: int = 300,
                 num_expression: int = 100) -> None:
        super().__init__()
        if model_path is None and os.environ.get(ENV_VAR):
            model_path = os.environ[ENV_VAR]
        body = load_body_model(model_path, num_betas=num_betas, num_expression_coeffs=num_expression)
        self.model_path = None if model_path is None else str(model_path)
        self.num_betas, self.num_expression, self.level = body.num_betas, body.num_expression_coeffs, level
        dirs_full = torch.cat([body.shapedirs, body.expr_dirs], dim=-1)  # N_full x 3 x (B+E)
        joints_rest = body.J_regressor @ body.v_template
        index, faces = head_and_shoulders_subset(body.v_template, body.faces_tensor, body.lbs_weights, joints_rest)
        n = index.shape[0]

        # Coarse model restricted to P; the joints stay linear in (β, ψ) over the full body.
        self.register_buffer("subset_index", index, persistent=False)
        self.register_buffer("coarse_faces", faces, persistent=False)
        self.register_buffer("v_template", body.v_template[index], persistent=False)
        self.register_buffer("blend_dirs", dirs_full[index], persistent=False)
        posedirs = body.posedirs.reshape(body.posedirs.shape[0], -1, 3)[:, index]  # P x N x 3
        self.register_buffer("posedirs", posedirs.reshape(posedirs.shape[0], -1), persistent=False)
        self.register_buffer("joint_template", joints_rest, persistent=False)
        self.register_buffer("joint_dirs", torch.einsum("jv,vkd->jkd", body.J_regressor, dirs_full), persistent=False)
        self.register_buffer("parents", body.parents, persistent=False)

        # Dense topology (Eq. 2) and interpolated skinning weights.
        up = barycentric_upsampling(faces, n, level)
        self.register_buffer("upsample", up.matrix, persistent=False)
        self.register_buffer("faces", up.faces, persistent=False)
        self.register_buffer("lbs_weights", apply_sparse(up.matrix, body.lbs_weights[index][None])[0], persistent=False)

        # Landmarks: 51 static + the frontal contour, reordered to iBUG-68, mapped onto the dense mesh.
        full_faces = torch.cat([body.dynamic_lmk_faces_idx[0], body.lmk_faces_idx])
        full_bary = torch.cat([body.dynamic_lmk_bary_coords[0], body.lmk_bary_coords])
        face_map = torch.full((body.faces_tensor.shape[0],), -1, dtype=torch.long)
        kept = torch.nonzero((torch.isin(body.faces_tensor, index)).all(1)).squeeze(1)
        face_map[kept] = torch.arange(kept.shape[0])
        coarse_lmk = face_map[full_faces]
        if (coarse_lmk < 0).any():
            raise ValueError("landmark embedding lies outside the head-and-shoulders subset")
        lmk_face, lmk_bary = up.locate(coarse_lmk, full_bary)
        self.register_buffer("landmark_faces", lmk_face, persistent=False)
        self.register_buffer("landmark_bary", lmk_bary, persistent=False)
        # Rows of B for the landmark vertices, restricted to the coarse vertices they read (tracking fast path).
        rows = up.matrix.index_select(0, up.faces[lmk_face].reshape(-1)).to_dense()
        coarse_ids = torch.nonzero(rows.abs().sum(0)).squeeze(1)
        self.register_buffer("landmark_coarse_ids", coarse_ids, persistent=False)
        self.register_buffer("landmark_rows", rows[:, coarse_ids], persistent=False)

        neutral = self.canonical(HeadParams.zeros(1, self.num_betas, self.num_expression))
        normals = vertex_normals(neutral, self.faces)[0]
        mask = face_region(neutral[0], normals, self.landmarks_of(neutral)[0], joints_rest[HEAD])
        self.register_buffer("face_mask", mask, persistent=False)

    def config(self) -> dict:
        """The arguments that rebuild this model (JSON-ready; ``model_path`` None is the procedural model)."""
        return {"model_path": self.model_path, "level": self.level, "num_betas": self.num_betas,
                "num_expression": self.num_expression}

    @staticmethod
    def from_config(config: dict) -> HeadModel:
        """Inverse of :meth:`config` (other keys are ignored)."""
        return HeadModel(config.get("model_path"), config.get("level", 2), config.get("num_betas", 300),
                         config.get("num_expression", 100))

    @property
    def num_vertices(self) -> int:
        return self.faces.max().item() + 1 if self.faces.numel() else 0

    @property
    def num_coarse(self) -> int:
        return self.v_template.shape[0]

    def coarse_shaped(self, params: HeadParams) -> Tensor:
        """``B x N x 3`` coarse rest-pose mesh with shape and expression blendshapes (Eq. 1 with ψ)."""
        coeffs = torch.cat([params.betas, params.expression], dim=-1)
        return self.v_template + torch.einsum("bl,nkl->bnk", coeffs, self.blend_dirs)

    def canonical(self, params: HeadParams, delta_g: Tensor | None = None, delta_f: Tensor | None = None) -> Tensor:
        """Detailed canonical dense vertices Ṽ^s = B(V) + Δg + Δf (Eq. 3), ``B x N_s x 3``."""
        dense = apply_sparse(self.upsample, self.coarse_shaped(params))
        if delta_g is not None:
            dense = dense + delta_g
        if delta_f is not None:
            dense = dense + delta_f
        return dense

    def full_pose(self, params: HeadParams) -> Tensor:
        """``B x 55 x 3`` SMPL-X pose with only the root, neck, head, jaw and eyes set."""
        pose = params.expression.new_zeros(params.batch_size, 55, 3)
        pose[:, 0], pose[:, NECK], pose[:, HEAD] = params.global_orient, params.neck_pose, params.head_pose
        pose[:, JAW], pose[:, L_EYE], pose[:, R_EYE] = params.jaw_pose, params.leye_pose, params.reye_pose
        return pose

    def forward(self, params: HeadParams, delta_g: Tensor | None = None, delta_f: Tensor | None = None) -> HeadOutput:
        """Pose the detailed dense mesh (Eq. 4).

        Args:
            params: SMPL-X parameters, batch ``B``.
            delta_g: ``N_s x 3`` or ``B x N_s x 3`` static identity offsets Δg.
            delta_f: ``B x N_s x 3`` per-frame expression offsets Δf(i).
        """
        canonical, vertices, joints = self._pose(params, self.upsample, self.lbs_weights, delta_g, delta_f)
        return HeadOutput(vertices, canonical, self.landmarks_of(vertices), joints)

    def posed_landmarks(self, params: HeadParams, delta_g: Tensor | None = None,
                        delta_f: Tensor | None = None) -> Tensor:
        """``B x 68 x 3`` posed landmarks, computing only the vertices they need (for tracking).

        ``delta_g`` / ``delta_f`` are full ``(B x) N_s x 3`` fields; only their landmark rows are read.
        """
        ids = self.faces[self.landmark_faces].reshape(-1)  # 68*3 dense vertex ids
        dg = None if delta_g is None else delta_g[..., ids, :]
        df = None if delta_f is None else delta_f[..., ids, :]
        _, verts, _ = self._pose(params, self.landmark_rows, self.lbs_weights[ids], dg, df, self.landmark_coarse_ids)
        corners = verts.reshape(verts.shape[0], -1, 3, 3)
        return torch.einsum("blkd,lk->bld", corners, self.landmark_bary.to(verts.dtype))

    def _pose(self, params: HeadParams, upsample: Tensor, weights: Tensor, delta_g: Tensor | None,
              delta_f: Tensor | None, coarse_ids: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Canonical and posed vertices for the rows of ``upsample`` (rows of B, sparse, or dense restricted to
        the columns ``coarse_ids``), and the posed joints."""
        b = params.batch_size
        coeffs = torch.cat([params.betas, params.expression], dim=-1)
        joints = self.joint_template + torch.einsum("bl,jkl->bjk", coeffs, self.joint_dirs)
        rotations = pose_to_rotations(self.full_pose(params))
        if coarse_ids is None:
            shaped = self.coarse_shaped(params)
            offsets = (pose_feature(rotations) @ self.posedirs).reshape(b, -1, 3)
            up = lambda x: apply_sparse(upsample, x)  # noqa: E731
        else:
            shaped = self.v_template[coarse_ids] + torch.einsum("bl,nkl->bnk", coeffs, self.blend_dirs[coarse_ids])
            cols = (coarse_ids[:, None] * 3 + torch.arange(3, device=coarse_ids.device)).reshape(-1)
            offsets = (pose_feature(rotations) @ self.posedirs[:, cols]).reshape(b, -1, 3)
            up = lambda x: upsample.to(x.dtype) @ x  # noqa: E731
        canonical = up(shaped)
        if delta_g is not None:
            canonical = canonical + delta_g
        if delta_f is not None:
            canonical = canonical + delta_f
        posed_rest = canonical + up(offsets)
        posed_joints, transforms = joint_transforms(rotations, joints, self.parents)
        vertices = skin(posed_rest, weights, transforms) + params.transl[:, None]
        return canonical, vertices, posed_joints + params.transl[:, None]

    def head_weight(self) -> Tensor:
        """``N_s``: each dense vertex's skinning weight on the rigid head (head, jaw and eye joints), in [0, 1]."""
        return self.lbs_weights[:, [HEAD, JAW, L_EYE, R_EYE]].sum(1).clamp(0, 1)

    def landmarks_of(self, vertices: Tensor) -> Tensor:
        """``B x N_s x 3`` dense vertices -> ``B x 68 x 3`` iBUG-68 landmarks."""
        corners = vertices[:, self.faces[self.landmark_faces]]  # B x 68 x 3 x 3
        return torch.einsum("blkd,lk->bld", corners, self.landmark_bary.to(vertices.dtype))


def default_dense_mesh(height: int = 512, width: int = 512) -> tuple[Tensor, Tensor, Camera]:
    """The default dense head in its neutral pose with the portrait camera: (``1 x N_s x 3``, faces, camera)."""
    model = HeadModel()
    out = model(HeadParams.zeros(1, model.num_betas, model.num_expression))
    return out.vertices.detach(), model.faces, Camera.portrait(1, height, width)
