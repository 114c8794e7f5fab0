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
from .geometry import SparseOperator, apply_sparse, vertex_normals
from .lbs import joint_transforms, pose_feature, pose_to_rotations, skeleton_levels, skin
from .regions import FEATURE_LANDMARKS, face_region, feature_region, head_and_shoulders_subset
from .subdivision import barycentric_upsampling

NECK, HEAD, JAW, L_EYE, R_EYE = 12, 15, 22, 23, 24
ROTATED = (0, NECK, HEAD, JAW, L_EYE, R_EYE)  # the joints a HeadParams poses (root = global_orient)
POSED = ROTATED[1:]  # their pose correctives (SMPL-X's pose feature leaves out the root)
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
        joints: ``B x J' x 3`` posed joints of the skeleton that moves the mesh (:attr:`HeadModel.skeleton`
            lists them).
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
        # Dense topology (Eq. 2) and interpolated skinning weights.
        up = barycentric_upsampling(faces, n, level)
        self.register_buffer("upsample", up.matrix, persistent=False)
        self.upsample_op = SparseOperator(up.matrix)
        self.register_buffer("faces", up.faces, persistent=False)
        weights = apply_sparse(up.matrix, body.lbs_weights[index][None])[0]  # N_s x 55

        # The skeleton that moves P: joints skinning any vertex of P, the posed ones, and their ancestors (13 of
        # SMPL-X's 55). Only the posed joints' rotations differ from identity, so only their pose correctives count.
        skeleton = _skeleton(body.parents.tolist(), torch.nonzero(weights.sum(0) > 0).flatten().tolist())
        self.register_buffer("skeleton", torch.tensor(skeleton), persistent=False)
        parents = [skeleton.index(p) if p >= 0 else -1 for p in body.parents[skeleton].tolist()]
        self.register_buffer("skeleton_parents", torch.tensor(parents), persistent=False)
        self.register_buffer("rotated", torch.tensor([skeleton.index(j) for j in ROTATED]), persistent=False)
        self.levels = skeleton_levels(parents)
        self.register_buffer("lbs_weights", weights[:, skeleton], persistent=False)
        self.register_buffer("joint_template", joints_rest[skeleton], persistent=False)
        self.register_buffer("joint_dirs", torch.einsum("jv,vkd->jkd", body.J_regressor[skeleton], dirs_full),
                             persistent=False)
        rows = torch.cat([torch.arange(9 * (j - 1), 9 * j) for j in POSED])
        posedirs = body.posedirs[rows].reshape(rows.shape[0], -1, 3)[:, index]  # 9|POSED| x N x 3
        self.register_buffer("posedirs", posedirs.reshape(rows.shape[0], -1), persistent=False)

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
        cols = (coarse_ids[:, None] * 3 + torch.arange(3)).reshape(-1)
        self.register_buffer("landmark_posedirs", self.posedirs[:, cols], persistent=False)

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
        dense = self.upsample_op(self.coarse_shaped(params))
        if delta_g is not None:
            dense = dense + delta_g
        if delta_f is not None:
            dense = dense + delta_f
        return dense

    def skeleton_rotations(self, params: HeadParams) -> Tensor:
        """``B x J' x 3 x 3`` local rotations of the skeleton's joints (:attr:`skeleton`): the root, neck, head,
        jaw and eyes from ``params``, identity elsewhere."""
        b = params.batch_size
        posed = torch.stack([params.global_orient, params.neck_pose, params.head_pose, params.jaw_pose,
                             params.leye_pose, params.reye_pose], 1)  # B x 6 x 3, in ROTATED order
        rotations = pose_to_rotations(posed)
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        out = eye.expand(b, self.skeleton.shape[0], 3, 3)
        return out.index_copy(1, self.rotated, rotations) if b else out

    def forward(self, params: HeadParams, delta_g: Tensor | None = None, delta_f: Tensor | None = None) -> HeadOutput:
        """Pose the detailed dense mesh (Eq. 4).

        Args:
            params: SMPL-X parameters, batch ``B``.
            delta_g: ``N_s x 3`` or ``B x N_s x 3`` static identity offsets Δg.
            delta_f: ``B x N_s x 3`` per-frame expression offsets Δf(i).
        """
        canonical, vertices, joints = self._pose(params, self.upsample_op, self.lbs_weights, delta_g, delta_f)
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

    def _pose(self, params: HeadParams, upsample: SparseOperator | Tensor, weights: Tensor, delta_g: Tensor | None,
              delta_f: Tensor | None, coarse_ids: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Canonical and posed vertices for the rows of ``upsample`` (B as a :class:`SparseOperator`, or dense rows
        of B restricted to the columns ``coarse_ids``), and the posed joints."""
        b = params.batch_size
        coeffs = torch.cat([params.betas, params.expression], dim=-1)
        joints = self.joint_template + torch.einsum("bl,jkl->bjk", coeffs, self.joint_dirs)
        rotations = self.skeleton_rotations(params)
        feature = pose_feature(rotations[:, self.rotated])  # the posed joints but the root
        if coarse_ids is None:
            shaped = self.coarse_shaped(params)
            offsets = (feature @ self.posedirs).reshape(b, -1, 3)
            up = upsample
        else:
            shaped = self.v_template[coarse_ids] + torch.einsum("bl,nkl->bnk", coeffs, self.blend_dirs[coarse_ids])
            offsets = (feature @ self.landmark_posedirs).reshape(b, -1, 3)
            up = lambda x: _rows_times(upsample.to(x.dtype), x)  # noqa: E731
        canonical = up(shaped)
        if delta_g is not None:
            canonical = canonical + delta_g
        if delta_f is not None:
            canonical = canonical + delta_f
        posed_rest = canonical + up(offsets)
        posed_joints, transforms = joint_transforms(rotations, joints, self.skeleton_parents, self.levels)
        vertices = skin(posed_rest, weights, transforms) + params.transl[:, None]
        return canonical, vertices, posed_joints + params.transl[:, None]

    def region_weight(self, region: str) -> Tensor:
        """``N_s`` soft weight of a facial region of the neutral mesh: ``"lips"`` (the mouth and its surround),
        ``"eyes"`` (eyelids and brows), see :func:`exphead.regions.feature_region`."""
        neutral = self.canonical(HeadParams.zeros(1, self.num_betas, self.num_expression,
                                                  device=self.v_template.device))[0]
        landmarks = self.landmarks_of(neutral[None])[0]
        if region == "lips":
            return feature_region(neutral, landmarks, self.face_mask, FEATURE_LANDMARKS["lips"], 0.012)
        if region == "eyes":
            ids = FEATURE_LANDMARKS["eyes"] + FEATURE_LANDMARKS["brows"]
            return feature_region(neutral, landmarks, self.face_mask, ids, 0.012)
        raise ValueError(f"region must be 'lips' or 'eyes', got {region!r}")

    def head_weight(self) -> Tensor:
        """``N_s``: each dense vertex's skinning weight on the rigid head (head, jaw and eye joints), in [0, 1]."""
        columns = [self.skeleton.tolist().index(j) for j in (HEAD, JAW, L_EYE, R_EYE)]
        return self.lbs_weights[:, columns].sum(1).clamp(0, 1)

    def landmarks_of(self, vertices: Tensor) -> Tensor:
        """``B x N_s x 3`` dense vertices -> ``B x 68 x 3`` iBUG-68 landmarks."""
        corners = vertices[:, self.faces[self.landmark_faces]]  # B x 68 x 3 x 3
        return torch.einsum("blkd,lk->bld", corners, self.landmark_bary.to(vertices.dtype))


def _rows_times(rows: Tensor, x: Tensor) -> Tensor:
    """``P x C`` dense rows applied to ``B x C x 3``: one matrix product over the batch folded into columns."""
    b, c, d = x.shape
    return (rows @ x.permute(1, 0, 2).reshape(c, b * d)).reshape(-1, b, d).permute(1, 0, 2)


def _skeleton(parents: list[int], joints: list[int]) -> list[int]:
    """``joints`` and ``ROTATED`` with all their ancestors, sorted (parents come before children)."""
    keep = set(joints) | set(ROTATED)
    for j in list(keep):
        while parents[j] >= 0:
            j = parents[j]
            keep.add(j)
    return sorted(keep)


def default_dense_mesh(height: int = 512, width: int = 512) -> tuple[Tensor, Tensor, Camera]:
    """The default dense head in its neutral pose with the portrait camera: (``1 x N_s x 3``, faces, camera)."""
    model = HeadModel()
    out = model(HeadParams.zeros(1, model.num_betas, model.num_expression))
    return out.vertices.detach(), model.faces, Camera.portrait(1, height, width)
