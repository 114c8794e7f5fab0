"""Rig of the procedural template: joints, skinning weights, blendshapes, pose correctives,
and the 68-point landmark embedding, in the layout of an SMPL-X model file.

The SMPL-X joint tree (55 joints) is kept as it is. Only the joints above the chest carry
skinning weight (spine3, neck, head, jaw, eyes, collars, shoulders); the others sit on the
kinematic chain below the cut with zero weight, so any SMPL-X pose vector is valid input.
"""

from __future__ import annotations

import numpy as np

from .surface import EYE_X, EYE_Y, MOUTH_Y, gaussian, smoothstep

NUM_JOINTS = 55
SMPLX_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
                          20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
                          21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53])
PELVIS, SPINE1, SPINE2, SPINE3, NECK, L_COLLAR, R_COLLAR, HEAD = 0, 3, 6, 9, 12, 13, 14, 15
L_SHOULDER, R_SHOULDER, JAW, L_EYE, R_EYE = 16, 17, 22, 23, 24


def _ring_rows(v: np.ndarray, y: float, tol: float = 0.012) -> np.ndarray:
    return np.abs(v[:, 1] - y) < tol


def joint_regressor(v: np.ndarray, eye_vertices: dict[int, np.ndarray]) -> np.ndarray:
    """``55 x N`` regressor; every row sums to one, so joints follow the shape blendshapes."""
    n = v.shape[0]
    reg = np.zeros((NUM_JOINTS, n))

    def mean_of(mask: np.ndarray) -> np.ndarray:
        row = np.zeros(n)
        row[mask] = 1.0 / mask.sum()
        return row

    chest = mean_of(_ring_rows(v, -0.15))
    neck = mean_of(_ring_rows(v, 0.02))
    reg[SPINE3] = chest
    reg[NECK] = neck
    reg[HEAD] = mean_of(_ring_rows(v, 0.10) & (v[:, 2] < 0.06))
    reg[JAW] = mean_of(_ring_rows(v, 0.125, 0.006) & (np.abs(v[:, 0]) > 0.055))
    for j, side in ((L_EYE, 1), (R_EYE, -1)):
        reg[j] = mean_of(eye_vertices[side])
    shoulder_ring = _ring_rows(v, -0.10)
    collar_ring = _ring_rows(v, -0.07)
    reg[L_COLLAR] = mean_of(collar_ring & (v[:, 0] > 0.02) & (v[:, 0] < 0.09))
    reg[R_COLLAR] = mean_of(collar_ring & (v[:, 0] < -0.02) & (v[:, 0] > -0.09))
    reg[L_SHOULDER] = mean_of(shoulder_ring & (v[:, 0] > 0.15))
    reg[R_SHOULDER] = mean_of(shoulder_ring & (v[:, 0] < -0.15))
    # Below the cut: affine extrapolation down the spine (rows still sum to one).
    reg[SPINE2] = chest + 0.5 * (chest - neck)
    reg[SPINE1] = chest + 1.0 * (chest - neck)
    reg[PELVIS] = chest + 1.6 * (chest - neck)
    for j in range(NUM_JOINTS):
        if not reg[j].any():
            reg[j] = reg[SMPLX_PARENTS[j]]  # zero-length bones for legs, arms and hands
    return reg


def skinning_weights(v: np.ndarray, eye_vertices: dict[int, np.ndarray]) -> np.ndarray:
    """``N x 55`` skinning weights, rows summing to one."""
    x, y, z = v.T
    ax = np.abs(x)
    w = np.zeros((v.shape[0], NUM_JOINTS))
    head = smoothstep(0.04, 0.085, y + 0.25 * np.clip(-z, 0, None))
    neck = smoothstep(-0.07, -0.02, y) * (1 - head)
    body = 1 - head - neck
    arm = smoothstep(0.08, 0.17, ax) * body
    collar = smoothstep(0.03, 0.09, ax) * body - arm
    w[:, SPINE3] = body - arm - collar
    left = x > 0
    w[:, L_COLLAR] = np.where(left, collar, 0)
    w[:, R_COLLAR] = np.where(~left, collar, 0)
    w[:, L_SHOULDER] = np.where(left, arm, 0)
    w[:, R_SHOULDER] = np.where(~left, arm, 0)
    w[:, NECK] = neck
    # Jaw: the face below the mouth slit (sharp across the lips), rising to the hinge at the ears.
    lips = ax < 0.03
    soft = np.where(lips, 0.0012, 0.008)
    line = MOUTH_Y + 0.035 * smoothstep(0.02, 0.075, ax) * smoothstep(0.06, -0.01, z)
    below = 1.0 / (1.0 + np.exp((y - line) / soft))
    jaw = below * smoothstep(-0.02, 0.03, z) * smoothstep(0.055, 0.085, y + 0.2 * smoothstep(0.09, 0.0, z))
    jaw = jaw * head
    w[:, JAW] = jaw
    w[:, HEAD] = head - jaw
    for j, side in ((L_EYE, 1), (R_EYE, -1)):
        mask = eye_vertices[side]
        w[mask, j] = w[mask, HEAD]
        w[mask, HEAD] = 0.0
    return w / w.sum(1, keepdims=True)


def eyeball_vertices(v: np.ndarray) -> dict[int, np.ndarray]:
    """Vertices of each eyeball (+1 = subject's left, -1 = right)."""
    out = {}
    for side in (1, -1):
        r = np.hypot((v[:, 0] - side * EYE_X) / 0.0085, (v[:, 1] - EYE_Y) / 0.0062)
        out[side] = (r < 1.0) & (v[:, 2] > 0.05)
    return out


def _smooth_random_fields(v: np.ndarray, count: int, amplitude: np.ndarray, region: np.ndarray,
                          rng: np.random.Generator, scale: float) -> np.ndarray:
    """``N x 3 x count`` random smooth displacement fields (sums of Gaussian RBFs) inside a region."""
    out = np.zeros((v.shape[0], 3, count))
    candidates = v[region > 0.5]
    for k in range(count):
        centers = candidates[rng.integers(0, len(candidates), size=3)]
        field = np.zeros((v.shape[0], 3))
        for c in centers:
            g = np.exp(-0.5 * np.sum((v - c) ** 2, 1) / scale**2)
            field += g[:, None] * rng.normal(size=3)[None, :]
        field *= region[:, None]
        norm = np.abs(field).max()
        out[:, :, k] = field / max(norm, 1e-12) * amplitude[k]
    return out


def face_weight(v: np.ndarray) -> np.ndarray:
    x, y, z = v.T
    return smoothstep(0.02, 0.06, z) * smoothstep(0.06, 0.08, y) * smoothstep(0.25, 0.22, y) \
        * smoothstep(0.075, 0.055, np.abs(x))


def shape_blendshapes(v: np.ndarray, features: np.ndarray, num: int = 300, seed: int = 0) -> np.ndarray:
    """``N x 3 x num`` identity blendshapes: a few named anatomical ones, then random smooth ones."""
    x, y, z = v.T
    head = smoothstep(0.05, 0.09, y)
    face = face_weight(v)
    jaw_region = smoothstep(0.13, 0.09, y) * head
    dirs = np.zeros((v.shape[0], 3, num))
    named = [
        np.stack([0.06 * x * head, 0 * x, 0 * x], 1),                                  # head width
        np.stack([0 * x, 0.05 * (y - 0.07) * head, 0 * x], 1),                         # head height
        np.stack([0 * x, 0 * x, 0.06 * np.clip(z, 0, None) * head], 1),                # face depth
        np.stack([0.08 * x * jaw_region, 0 * x, 0 * x], 1),                            # jaw width
        0.25 * features * face[:, None] * smoothstep(0.2, 0.17, y)[:, None]            # feature strength
        * gaussian(x, y, 0.0, 0.14, 0.02, 0.03)[:, None],
        np.stack([0.004 * np.sign(x) * gaussian(np.abs(x), y, EYE_X, EYE_Y, 0.012, 0.012), 0 * x, 0 * x], 1),
        np.stack([0 * x, -0.006 * smoothstep(0.1, 0.07, y) * head, 0 * x], 1),        # chin length
        np.stack([0.08 * x * smoothstep(0.07, 0.03, y) * smoothstep(-0.03, 0.0, y), 0 * x, 0 * x], 1),  # neck
        np.stack([0.05 * x * smoothstep(-0.02, -0.08, y), 0 * x, 0 * x], 1),          # shoulders
        np.stack([0.004 * np.sign(x) * gaussian(np.abs(x), y, 0.05, 0.13, 0.015, 0.02), 0 * x,
                  0.003 * gaussian(np.abs(x), y, 0.05, 0.13, 0.015, 0.02)], 1),       # cheek fullness
    ]
    for k, d in enumerate(named):
        dirs[:, :, k] = d
    rng = np.random.default_rng(seed)
    rest = num - len(named)
    amp = 0.004 * (np.arange(rest) + 1.0) ** -0.6
    dirs[:, :, len(named):] = _smooth_random_fields(v, rest, amp, np.maximum(head, 0.3), rng, 0.05)
    return dirs


def expression_blendshapes(v: np.ndarray, num: int = 100, seed: int = 1) -> np.ndarray:
    """``N x 3 x num`` expression blendshapes confined to the face."""
    x, y, z = v.T
    ax, sx = np.abs(x), np.sign(x)
    face = face_weight(v)
    corners = gaussian(ax, y, 0.025, MOUTH_Y, 0.011, 0.009)
    lips = gaussian(x, y, 0.0, MOUTH_Y, 0.022, 0.009)
    upper_lip = gaussian(x, y, 0.0, 0.112, 0.02, 0.005)
    lower_lip = gaussian(x, y, 0.0, 0.098, 0.018, 0.006)
    brows = gaussian(ax, y, 0.033, 0.193, 0.02, 0.01)
    inner_brows = gaussian(ax, y, 0.015, 0.19, 0.01, 0.008)
    lids = gaussian(ax, y, EYE_X, EYE_Y + 0.004, 0.011, 0.005)
    cheeks = gaussian(ax, y, 0.045, 0.125, 0.015, 0.015)
    nose_sides = gaussian(ax, y, 0.012, 0.14, 0.008, 0.012)
    zero = np.zeros_like(x)
    named = [
        np.stack([0.004 * sx * corners, 0.006 * corners + 0.002 * cheeks, -0.002 * corners + 0.003 * cheeks], 1),
        np.stack([zero, 0.002 * upper_lip - 0.003 * lower_lip, zero], 1),              # lips apart
        np.stack([-0.004 * sx * lips, zero, 0.006 * lips], 1),                           # pucker
        np.stack([zero, 0.005 * brows, 0.001 * brows], 1),                               # brow raise
        np.stack([-0.003 * sx * inner_brows, -0.003 * inner_brows, 0.001 * inner_brows], 1),  # furrow
        np.stack([zero, -0.006 * lids, 0.001 * lids], 1),                                # eyes close
        np.stack([0.005 * sx * cheeks, zero, 0.004 * cheeks], 1),                       # cheek puff
        np.stack([zero, -0.001 * upper_lip + 0.001 * lower_lip, -0.003 * lips], 1),      # lip press
        np.stack([0.005 * lips, zero, zero], 1),                                          # mouth left
        np.stack([zero, 0.003 * nose_sides + 0.002 * gaussian(x, y, 0, 0.114, 0.01, 0.004), zero], 1),  # sneer
        np.stack([0.002 * sx * corners, -0.005 * corners, zero], 1),                      # frown
    ]
    dirs = np.zeros((v.shape[0], 3, num))
    for k, d in enumerate(named):
        dirs[:, :, k] = d * face[:, None]
    rng = np.random.default_rng(seed)
    rest = num - len(named)
    amp = 0.003 * (np.arange(rest) + 1.0) ** -0.5
    dirs[:, :, len(named):] = _smooth_random_fields(v, rest, amp, face, rng, 0.015)
    return dirs


def pose_correctives(v: np.ndarray) -> np.ndarray:
    """``N x 3 x 486`` pose blendshapes: the cheeks draw in as the jaw opens."""
    x, y, _ = v.T
    dirs = np.zeros((v.shape[0], 3, 9 * (NUM_JOINTS - 1)))
    cheeks = gaussian(np.abs(x), y, 0.05, 0.115, 0.015, 0.02) * face_weight(v)
    sin_jaw = 9 * (JAW - 1) + 7  # element R[2, 1] = sin(angle) of the jaw rotation about x
    dirs[:, 0, sin_jaw] = -0.012 * np.sign(x) * cheeks
    return dirs


# iBUG-68 landmark positions in the frontal (x, y) plane of the template.
def _landmarks_xy() -> np.ndarray:
    th = np.linspace(-0.47 * np.pi, 0.47 * np.pi, 17)
    contour = np.stack([0.07 * np.sin(th), 0.075 + 0.085 * (1 - np.cos(th)) ** 1.1], 1)
    bx = np.linspace(0.055, 0.012, 5)
    brow_r = np.stack([-bx, 0.191 + 0.006 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_l = np.stack([bx[::-1], 0.191 + 0.006 * np.sin(np.linspace(0, np.pi, 5))], 1)
    bridge = np.stack([np.zeros(4), [0.175, 0.162, 0.149, 0.137]], 1)
    nostrils = np.array([[-0.014, 0.127], [-0.007, 0.125], [0, 0.124], [0.007, 0.125], [0.014, 0.127]])
    eye = np.array([[-0.014, 0.0], [-0.005, 0.0045], [0.006, 0.0045], [0.014, -0.001],
                    [0.006, -0.0045], [-0.005, -0.0045]])
    eye_l = eye + [EYE_X, EYE_Y]  # 42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid
    eye_r = eye_l[[3, 2, 1, 0, 5, 4]] * [-1, 1]  # mirror: 36 outer, 37-38 upper, 39 inner, 40-41 lower
    outer = np.array([[-0.025, 0.105], [-0.016, 0.111], [-0.006, 0.114], [0, 0.113], [0.006, 0.114],
                      [0.016, 0.111], [0.025, 0.105], [0.016, 0.097], [0.006, 0.094], [0, 0.093],
                      [-0.006, 0.094], [-0.016, 0.097]])
    inner = np.array([[-0.02, 0.105], [-0.008, MOUTH_Y + 0.002], [0, MOUTH_Y + 0.002], [0.008, MOUTH_Y + 0.002],
                      [0.02, 0.105], [0.008, MOUTH_Y - 0.002], [0, MOUTH_Y - 0.002], [-0.008, MOUTH_Y - 0.002]])
    return np.concatenate([contour, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, outer, inner])


def _ray_hits(origins: np.ndarray, direction: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Möller-Trumbore: ``R x T`` hit distances (inf for a miss) and ``R x T x 2`` barycentrics (u, v)."""
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    p = np.cross(direction, e2)
    det = np.einsum("tk,tk->t", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origins[:, None, :] - tris[None, :, 0]
    u = np.einsum("rtk,tk->rt", s, p) * inv
    q = np.cross(s, e1[None])
    v = np.einsum("k,rtk->rt", direction, q) * inv
    t = np.einsum("tk,rtk->rt", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return np.where(hit, t, np.inf), np.stack([u, v], -1)


def landmark_embedding(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cast a ray from the front for each of the 68 landmarks: (face index 68, barycentrics 68 x 3)."""
    xy = _landmarks_xy()
    origins = np.concatenate([xy, np.full((68, 1), 1.0)], 1)
    dist, uv = _ray_hits(origins, np.array([0.0, 0.0, -1.0]), vertices[faces])
    face_idx = np.argmin(dist, axis=1)
    if not np.isfinite(dist[np.arange(68), face_idx]).all():
        raise RuntimeError("procedural template: a landmark ray misses the surface")
    u, v = uv[np.arange(68), face_idx].T
    return face_idx.astype(np.int64), np.stack([1 - u - v, u, v], 1)
