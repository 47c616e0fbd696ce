"""Helix arithmetic for the track finder (NumPy, float64, vectorised over candidates).

A track in the solenoid field (along z) is a helix: a circle in the transverse plane and a
straight line in ``(s, z)``, with ``s`` the transverse arc length. A state is a point
``(x, y, z)`` on the helix, the direction ``phi`` of travel in the transverse plane, the
signed curvature ``kappa`` (``> 0`` turns counter-clockwise; ``|kappa| = 1 / R`` with
``R = pT / (0.3 B)``) and the slope ``t = dz/ds = cot(theta)``.

References: the TrackML Throughput phase (arXiv:2105.01160) and its detector
(arXiv:1904.06778).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

KAPPA_MIN = 1e-7  # 1/mm: |kappa| below this is rounded up (sagitta < 0.05 mm over 1 m)
C_LIGHT = 2.99792458e-4  # GeV / (T mm): pT = C_LIGHT * B * R for |q| = 1


class Helix(NamedTuple):
    """Helix states, shape ``(n,)`` each (float64)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    phi: np.ndarray
    kappa: np.ndarray
    t: np.ndarray


def _safe_kappa(kappa: np.ndarray) -> np.ndarray:
    return np.where(np.abs(kappa) < KAPPA_MIN, np.where(kappa < 0, -KAPPA_MIN, KAPPA_MIN), kappa)


def arc_length(chord: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Transverse arc length of a chord on a circle of curvature ``kappa``."""
    u = np.clip(0.5 * kappa * chord, -1.0, 1.0)
    small = np.abs(u) < 1e-6
    ratio = np.where(small, 1.0 + u * u / 6.0, np.arcsin(u) / np.where(small, 1.0, u))
    return chord * ratio


def helix_from_points(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Helix:
    """The helix through three points, as a state at the last one.

    Args:
      a: ``(n, 3)`` first points (in the order of travel).
      b: ``(n, 3)`` middle points.
      c: ``(n, 3)`` last points.

    Returns:
      The state at ``c``: the transverse circle through the three points (Menger
      curvature), the direction of travel at ``c`` and the slope ``dz/ds`` from ``a`` to
      ``c``.
    """
    abx, aby = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    bcx, bcy = c[:, 0] - b[:, 0], c[:, 1] - b[:, 1]
    acx, acy = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    lab, lbc, lac = np.hypot(abx, aby), np.hypot(bcx, bcy), np.hypot(acx, acy)
    denom = np.maximum(lab * lbc * lac, 1e-12)
    kappa = 2.0 * (abx * bcy - aby * bcx) / denom
    phi = np.arctan2(bcy, bcx) + np.arcsin(np.clip(0.5 * kappa * lbc, -1.0, 1.0))
    s_ac = np.maximum(arc_length(lac, kappa), 1e-9)
    t = (c[:, 2] - a[:, 2]) / s_ac
    return Helix(c[:, 0].copy(), c[:, 1].copy(), c[:, 2].copy(), phi, kappa, t)


def advance(h: Helix, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position ``(x, y, z)`` after a transverse arc length ``s`` (broadcasts)."""
    half = 0.5 * h.kappa * s
    small = np.abs(half) < 1e-9
    sinc = np.where(small, 1.0, np.sin(half) / np.where(small, 1.0, half))
    ang = h.phi + half
    return (h.x + s * sinc * np.cos(ang), h.y + s * sinc * np.sin(ang), h.z + h.t * s)


def path_to_cylinder(h: Helix, r: np.ndarray, max_turn: float) -> np.ndarray:
    """Smallest positive arc length to the cylinder of radius ``r`` (``inf`` if none).

    Solves ``|c + R u(alpha)| = r`` for the circle centre ``c`` and radius ``R``; the arc
    turns by at most ``max_turn`` radians.
    """
    k = _safe_kappa(h.kappa)
    big_r = 1.0 / np.abs(k)
    cx = h.x - np.sin(h.phi) / k
    cy = h.y + np.cos(h.phi) / k
    d = np.maximum(np.hypot(cx, cy), 1e-12)
    cos_ = (r * r - d * d - big_r * big_r) / (2.0 * big_r * d)
    ok = np.abs(cos_) <= 1.0
    acos = np.arccos(np.clip(cos_, -1.0, 1.0))
    beta = np.arctan2(cy, cx)
    a0 = np.arctan2(h.y - cy, h.x - cx)
    sgn = np.sign(k)
    best = np.full(np.broadcast(r, k).shape, np.inf)
    for sol in (beta + acos, beta - acos):
        dalpha = np.mod(sgn * (sol - a0), 2.0 * np.pi)
        s = dalpha * big_r
        good = ok & (dalpha <= max_turn) & (s > 1e-3)
        best = np.where(good & (s < best), s, best)
    return best


def signed_path_to_cylinder(h: Helix, r: np.ndarray) -> np.ndarray:
    """Arc length, forwards or backwards, to the nearest crossing of radius ``r``.

    Returns ``nan`` where the circle does not reach ``r``.
    """
    k = _safe_kappa(h.kappa)
    big_r = 1.0 / np.abs(k)
    cx = h.x - np.sin(h.phi) / k
    cy = h.y + np.cos(h.phi) / k
    d = np.maximum(np.hypot(cx, cy), 1e-12)
    cos_ = (r * r - d * d - big_r * big_r) / (2.0 * big_r * d)
    acos = np.arccos(np.clip(cos_, -1.0, 1.0))
    beta = np.arctan2(cy, cx)
    a0 = np.arctan2(h.y - cy, h.x - cx)
    sgn = np.sign(k)
    d1 = wrap(sgn * (beta + acos - a0))
    d2 = wrap(sgn * (beta - acos - a0))
    dalpha = np.where(np.abs(d1) <= np.abs(d2), d1, d2)
    return np.where(np.abs(cos_) <= 1.0, dalpha * big_r, np.nan)


def path_to_plane(h: Helix, z: np.ndarray, max_turn: float) -> np.ndarray:
    """Arc length to the plane at ``z`` (``inf`` if behind or beyond ``max_turn``)."""
    t = np.where(np.abs(h.t) < 1e-9, 1e-9, h.t)
    s = (z - h.z) / t
    ok = (s > 1e-3) & (np.abs(h.kappa) * s <= max_turn)
    return np.where(ok, s, np.inf)


def wrap(phi: np.ndarray) -> np.ndarray:
    """Angle difference wrapped into ``[-pi, pi)``."""
    return np.mod(phi + np.pi, 2.0 * np.pi) - np.pi
