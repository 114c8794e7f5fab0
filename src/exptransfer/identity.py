"""The target identity's neutral geometry as the geometry network G sees it (paper Eq. 9).

``V_neutral`` (``N_s x 3``, canonical world frame of :mod:`exphead.camera`: y up, z out of the face,
metres) is expressed in a *normalised head frame* built from the subject's own iBUG-68 landmarks, so
that a position means "the same place on the face" across identities:

* origin: the mean of the four eye corners (landmarks 36, 39, 42, 45);
* x: from the subject's right outer eye corner (36) to the left one (45); y: from the chin (8) up to
  the eye centre, made orthogonal to x; z = x × y (out of the face);
* unit length: the outer eye-corner distance (about 9 cm).

Local shape enters as the *personal detail* of the face, Δg = V_neutral − B(V(β)) (the neutral minus the
parametric surface of the subject's β), as heights along the normal in mm, raw and high-passed at a few
scales: creases already in the neutral face (resting wrinkles, whose depth tells the age) are visible to G.

Only face vertices (``HeadModel.face_mask``) are described; G predicts nothing elsewhere.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from exphead.geometry import edges, uniform_laplacian, vertex_normals
from exphead.head_model import HeadModel, HeadParams

# iBUG-68 landmarks the per-vertex features are measured from: brows, eye corners, nose, mouth, chin.
KEY_LANDMARKS = (17, 21, 22, 26, 36, 39, 42, 45, 27, 30, 31, 35, 48, 51, 54, 57, 8)
# Smoothing iterations of the high-passed detail heights (about 1.5, 3 and 6 face edges, i.e. 2-8 mm).
DETAIL_SCALES = (2, 8, 32)
FEATURE_VERSION = 1


@dataclass
class IdentityGeometry:
    """Per-face-vertex description of one (or ``B``) neutral identities in the normalised head frame.

    Attributes (leading ``B x`` optional, shared by all fields):
        positions: ``N x 3`` face-vertex positions (head frame, units of the eye-corner distance).
        normals: ``N x 3`` unit vertex normals (head frame).
        detail: ``N x (1 + len(DETAIL_SCALES))`` heights in mm of the personal detail (:func:`detail_heights`
            of Δg on the face): creases and bumps of the neutral face, e.g. resting wrinkles.
        landmarks: ``K x 3`` the :data:`KEY_LANDMARKS` (head frame, normalised).
        rotation: ``3 x 3`` world -> head-frame rotation (rows are the head axes in world coordinates).
    """

    positions: Tensor
    normals: Tensor
    detail: Tensor
    landmarks: Tensor
    rotation: Tensor

    @property
    def num_vertices(self) -> int:
        return self.positions.shape[-2]

    def select(self, vertex_index: Tensor) -> IdentityGeometry:
        """The same identity restricted to face-local vertex ids ``vertex_index`` (``S``, unbatched only)."""
        return IdentityGeometry(self.positions[vertex_index], self.normals[vertex_index],
                                self.detail[vertex_index], self.landmarks, self.rotation)

    def to(self, *args, **kwargs) -> IdentityGeometry:
        return IdentityGeometry(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})

    def unsqueeze(self) -> IdentityGeometry:
        """Add a batch dimension of 1."""
        return IdentityGeometry(**{f.name: getattr(self, f.name)[None] for f in fields(self)})

    @staticmethod
    def stack(items: list[IdentityGeometry]) -> IdentityGeometry:
        """Batch identities that describe the same number of vertices."""
        return IdentityGeometry(**{f.name: torch.stack([getattr(i, f.name) for i in items]) for f in fields(items[0])})

    def to_dict(self, prefix: str = "") -> dict[str, Tensor]:
        return {prefix + f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def from_dict(data: dict[str, Tensor], prefix: str = "") -> IdentityGeometry:
        return IdentityGeometry(**{f.name: data[prefix + f.name] for f in fields(IdentityGeometry)})


def head_frame(landmarks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``68 x 3`` world landmarks -> (origin ``3``, rotation ``3 x 3`` world -> head, scale in metres)."""
    if landmarks.shape != (68, 3):
        raise ValueError(f"expected 68 x 3 iBUG-68 landmarks, got {tuple(landmarks.shape)}")
    origin = landmarks[[36, 39, 42, 45]].mean(0)
    x_axis = landmarks[45] - landmarks[36]
    scale = x_axis.norm()
    x_axis = x_axis / scale
    up = origin - landmarks[8]
    y_axis = F.normalize(up - (up @ x_axis) * x_axis, dim=0)
    z_axis = torch.linalg.cross(x_axis, y_axis)
    return origin, torch.stack([x_axis, y_axis, z_axis]), scale


_TOPOLOGY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _topology(model: HeadModel) -> tuple[Tensor, Tensor, Tensor]:
    """(face_index ``N``, face edges ``E x 2`` in face-local ids, sparse CSR ``N_s x N_s`` Laplacian), per model."""
    cached = _TOPOLOGY.get(model)
    if cached is None or cached[0].device != model.face_mask.device:
        face_index = torch.nonzero(model.face_mask > 0).squeeze(1)
        local = torch.full((model.num_vertices,), -1, dtype=torch.long, device=face_index.device)
        local[face_index] = torch.arange(face_index.shape[0], device=face_index.device)
        e = local[edges(model.faces)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            laplacian = uniform_laplacian(model.faces.cpu(), model.num_vertices)
        laplacian = laplacian.to(face_index.device)
        _TOPOLOGY[model] = (face_index, e[(e >= 0).all(1)], laplacian)
    return _TOPOLOGY[model]


def face_edges(model: HeadModel) -> Tensor:
    """``E x 2`` mesh edges with both ends on the face, as face-local vertex ids (rows of ``face_index``)."""
    return _topology(model)[1]


def detail_heights(laplacian: Tensor, offsets: Tensor, normals: Tensor, scales: tuple[int, ...] = DETAIL_SCALES,
                   step: float = 0.5) -> Tensor:
    """Multi-scale heights in mm of an offset field along the normals: ``N x (1 + len(scales))``,
    ``[d·n, (d - S^k d)·n for k in scales]`` with the smoothing ``S = I - step L`` applied ``k`` times.

    The first column is the raw height; the others keep only detail narrower than about ``sqrt(k)`` edges
    (creases a few mm wide). ``laplacian``: sparse ``N x N`` uniform Laplacian (CSR is fastest);
    ``offsets``, ``normals``: ``N x 3`` (metres; unit normals).
    """
    out, smooth, done = [(offsets * normals).sum(-1) * 1000.0], offsets, 0
    for k in sorted(scales):
        for _ in range(k - done):
            smooth = smooth - step * (laplacian @ smooth)
        done = k
        out.append(((offsets - smooth) * normals).sum(-1) * 1000.0)
    return torch.stack(out, dim=-1)


def identity_geometry(model: HeadModel, neutral: Tensor, betas: Tensor | None = None) -> IdentityGeometry:
    """Describe a neutral dense mesh ``V_neutral`` (``N_s x 3``, world metres) for G.

    Args:
        model: the dense head model.
        neutral: V_neutral = B(V(β)) + Δg.
        betas: β (``num_betas``) of the subject, which separates the personal detail Δg = V_neutral - B(V(β))
            seen by the ``detail`` features from the parametric shape; ``None`` means zeros.

    Raises:
        ValueError: when ``neutral`` is not ``N_s x 3`` for this ``model``.
    """
    if neutral.dim() != 2 or neutral.shape != (model.num_vertices, 3):
        raise ValueError(f"neutral must be N_s x 3 = ({model.num_vertices}, 3) for this HeadModel, "
                         f"got {tuple(neutral.shape)}; pass PersonalizedHead.neutral()")
    device = model.face_mask.device
    neutral = neutral.detach().to(device, torch.float32)
    face_index, _, laplacian = _topology(model)
    normals = vertex_normals(neutral[None], model.faces)[0]
    all_landmarks = model.landmarks_of(neutral[None])[0]
    origin, rotation, scale = head_frame(all_landmarks)

    # Personal detail on the face: V_neutral minus the parametric surface of its β.
    rest = HeadParams.zeros(1, model.num_betas, model.num_expression, device=device)
    if betas is not None:
        rest.betas = betas.detach().reshape(1, -1).to(device, torch.float32)
    offsets = (neutral - model.canonical(rest)[0]) * model.face_mask[:, None]
    detail = detail_heights(laplacian, offsets, normals)[face_index]

    landmarks = all_landmarks[list(KEY_LANDMARKS)]
    to_head = lambda x: (x - origin) @ rotation.T / scale  # noqa: E731
    return IdentityGeometry(to_head(neutral[face_index]), normals[face_index] @ rotation.T, detail,
                            to_head(landmarks), rotation)
