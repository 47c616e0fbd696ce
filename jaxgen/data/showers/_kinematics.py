"""Daughter kinematics of a SUPA split (arXiv:2202.05012)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def split_kinematics(
    x: jax.Array,
    y: jax.Array,
    px: jax.Array,
    py: jax.Array,
    energy: jax.Array,
    theta: jax.Array,
    delta: jax.Array,
    phi: jax.Array,
    dz: float,
    orientation: str = "reference",
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Daughters of a split (SUPA rules, arXiv:2202.05012); elementwise over ``(m,)``.

    With theta1 = theta/2 - delta and theta2 = theta/2 + delta, the daughters carry
    E1 = E theta2/theta and E2 = E - E1 and leave at angles theta1 and -theta2 in the plane
    of azimuth phi, i.e. local directions ``(+-dz tan theta_i cos phi, ... sin phi, dz)``,
    rotated to the parent's direction ``(x - px, y - py, dz)`` and propagated by one dz.

    Args:
      x: ``(m,)`` parent x position.
      y: ``(m,)`` parent y position.
      px: ``(m,)`` x of the parent's previous position (its direction is ``x - px``).
      py: ``(m,)`` y of the parent's previous position.
      energy: ``(m,)`` parent energy.
      theta: ``(m,)`` opening angle.
      delta: ``(m,)`` asymmetry, ``|delta| < theta / 2``.
      phi: ``(m,)`` azimuth of the splitting plane.
      dz: layer spacing.
      orientation: ``"reference"`` (the released code's matrix) or ``"exact"``.

    Returns:
      ``(x1, y1, e1, x2, y2, e2)``, each ``(m,)``.
    """
    t1 = 0.5 * theta - delta
    t2 = 0.5 * theta + delta
    e1 = energy * (t2 / theta)
    return _daughters(x, y, x - px, y - py, energy, e1, jnp.tan(t1), jnp.tan(t2),
                      jnp.cos(phi), jnp.sin(phi), dz, orientation)


def _daughters(x, y, vx, vy, energy, e1, tan1, tan2, c, s, dz, orientation):
    """``split_kinematics`` from the parent's step and the daughters' tangents.

    ``(vx, vy, dz)`` is the parent's step per layer; ``c``, ``s`` the azimuth's cos, sin.
    """
    e2 = energy - e1
    a1 = dz * tan1
    a2 = -dz * tan2
    inv = jax.lax.rsqrt(vx * vx + vy * vy + dz * dz)
    m3 = (vx * inv, vy * inv, dz * inv)
    invq = jax.lax.rsqrt(m3[1] * m3[1] + m3[2] * m3[2])
    m2y, m2z = -m3[2] * invq, m3[1] * invq
    m1 = (m2y * m3[2] - m2z * m3[1], m2z * m3[0], -m2y * m3[0])

    def rotate(a: jax.Array) -> tuple[jax.Array, jax.Array]:
        d = (a * c, a * s, jnp.full_like(a, dz))
        if orientation == "reference":  # rows m1, m2, m3 dotted with d (SUPA's `M @ d`)
            rx = m1[0] * d[0] + m1[1] * d[1] + m1[2] * d[2]
            ry = m2y * d[1] + m2z * d[2]
            rz = m3[0] * d[0] + m3[1] * d[1] + m3[2] * d[2]
        else:  # columns: d_x m1 + d_y m2 + d_z m3 maps the local z axis onto m3
            rx = d[0] * m1[0] + d[2] * m3[0]
            ry = d[0] * m1[1] + d[1] * m2y + d[2] * m3[1]
            rz = d[0] * m1[2] + d[1] * m2z + d[2] * m3[2]
        scale = dz / rz
        return x + rx * scale, y + ry * scale

    x1, y1 = rotate(a1)
    x2, y2 = rotate(a2)
    return x1, y1, e1, x2, y2, e2
