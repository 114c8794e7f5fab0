"""The fixed barycentric up-sampling operator B of Eq. (2).

Every coarse triangle is split into ``n^2`` triangles (``n = 2**level``) on a regular
barycentric grid; dense vertices on shared edges and corners are shared, so the dense mesh is
watertight wherever the coarse one is. Each dense vertex is a fixed convex combination of the
corners of one coarse triangle, which makes B a sparse ``N_s x N`` matrix with at most three
non-zeros per row and rows summing to one: B reproduces affine functions exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Upsampling:
    """B and the dense topology.

    Attributes:
        matrix: sparse ``N_s x N`` float32 COO matrix (apply with :func:`exphead.geometry.apply_sparse`).
        faces: ``M_s x 3`` int64 dense faces, same orientation as their parent.
        parent: ``M_s`` int64 index of each dense face's coarse face.
        corner_bary: ``M_s x 3 x 3`` barycentrics of each dense face's corners in its parent face.
    """

    matrix: Tensor
    faces: Tensor
    parent: Tensor
    corner_bary: Tensor

    @property
    def num_dense(self) -> int:
        return self.matrix.shape[0]

    def locate(self, coarse_face: Tensor, bary: Tensor) -> tuple[Tensor, Tensor]:
        """Map points given as (coarse face ``K``, barycentrics ``K x 3``) to (dense face, dense barycentrics)."""
        out_face = torch.empty_like(coarse_face)
        out_bary = torch.empty_like(bary)
        for k in range(coarse_face.shape[0]):
            cand = torch.nonzero(self.parent == coarse_face[k]).squeeze(1)
            corners = self.corner_bary[cand].to(bary.dtype)  # C x 3 x 3
            # Solve bary = w @ corners for w (3 weights summing to one) in each candidate.
            w = torch.linalg.solve(corners.transpose(1, 2), bary[k].expand(len(cand), 3).unsqueeze(-1)).squeeze(-1)
            best = torch.argmax(w.min(dim=1).values)
            out_face[k], out_bary[k] = cand[best], w[best]
        return out_face, out_bary


def barycentric_upsampling(faces: np.ndarray | Tensor, num_vertices: int, level: int = 2) -> Upsampling:
    """Build B for a coarse mesh with ``faces`` (``M x 3``) and ``num_vertices`` vertices."""
    f = np.asarray(faces, dtype=np.int64)
    n = 2**level
    m = f.shape[0]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [0, 2]]]), axis=1)
    uniq, inverse = np.unique(edges, axis=0, return_inverse=True)
    edge_id = inverse.reshape(3, m).T  # M x 3 : edges (v0v1, v1v2, v0v2)
    num_edge_pts = len(uniq) * (n - 1)
    interior = [(i, j) for i in range(1, n) for j in range(1, n - i)]
    interior_index = {ij: k for k, ij in enumerate(interior)}

    def point_ids(i: int, j: int) -> np.ndarray:
        """Dense ids of grid point (i, j) (barycentrics ((n-i-j)/n, i/n, j/n)) in every face."""
        k = n - i - j
        if i == 0 and j == 0:
            return f[:, 0]
        if k == 0 and j == 0:
            return f[:, 1]
        if i == 0 and k == 0:
            return f[:, 2]
        if j == 0:  # edge v0-v1, position i from v0
            e, a, t = edge_id[:, 0], f[:, 0], i
            b = f[:, 1]
        elif k == 0:  # edge v1-v2, position j from v1
            e, a, t = edge_id[:, 1], f[:, 1], j
            b = f[:, 2]
        elif i == 0:  # edge v0-v2, position j from v0
            e, a, t = edge_id[:, 2], f[:, 0], j
            b = f[:, 2]
        else:
            return num_vertices + num_edge_pts + np.arange(m) * len(interior) + interior_index[(i, j)]
        pos = np.where(a < b, t, n - t)  # measured from the smaller vertex id
        return num_vertices + e * (n - 1) + (pos - 1)

    grid = {(i, j): point_ids(i, j) for i in range(n + 1) for j in range(n + 1 - i)}
    rows, cols, vals = [], [], []
    for (i, j), ids in grid.items():
        w = np.array([(n - i - j) / n, i / n, j / n])
        for c in range(3):
            if w[c] > 0:
                rows.append(ids)
                cols.append(f[:, c])
                vals.append(np.full(m, w[c]))
    rows, cols, vals = (np.concatenate(a) for a in (rows, cols, vals))
    key = rows * (num_vertices + 1) + cols
    _, first = np.unique(key, return_index=True)
    rows, cols, vals = rows[first], cols[first], vals[first]
    num_dense = num_vertices + num_edge_pts + m * len(interior)
    matrix = torch.sparse_coo_tensor(np.stack([rows, cols]), vals.astype(np.float32), (num_dense, num_vertices),
                                     check_invariants=False)

    dense_faces, parents, corner_bary = [], [], []
    for i in range(n):
        for j in range(n - i):
            tris = [((i, j), (i + 1, j), (i, j + 1))]
            if i + j < n - 1:
                tris.append(((i + 1, j), (i + 1, j + 1), (i, j + 1)))
            for tri in tris:
                dense_faces.append(np.stack([grid[p] for p in tri], 1))
                parents.append(np.arange(m))
                cb = np.array([[(n - a - b) / n, a / n, b / n] for a, b in tri])
                corner_bary.append(np.broadcast_to(cb, (m, 3, 3)))
    return Upsampling(
        matrix=matrix.coalesce(),
        faces=torch.from_numpy(np.concatenate(dense_faces)),
        parent=torch.from_numpy(np.concatenate(parents)),
        corner_bary=torch.from_numpy(np.concatenate(corner_bary).astype(np.float32)),
    )
