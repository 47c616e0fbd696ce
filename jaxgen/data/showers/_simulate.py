"""The vectorised SUPA-like shower simulator (arXiv:2202.05012).

All particles of a batch of showers live in one flat, shower-sorted pool. A step draws each
particle's fate (stop, split or pass), writes the read-out points of stopping particles into
padded per-shower point clouds and packs the children into the next pool with an exclusive
cumsum (no sort). Pools are sized per layer from the process's analytic mean and variance
(``pool_capacities``), and the steps are grouped into a few ``lax.scan`` stages (5; one below
10,000 showers), each over a pool of fixed size, so the work per shower (about 300 slots
over the 24 steps of the default configuration, for about 200 particle-steps) follows the
particle count instead of a worst-case per-shower capacity (24 x 128 slots).

Randomness is a counter-based hash: the draws of a particle are
``threefry2x32(shower key, (particle id, 2 * layer + j))``, where the id is the particle's
path in the binary split tree. A shower's result therefore depends only on its key and the
configuration, not on the batch, the pool layout or the capacities; a shower whose pool or
point capacity overflowed is re-simulated with larger capacities and comes out exactly as
an unbounded simulation would (no truncation, no bias).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.extend.random as jrandom
import jax.numpy as jnp
import numpy as np

from jaxgen.data.showers._config import ShowerConfig
from jaxgen.data.showers._config import default_max_points
from jaxgen.data.showers._config import pool_capacities

_ENERGY_WORD = np.uint32(0xFFFFFFFF)  # counter word reserved for the E0 draw
SMALL_BATCH = 10_000  # below this, one scan over all steps (fast compile)
RESIM_BATCH = 64
CPU_CHUNK = 16_384  # measured best showers/s on 2 CPU cores (cache-resident pools)
ACCEL_CHUNK = 262_144  # smallest re-simulation batch: one compiled shape serves most calls


class Showers(NamedTuple):
    """A batch of simulated showers as padded point clouds.

    Attributes:
      points: ``(n, n_layers, max_points, 3)`` float32 read-out points ``(x, y, E)``, with
        E in GeV, in order of stopping; zero beyond ``counts``.
      mask: ``(n, n_layers, max_points)`` bool, True for real points.
      counts: ``(n, n_layers)`` int32 points per layer.
      energy: ``(n,)`` float32 primary energy E0 in GeV.
      escaped: ``(n,)`` float32 energy of particles still active after the last step (not
        read out, as in the reference).
      unread: ``(n,)`` float32 energy of particles that stopped outside the readout layers.
    """

    points: jax.Array
    mask: jax.Array
    counts: jax.Array
    energy: jax.Array
    escaped: jax.Array
    unread: jax.Array

    @property
    def kept(self) -> jax.Array:
        """``(n,)`` bool: no empty calorimeter layer (the reference keeps only these)."""
        return jnp.all(self.counts > 0, axis=-1)

    @property
    def layer_energy(self) -> jax.Array:
        """``(n, n_layers)`` read-out energy per layer in GeV."""
        return jnp.sum(self.points[..., 2], axis=-1)


def _unit(bits: jax.Array) -> jax.Array:
    """uint32 -> float32 uniform in [0, 1) from the top 23 bits."""
    mant = jax.lax.shift_right_logical(bits, jnp.uint32(9)) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mant, jnp.float32) - 1.0


def _materialize(x: jax.Array) -> jax.Array:
    """Identity that XLA computes once into a buffer (an exact float32 reduce_precision).

    Without it, XLA's CPU loop fusion inlines shared, expensive elementwise values (the
    trigonometry) into every consumer and recomputes them per consumer (measured 3x slower).
    """
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23)


def _hash(keys: jax.Array, c0: jax.Array, c1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (the hash behind ``jax.random``) of counters under per-shower keys."""
    c1 = jnp.broadcast_to(jnp.asarray(c1, jnp.uint32), c0.shape)
    return jrandom.threefry2x32_p.bind(keys[:, 0], keys[:, 1], c0, c1)


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
    e2 = energy - e1
    tan1, tan2, c, s = _materialize(
        jnp.stack([jnp.tan(t1), jnp.tan(t2), jnp.cos(phi), jnp.sin(phi)])
    )
    a1 = dz * tan1
    a2 = -dz * tan2
    vx, vy = x - px, y - py
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


class _Raw(NamedTuple):
    points: jax.Array
    counts: jax.Array
    escaped: jax.Array
    unread: jax.Array
    pool_overflow: jax.Array


def _stages(caps: tuple[int, ...], n_stages: int) -> list[tuple[int, int, int]]:
    """Splits steps ``0..len(caps)-2`` into contiguous ``(first, stop, size)`` stages.

    Each stage is one ``lax.scan`` over a pool of fixed ``size`` (the largest pool any of
    its steps reads or writes); the split minimises the total work ``sum(len * size)`` by
    dynamic programming. A few stages keep the work near the per-layer counts while
    compiling only a few scan bodies.
    """
    n = len(caps) - 1
    need = [max(caps[t], caps[t + 1]) for t in range(n)]
    k_max = max(1, min(n_stages, n))
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(k_max + 1)]
    arg = [[0] * (n + 1) for _ in range(k_max + 1)]
    best[0][0] = 0.0
    for k in range(1, k_max + 1):
        for j in range(1, n + 1):
            size = 0
            for i in range(j - 1, -1, -1):
                size = max(size, need[i])
                cost = best[k - 1][i] + (j - i) * size
                if cost < best[k][j]:
                    best[k][j], arg[k][j] = cost, i
    k = min(range(1, k_max + 1), key=lambda kk: best[kk][n])
    bounds, j = [], n
    while k > 0:
        i = arg[k][j]
        bounds.append((i, j, max(need[i:j])))
        j, k = i, k - 1
    return bounds[::-1]


def _simulate_pool(
    keys: jax.Array,
    e0: jax.Array,
    config: ShowerConfig,
    caps: tuple[int, ...],
    max_points: int,
    n_stages: int = 5,
) -> _Raw:
    """Simulates ``B`` showers from key data ``(B, 2)`` uint32 and energies ``(B,)``."""
    b = e0.shape[0]
    n_layers = config.n_layers
    p_stop, p_split = config.probabilities()
    readout = config.readout_index()
    tlo, thi = config.theta_range
    dz = float(config.dz)
    polar, azim = config.incidence
    x0, y0 = config.entry_position
    slope = dz * math.tan(polar)
    n_points = b * n_layers * max_points
    as_f = functools.partial(jax.lax.bitcast_convert_type, new_dtype=jnp.float32)

    def step(carry, xs):
        x, y, px, py, energy, shower, pid, n_active, counts, unread, first_bad, points = carry
        t, ps, psp, r = xs
        m = x.shape[0]
        slot = jnp.arange(m, dtype=jnp.int32)
        active = slot < n_active
        k = keys[shower]
        t2 = (2 * t).astype(jnp.uint32)
        w0, w1 = _hash(k, pid, t2)
        w2, w3 = _hash(k, pid, t2 + 1)
        u, u1, u2, u3 = _materialize(jnp.stack([_unit(w) for w in (w0, w1, w2, w3)]))
        stop = active & (u < ps)
        split = active & (u >= ps) & (u < ps + psp)
        move = active & ~stop & ~split
        # Children: the first continues the parent's slot order, the second follows it.
        theta = tlo + (thi - tlo) * u1
        delta = config.asymmetry * theta * (2.0 * u2 - 1.0)
        phi = (2.0 * math.pi) * u3
        kids = split_kinematics(x, y, px, py, energy, theta, delta, phi, dz, config.orientation)
        x1, y1, e1, x_b, y_b, e_b = _materialize(jnp.stack(kids))
        x_a = jnp.where(split, x1, 2 * x - px)
        y_a = jnp.where(split, y1, 2 * y - py)
        e_a = jnp.where(split, e1, energy)
        n_child = move.astype(jnp.int32) + 2 * split.astype(jnp.int32)
        end = jnp.cumsum(n_child)
        off = end - n_child
        # Showers from the first one whose children do not fit are flagged for re-simulation.
        first_bad = jnp.minimum(first_bad, jnp.min(jnp.where(end > m, shower, b)))
        # Read-out points: rank of each stop within its shower and layer.
        read = stop & (r >= 0)
        unread = unread.at[shower].add(jnp.where(stop & (r < 0), energy, 0.0))
        read_i = read.astype(jnp.int32)
        per_shower = jnp.zeros((b,), jnp.int32).at[shower].add(read_i)
        before = jnp.cumsum(read_i) - read_i
        base = jnp.cumsum(per_shower) - per_shower
        rc = jnp.maximum(r, 0)
        rank = before - base[shower] + counts[shower, rc]
        ok = read & (rank < max_points)
        dest = jnp.where(ok, (shower * n_layers + rc) * max_points + rank, n_points)
        counts = counts.at[:, rc].add(per_shower)
        points = points.at[dest].set(jnp.stack([x, y, energy], axis=-1), mode="drop",
                                     unique_indices=True)
        sh_f = as_f(shower)
        rows_a = jnp.stack([x_a, y_a, x, y, e_a, sh_f, as_f(2 * pid)], axis=-1)
        rows_b = jnp.stack([x_b, y_b, x, y, e_b, sh_f, as_f(2 * pid + 1)], axis=-1)
        idx_a = jnp.where(n_child > 0, off, m + slot)
        idx_b = jnp.where(split, off + 1, m + 2 * slot)
        pool = jnp.zeros((m, 7), jnp.float32).at[jnp.concatenate([idx_a, idx_b])].set(
            jnp.concatenate([rows_a, rows_b]), mode="drop", unique_indices=True
        )
        new = (
            *(pool[:, i] for i in range(5)),
            jax.lax.bitcast_convert_type(pool[:, 5], jnp.int32),
            jax.lax.bitcast_convert_type(pool[:, 6], jnp.uint32),
            jnp.minimum(end[-1], m),
            counts,
            unread,
            first_bad,
            points,
        )
        return new, None

    x = jnp.full((b,), x0, jnp.float32)
    y = jnp.full((b,), y0, jnp.float32)
    carry = (
        x,
        y,
        x - jnp.float32(slope * math.cos(azim)),
        y - jnp.float32(slope * math.sin(azim)),
        e0.astype(jnp.float32),
        jnp.arange(b, dtype=jnp.int32),
        jnp.zeros((b,), jnp.uint32),
        jnp.int32(b),
        jnp.zeros((b, n_layers), jnp.int32),
        jnp.zeros((b,), jnp.float32),
        jnp.int32(b),
        jnp.zeros((n_points, 3), jnp.float32),
    )
    xs_all = (
        jnp.arange(config.n_steps, dtype=jnp.int32),
        jnp.asarray(p_stop, jnp.float32),
        jnp.asarray(p_split, jnp.float32),
        jnp.asarray(readout, jnp.int32),
    )
    for first, stop_t, size in _stages(caps, n_stages):
        carry = _resize(carry, size, b)
        xs = tuple(a[first:stop_t] for a in xs_all)
        carry, _ = jax.lax.scan(step, carry, xs)
    x, y, px, py, energy, shower, pid, n_active, counts, unread, first_bad, points = _resize(
        carry, caps[-1], b
    )
    active = jnp.arange(caps[-1], dtype=jnp.int32) < n_active
    escaped = jnp.zeros((b,), jnp.float32).at[shower].add(jnp.where(active, energy, 0.0))
    points = points.reshape(b, n_layers, max_points, 3)
    overflow = jnp.arange(b) >= first_bad
    return _Raw(points, counts, escaped, unread, overflow)


def _resize(carry: tuple, size: int, b: int) -> tuple:
    """Pads or truncates the pool to ``size`` slots; truncated showers are flagged."""
    *pool, n_active, counts, unread, first_bad, points = carry
    m = pool[0].shape[0]
    if size > m:
        pool = [jnp.pad(a, (0, size - m)) for a in pool]
    elif size < m:
        lost = n_active > size
        first_bad = jnp.where(lost, jnp.minimum(first_bad, pool[5][size]), first_bad)
        n_active = jnp.minimum(n_active, size)
        pool = [a[:size] for a in pool]
    return (*pool, n_active, counts, unread, first_bad, points)


def _shower_keys(key: jax.Array, first: int | jax.Array, n: int) -> jax.Array:
    idx = jnp.asarray(first, jnp.uint32) + jnp.arange(n, dtype=jnp.uint32)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(key, i)))(idx)
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)


def _draw_energy(keys: jax.Array, config: ShowerConfig) -> jax.Array:
    n = keys.shape[0]
    if config.energy_spectrum == "fixed":
        return jnp.full((n,), config.energy, jnp.float32)
    word = jnp.full((n,), _ENERGY_WORD, jnp.uint32)
    u = _unit(_hash(keys, word, _ENERGY_WORD)[0])
    lo, hi = config.energy_range
    if config.energy_spectrum == "uniform":
        return (lo + (hi - lo) * u).astype(jnp.float32)
    return jnp.exp(math.log(lo) + math.log(hi / lo) * u).astype(jnp.float32)


def _n_stages(n: int) -> int:
    # Small batches: one scan body compiles fastest and the padding work is negligible.
    return 1 if n < SMALL_BATCH else 5


@functools.partial(jax.jit, static_argnames=("n", "config", "caps", "max_points"))
def _run(key, first, energies, *, n, config, caps, max_points):
    keys = _shower_keys(key, first, n)
    e0 = _draw_energy(keys, config) if energies is None else energies
    raw = _simulate_pool(keys, e0, config, caps, max_points, _n_stages(n))
    return raw, e0


@functools.partial(jax.jit, static_argnames=("config", "caps", "max_points"))
def _rerun(keys, e0, *, config, caps, max_points):
    return _simulate_pool(keys, e0, config, caps, max_points, _n_stages(e0.shape[0]))


def _scaled(caps: tuple[int, ...], scale: float, n: int) -> tuple[int, ...]:
    if scale == 1.0:
        return caps
    return tuple(max(1, min(n * 2**t, int(math.ceil(c * scale / 8) * 8)))
                 for t, c in enumerate(caps))


def simulate(
    key: jax.Array,
    n: int,
    config: ShowerConfig | None = None,
    *,
    energies: jax.typing.ArrayLike | None = None,
    first_index: int = 0,
    max_points: int | None = None,
    margin: float = 6.0,
    pool_scale: float = 1.0,
    chunk_size: int | None = None,
) -> Showers:
    """Simulates ``n`` SUPA showers (arXiv:2202.05012) as padded point clouds.

    Shower ``i`` uses the key ``fold_in(key, first_index + i)``, so a stream generated in
    chunks (``first_index`` = showers already generated) equals one generated at once.
    Showers whose particle pool or point capacity overflowed are detected and re-simulated
    with doubled capacities until none overflows; the output's ``max_points`` grows if a
    shower needs it. Nothing is ever truncated.

    Args:
      key: a PRNG key (typed or raw uint32[2]).
      n: number of showers (>= 1).
      config: the process rules; default: the reference configuration.
      energies: optional ``(n,)`` primary energies in GeV, overriding the config's spectrum.
      first_index: index of the first shower in the stream.
      max_points: point capacity per layer (default from the process statistics).
      margin: pool sizes are the batch mean plus ``margin`` standard deviations.
      pool_scale: factor on the pool sizes (below 1 forces overflows, for testing).
      chunk_size: showers per compiled call; larger ``n`` is simulated chunk by chunk
        (default 16384 on CPU, where larger batches run slower, 262144 on accelerators).

    Returns:
      ``Showers`` with arrays of leading dimension ``n`` (as numpy-backed jax arrays).

    Raises:
      ValueError: for a bad ``key``, ``config``, ``n``, ``energies``, ``first_index``,
        ``max_points``, ``margin``, ``pool_scale`` or ``chunk_size``.

    Example:
      >>> import jax
      >>> s = simulate(jax.random.key(0), 100)
      >>> s.points.shape[:2], s.counts.shape
      ((100, 3), (100, 3))
    """
    config = ShowerConfig() if config is None else config
    typed = hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = hasattr(key, "dtype") and key.dtype == jnp.uint32 and tuple(key.shape) == (2,)
    if not (typed and key.shape == ()) and not raw:
        raise ValueError(
            f"`key` must be a single PRNG key (jax.random.key) or a uint32[2] raw key; got "
            f"{getattr(key, 'dtype', type(key).__name__)} of shape {getattr(key, 'shape', ())}."
        )
    if not isinstance(config, ShowerConfig):
        raise ValueError(f"`config` must be a ShowerConfig; got {type(config).__name__}.")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"`n` must be an int >= 1; got {n!r}.")
    n = int(n)
    if isinstance(first_index, bool) or not isinstance(first_index, int) or first_index < 0:
        raise ValueError(f"`first_index` must be an int >= 0; got {first_index!r}.")
    if first_index + n > 2**32:
        raise ValueError(f"`first_index + n` must be <= 2**32; got {first_index + n}.")
    if max_points is None:
        max_points = default_max_points(config)
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"`max_points` must be an int >= 1; got {max_points!r}.")
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"`margin` must be a finite number >= 0; got {margin!r}.")
    if not (isinstance(pool_scale, int | float) and math.isfinite(pool_scale)
            and pool_scale > 0):
        raise ValueError(f"`pool_scale` must be a finite number > 0; got {pool_scale!r}.")
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be an int >= 1; got {chunk_size!r}.")
    if energies is not None:
        e = np.asarray(energies)
        if e.shape != (n,):
            raise ValueError(f"`energies` must have shape ({n},); got {e.shape}.")
        if not np.all(np.isfinite(e)) or not np.all(e > 0):
            raise ValueError("`energies` must be finite and > 0.")
        energies = jnp.asarray(e, jnp.float32)
    if chunk_size is None:
        chunk_size = CPU_CHUNK if jax.default_backend() == "cpu" else ACCEL_CHUNK
    if n <= chunk_size:
        return _simulate_chunk(key, n, config, energies, first_index, max_points, margin,
                               pool_scale)
    # Fixed-size chunks (one compiled shape, bounded working memory); the last one is
    # simulated whole and cut, which equals a shorter chunk since showers are independent.
    parts = []
    for start in range(0, n, chunk_size):
        size = min(chunk_size, n - start)
        e = None
        if energies is not None:
            e = jnp.pad(energies[start : start + size], (0, chunk_size - size),
                        constant_values=1.0)
        part = _simulate_chunk(key, chunk_size, config, e, first_index + start, max_points,
                               margin, pool_scale)
        parts.append(part if size == chunk_size else Showers(*(v[:size] for v in part)))
    width = max(p.points.shape[2] for p in parts)
    parts = [_widen(p, width) for p in parts]
    return Showers(*(jnp.concatenate(vs) for vs in zip(*parts, strict=True)))


def _widen(s: Showers, width: int) -> Showers:
    extra = width - s.points.shape[2]
    if extra <= 0:
        return s
    points = jnp.pad(s.points, ((0, 0), (0, 0), (0, extra), (0, 0)))
    return s._replace(points=points, mask=jnp.pad(s.mask, ((0, 0), (0, 0), (0, extra))))


def _simulate_chunk(key, n, config, energies, first_index, max_points, margin, pool_scale):
    caps = _scaled(pool_capacities(config, n, margin), pool_scale, n)
    raw, e0 = _run(key, first_index, energies, n=n, config=config, caps=caps,
                   max_points=max_points)
    bad = np.asarray(raw.pool_overflow) | (np.asarray(raw.counts).max(-1) > max_points)
    if not bad.any():
        return _finish(raw, e0)
    # Rare: re-simulate the flagged showers with larger capacities (same keys, same result
    # as unbounded capacities), then merge them in.
    keys = _shower_keys(key, first_index, n)
    scale, cap_points = 2.0 * pool_scale, max_points
    while bad.any():
        idx = np.flatnonzero(bad)
        need = int(np.asarray(raw.counts)[idx].max())
        if need > cap_points:  # doubling keeps the set of compiled shapes small
            cap_points = max(2 * cap_points, int(math.ceil(need / 32.0) * 32))
        size = max(RESIM_BATCH, 1 << int(math.ceil(math.log2(len(idx)))))
        caps = _scaled(pool_capacities(config, size, margin), scale, size)
        sel = np.pad(idx, (0, size - len(idx)))  # padding slots re-run shower 0
        sub = _rerun(keys[sel], e0[sel], config=config, caps=caps, max_points=cap_points)
        sub_bad = np.asarray(sub.pool_overflow)[: len(idx)]
        sub_bad = sub_bad | (np.asarray(sub.counts).max(-1)[: len(idx)] > cap_points)
        if cap_points > raw.points.shape[2]:
            extra = cap_points - raw.points.shape[2]
            raw = raw._replace(points=jnp.pad(raw.points, ((0, 0), (0, 0), (0, extra), (0, 0))))
        raw = _Raw(*(r.at[idx].set(v[: len(idx)]) for r, v in zip(raw, sub, strict=True)))
        bad = np.zeros_like(bad)
        bad[idx] = sub_bad
        scale *= 2.0
    return _finish(raw, e0)


def _finish(raw: _Raw, e0: jax.Array) -> Showers:
    p = raw.points.shape[2]
    mask = jnp.arange(p) < raw.counts[..., None]
    return Showers(raw.points, mask, raw.counts, e0, raw.escaped, raw.unread)
