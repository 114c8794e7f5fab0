"""Geometry of the procedural head-and-shoulders template (the embedded default body model).

The template is a closed-top surface swept along the vertical axis: every row is a
superellipse cross-section whose half-width and front/back depth follow anatomical profiles,
with facial features (nose, eye sockets and eyeballs, brows, lips with a mouth slit, chin,
cheekbones, ears) added as smooth displacement fields. Units are metres, axes as the body
model's world frame (y up, +z out of the face, +x to the subject's left).

Everything here is deterministic numpy so the generated model is identical on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

# Anatomical landmarks of the template (metres).
CHEST_Y = -0.24
TOP_Y = 0.292
MOUTH_Y = 0.105
EYE_Y = 0.172
EYE_X = 0.033
NOSE_TIP_Y = 0.133
CHIN_Y = 0.08

# Profiles: (height y, value). Half-width, front depth (+z), back depth (-z), superellipse power.
_WIDTH = [(-0.24, 0.19), (-0.10, 0.20), (-0.06, 0.17), (-0.03, 0.10), (-0.01, 0.064), (0.05, 0.057),
          (0.075, 0.060), (0.09, 0.063), (0.11, 0.068), (0.13, 0.074), (0.16, 0.078), (0.20, 0.076),
          (0.24, 0.068), (0.265, 0.052), (0.282, 0.032), (0.292, 0.0)]
_FRONT = [(-0.24, 0.10), (-0.10, 0.10), (-0.06, 0.085), (-0.02, 0.062), (0.03, 0.055), (0.055, 0.066),
          (0.07, 0.094), (0.085, 0.106), (0.11, 0.110), (0.135, 0.108), (0.17, 0.099), (0.195, 0.103),
          (0.23, 0.097), (0.26, 0.080), (0.28, 0.052), (0.292, 0.0)]
_BACK = [(-0.24, 0.09), (-0.10, 0.09), (-0.06, 0.08), (0.0, 0.060), (0.06, 0.066), (0.10, 0.088),
         (0.15, 0.104), (0.20, 0.104), (0.25, 0.090), (0.275, 0.060), (0.287, 0.032), (0.292, 0.0)]
_POWER = [(-0.24, 3.2), (-0.06, 3.0), (-0.01, 2.0), (0.292, 2.0)]


def _profile(points: list[tuple[float, float]]) -> PchipInterpolator:
    y, v = np.array(points, dtype=np.float64).T
    return PchipInterpolator(y, v)


def gaussian(x: np.ndarray, y: np.ndarray, x0: float, y0: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - x0) / sx) ** 2 + ((y - y0) / sy) ** 2))


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass
class Grid:
    """The swept surface before features: ``rows x cols`` ring vertices plus a top pole."""

    vertices: np.ndarray  # N x 3
    faces: np.ndarray  # M x 3, counter-clockwise seen from outside
    rows: int
    cols: int
    row_y: np.ndarray  # rows
    phi: np.ndarray  # cols, 0 = front (+z), increasing towards +x


def row_heights() -> np.ndarray:
    """Row heights, denser over the face and around the mouth slit and eyes."""
    parts = [np.linspace(CHEST_Y, -0.06, 9), np.linspace(-0.05, 0.06, 8), np.linspace(0.065, 0.255, 34),
             np.array([0.262, 0.27, 0.277, 0.283, 0.2875]),
             np.array([MOUTH_Y - 0.0035, MOUTH_Y - 0.0012, MOUTH_Y + 0.0012, MOUTH_Y + 0.0035]),
             np.array([EYE_Y - 0.004, EYE_Y + 0.004])]
    y = np.unique(np.round(np.concatenate(parts), 5))
    keep = np.concatenate([[True], np.diff(y) > 8e-4])
    return y[keep]


def column_angles(cols: int, crowding: float = 0.55) -> np.ndarray:
    """Angles around the vertical axis, denser at the front (phi = 0)."""
    u = np.arange(cols) / cols
    return 2 * np.pi * u - crowding * np.sin(2 * np.pi * u)


def swept_grid(cols: int = 88) -> Grid:
    y = row_heights()
    phi = column_angles(cols)
    width, front, back, power = (_profile(p) for p in (_WIDTH, _FRONT, _BACK, _POWER))
    yy = y[:, None]
    s, c = np.sin(phi)[None, :], np.cos(phi)[None, :]
    p = power(yy)
    sx = np.sign(s) * np.abs(s) ** (2 / p)
    cz = np.sign(c) * np.abs(c) ** (2 / p)
    depth = np.where(cz > 0, front(yy), back(yy))
    x = width(yy) * sx
    z = depth * cz
    ring = np.stack([x, np.broadcast_to(yy, x.shape), z], axis=-1).reshape(-1, 3)
    pole = np.array([[0.0, TOP_Y, 0.5 * (front(TOP_Y - 0.004) - back(TOP_Y - 0.004))]])
    vertices = np.concatenate([ring, pole])

    rows = len(y)
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    cc, d = idx[1:], np.roll(idx[1:], -1, axis=1)
    # Outward orientation: phi grows towards +x, rows grow upwards.
    quads = np.concatenate([np.stack([a, b, cc], -1).reshape(-1, 3), np.stack([b, d, cc], -1).reshape(-1, 3)])
    top = idx[-1]
    cap = np.stack([top, np.roll(top, -1), np.full(cols, rows * cols)], -1)
    faces = np.concatenate([quads, cap]).astype(np.int64)
    return Grid(vertices, faces, rows, cols, y, phi)


def feature_displacement(v: np.ndarray) -> np.ndarray:
    """Facial features as an ``N x 3`` displacement of the swept surface."""
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    front = smoothstep(0.0, 0.04, z)
    d = np.zeros_like(v)
    dz = np.zeros_like(x)
    ax = np.abs(x)
    dz += 0.017 * gaussian(x, y, 0.0, 0.152, 0.0075, 0.022)          # nose ridge
    dz += 0.013 * gaussian(x, y, 0.0, NOSE_TIP_Y, 0.010, 0.009)      # nose tip
    dz += 0.006 * gaussian(ax, y, 0.013, 0.129, 0.006, 0.006)        # nostril wings
    dz -= 0.004 * gaussian(ax, y, 0.008, 0.124, 0.003, 0.003)        # nostrils
    dz -= 0.013 * gaussian(ax, y, EYE_X, EYE_Y, 0.014, 0.010)        # eye sockets
    dz += 0.009 * gaussian(ax, y, EYE_X, EYE_Y, 0.0085, 0.0055)      # eyeballs
    dz += 0.006 * gaussian(ax, y, 0.033, 0.192, 0.018, 0.0055)       # brow ridge
    dz += 0.005 * gaussian(ax, y, 0.050, 0.150, 0.014, 0.014)        # cheekbones
    dz += 0.006 * gaussian(x, y, 0.0, 0.112, 0.017, 0.0042)          # upper lip
    dz += 0.006 * gaussian(x, y, 0.0, 0.098, 0.015, 0.005)           # lower lip
    dz -= 0.009 * gaussian(x, y, 0.0, MOUTH_Y, 0.019, 0.0013) * (ax < 0.026)  # mouth slit
    dz += 0.007 * gaussian(x, y, 0.0, CHIN_Y, 0.014, 0.010)          # chin
    d[:, 2] = dz * front
    side = smoothstep(0.04, 0.06, ax)
    ear = 0.016 * gaussian(z, y, -0.006, 0.16, 0.011, 0.019) * side
    d[:, 0] = np.sign(x) * ear
    return d
