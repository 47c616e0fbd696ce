"""Standard low-dimensional toy densities: jit-able samplers ``(key, n) -> (n, 2)``.

The 2D toys follow the definitions of the Flows-for-Flows code (arXiv:2211.02487,
``ffflows/data/plane.py``), the NSF two-spirals (arXiv:1906.04032) and the usual GAN
mode-collapse toys (ring and grid of Gaussians). Conditional toys return ``(x, c)`` with
``c`` of shape ``(n, 1)``. Every sampler is a pure function of its key and can be jitted
with ``n`` static.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Sampler = Callable[[jax.Array, int], jax.Array]

CHECKERBOARD_ENTROPY = math.log(32.0)
"""Differential entropy (nats) of ``checkerboard``: uniform on a support of area 32."""

DISJOINT_SQUARES_ENTROPY = math.log(4.0)
"""Differential entropy (nats) of ``disjoint_squares``: uniform on 4 unit squares."""


def checkerboard(key: jax.Array, n: int) -> jax.Array:
    """Uniform on the 8 black squares of a 4x4 board of side 2 spanning [-4, 4]^2."""
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = 4.0 * jax.random.uniform(k1, (n,)) - 2.0
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.bernoulli(k3, 0.5, (n,))
    x2 = x2 + jnp.mod(jnp.floor(x1), 2.0)
    return 2.0 * jnp.stack([x1, x2], axis=-1)


def checkerboard_log_prob(x: jax.Array) -> jax.Array:
    """Exact log-density of ``checkerboard`` (``-log 32`` on the support, ``-inf`` off it)."""
    u = x / 2.0
    inside = (jnp.abs(u[..., 0]) <= 2.0) & (jnp.abs(u[..., 1]) <= 2.0)
    parity = jnp.mod(jnp.floor(u[..., 0]) + jnp.floor(u[..., 1]), 2.0) == 0.0
    return jnp.where(inside & parity, -CHECKERBOARD_ENTROPY, -jnp.inf)


def two_moons(key: jax.Array, n: int, noise: float = 0.1) -> jax.Array:
    """Two interleaved half circles, centred and scaled to unit-ish spread."""
    k1, k2, k3 = jax.random.split(key, 3)
    t = math.pi * jax.random.uniform(k1, (n,))
    upper = jax.random.bernoulli(k2, 0.5, (n,))
    x = jnp.where(upper, jnp.cos(t), 1.0 - jnp.cos(t))
    y = jnp.where(upper, jnp.sin(t), 0.5 - jnp.sin(t))
    pts = jnp.stack([x - 0.5, y - 0.25], axis=-1) * 2.0
    return pts + noise * jax.random.normal(k3, (n, 2))


def spirals(key: jax.Array, n: int) -> jax.Array:
    """The NSF two-spirals toy, divided by 3, with Gaussian noise of std 0.1."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    r = jnp.sqrt(jax.random.uniform(k1, (n,))) * 540.0 * (2.0 * math.pi / 360.0)
    dx = -jnp.cos(r) * r + 0.5 * jax.random.uniform(k2, (n,))
    dy = jnp.sin(r) * r + 0.5 * jax.random.uniform(k3, (n,))
    sign = jnp.where(jax.random.bernoulli(k4, 0.5, (n,)), 1.0, -1.0)
    pts = sign[:, None] * jnp.stack([dx, dy], axis=-1) / 3.0
    return pts + 0.1 * jax.random.normal(jax.random.fold_in(key, 7), (n, 2))


def _ring(key: jax.Array, n: int, radius: float, noise: float) -> jax.Array:
    k1, k2 = jax.random.split(key)
    theta = 2.0 * math.pi * jax.random.uniform(k1, (n,))
    pts = radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    return pts + noise * jax.random.normal(k2, (n, 2))


def concentric_rings(key: jax.Array, n: int) -> jax.Array:
    """Four rings of radius 0.8k with noise 0.04k, k = 1..4, a quarter of the points each."""
    k1, k2 = jax.random.split(key)
    k = jax.random.randint(k1, (n,), 1, 5).astype(jnp.float32)
    return 0.4 * k[:, None] * _ring(k2, n, 2.0, 0.1)


def four_circles(key: jax.Array, n: int) -> jax.Array:
    """Four rings of radius 2 centred at (+-1, +-1), Gaussian noise std 0.1."""
    k1, k2 = jax.random.split(key)
    centres = jnp.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    which = jax.random.randint(k1, (n,), 0, 4)
    return centres[which] + _ring(k2, n, 2.0, 0.1)


def _bars(key: jax.Array, n: int, num_bars: int) -> jax.Array:
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = 2.0 * (jax.random.uniform(k1, (n,)) + 0.3)
    bar = jnp.stack([x1, jnp.zeros(n)], axis=-1) + 0.1 * jax.random.normal(k2, (n, 2))
    angle = 2.0 * math.pi * jax.random.randint(k3, (n,), 0, num_bars) / num_bars
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.stack([c * bar[:, 0] - s * bar[:, 1], s * bar[:, 0] + c * bar[:, 1]], axis=-1)


def star(key: jax.Array, n: int) -> jax.Array:
    """Four bars from 0.6 to 2.6 along the axes, noise std 0.1."""
    return _bars(key, n, 4)


def eight_star(key: jax.Array, n: int) -> jax.Array:
    """Eight bars at multiples of 45 degrees, noise std 0.1."""
    return _bars(key, n, 8)


def ring(key: jax.Array, n: int) -> jax.Array:
    """An annulus of radius 2.25 with Gaussian width 0.3375 (the F4F ``Anulus(1.25)``)."""
    return 0.5 * (1.25 + 1.0) * _ring(key, n, 2.0, 0.3)


def ring_of_gaussians(
    key: jax.Array, n: int, num_modes: int = 8, radius: float = 2.0, std: float = 0.02
) -> jax.Array:
    """``num_modes`` equal Gaussians on a circle (the GAN mode-collapse toy)."""
    k1, k2 = jax.random.split(key)
    angle = 2.0 * math.pi * jax.random.randint(k1, (n,), 0, num_modes) / num_modes
    centres = radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return centres + std * jax.random.normal(k2, (n, 2))


def grid_of_gaussians(
    key: jax.Array, n: int, side: int = 5, spacing: float = 2.0, std: float = 0.05
) -> jax.Array:
    """``side x side`` equal Gaussians on a grid centred at the origin."""
    k1, k2 = jax.random.split(key)
    idx = jax.random.randint(k1, (n, 2), 0, side).astype(jnp.float32)
    centres = spacing * (idx - (side - 1) / 2.0)
    return centres + std * jax.random.normal(k2, (n, 2))


def disjoint_squares(key: jax.Array, n: int) -> jax.Array:
    """Uniform on four disjoint unit squares centred at (+-1, +-1) (gaps of width 1)."""
    k1, k2 = jax.random.split(key)
    corner = jnp.where(jax.random.bernoulli(k1, 0.5, (n, 2)), 1.0, -1.0)
    return corner + jax.random.uniform(k2, (n, 2), minval=-0.5, maxval=0.5)


def disjoint_squares_log_prob(x: jax.Array) -> jax.Array:
    """Exact log-density of ``disjoint_squares``."""
    d = jnp.abs(jnp.abs(x) - 1.0)
    inside = jnp.all(d <= 0.5, axis=-1)
    return jnp.where(inside, -DISJOINT_SQUARES_ENTROPY, -jnp.inf)


TOYS_2D: dict[str, Sampler] = {
    "checkerboard": checkerboard,
    "two_moons": two_moons,
    "spirals": spirals,
    "concentric_rings": concentric_rings,
    "four_circles": four_circles,
    "star": star,
    "eight_star": eight_star,
    "ring": ring,
    "ring_of_gaussians": ring_of_gaussians,
    "grid_of_gaussians": grid_of_gaussians,
    "disjoint_squares": disjoint_squares,
}
"""Every 2D toy by name."""


def sample_toy(name: str, key: jax.Array, n: int) -> jax.Array:
    """Samples ``n`` points of the 2D toy ``name`` (one of ``TOYS_2D``)."""
    if name not in TOYS_2D:
        raise ValueError(f"`name` must be one of {sorted(TOYS_2D)}; got {name!r}.")
    if n <= 0:
        raise ValueError(f"`n` must be > 0; got {n}.")
    return TOYS_2D[name](key, n)


# ---------------------------------------------------------------- conditional toys


def rotated(
    key: jax.Array, n: int, base: str = "checkerboard", degrees: float | None = None
) -> tuple[jax.Array, jax.Array]:
    """A toy rotated by an angle of 0..44 degrees; returns ``(x, c)`` with ``c = angle/45``.

    As in the F4F ``RotatedData``: the rotated data are scaled by ``4/sqrt(32)``. With
    ``degrees`` given, every event uses that angle (samples of one condition).
    """
    k1, k2 = jax.random.split(key)
    if degrees is None:
        deg = jax.random.randint(k1, (n,), 0, 45).astype(jnp.float32)
    else:
        deg = jnp.full((n,), degrees, jnp.float32)
    theta = jnp.deg2rad(deg)
    x = sample_toy(base, k2, n)
    c, s = jnp.cos(theta), jnp.sin(theta)
    xr = jnp.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]], axis=-1)
    return xr * (4.0 / math.sqrt(32.0)), (deg / 45.0)[:, None]


def radial_scale(
    key: jax.Array, n: int, base: str = "four_circles"
) -> tuple[jax.Array, jax.Array]:
    """A toy scaled radially by ``s = 0.5 + 0.5 sqrt(u)``; returns ``(x, c)`` with ``c = s``."""
    k1, k2 = jax.random.split(key)
    s = jnp.sqrt(jax.random.uniform(k1, (n,))) * 0.5 + 0.5
    return s[:, None] * sample_toy(base, k2, n), s[:, None]


# ---------------------------------------------------------------- Gaussian mixtures


def gaussian_mixture(
    key: jax.Array,
    n: int,
    means: jax.typing.ArrayLike,
    stds: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Samples a diagonal Gaussian mixture; ``means``/``stds`` are ``(k, d)`` (or ``(k,)``).

    Returns an array of shape ``(n, d)`` (``(n, 1)`` for 1D components).
    """
    means = jnp.atleast_1d(jnp.asarray(means, jnp.float32))
    means = means[:, None] if means.ndim == 1 else means
    stds = jnp.broadcast_to(jnp.asarray(stds, jnp.float32).reshape(means.shape[0], -1), means.shape)
    k = means.shape[0]
    w = jnp.full((k,), 1.0 / k) if weights is None else jnp.asarray(weights, jnp.float32)
    k1, k2 = jax.random.split(key)
    comp = jax.random.choice(k1, k, (n,), p=w / w.sum())
    return means[comp] + stds[comp] * jax.random.normal(k2, (n, means.shape[1]))


def gaussian_mixture_log_prob(
    x: jax.Array,
    means: jax.typing.ArrayLike,
    stds: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Exact log-density of ``gaussian_mixture`` at ``x`` of shape ``(n, d)``."""
    means = jnp.atleast_1d(jnp.asarray(means, jnp.float32))
    means = means[:, None] if means.ndim == 1 else means
    stds = jnp.broadcast_to(jnp.asarray(stds, jnp.float32).reshape(means.shape[0], -1), means.shape)
    k = means.shape[0]
    w = jnp.full((k,), 1.0 / k) if weights is None else jnp.asarray(weights, jnp.float32)
    z = (x[:, None, :] - means[None]) / stds[None]
    comp = -0.5 * jnp.sum(z**2 + jnp.log(2 * math.pi * stds[None] ** 2), axis=-1)
    return jax.scipy.special.logsumexp(comp + jnp.log(w / w.sum()), axis=-1)
