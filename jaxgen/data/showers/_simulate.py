"""The vectorised SUPA-like shower simulator (arXiv:2202.05012).

All particles of a batch of showers live in one flat, shower-sorted pool. A step draws each
particle's fate (stop, split or pass), writes the read-out points of stopping particles into
padded per-shower point clouds and gathers the children into the next pool: the parent of
each new slot comes from one scatter of the parents' exclusive prefix sums (no sort).
Pools are sized per layer from the process's analytic mean and variance
(``pool_capacities``), and the steps are grouped into a few ``lax.scan`` stages (8; one
below 10,000 showers), each over a pool of fixed size, so the work per shower (about 260
slots over the 24 steps of the default configuration, for about 200 particle-steps) follows
the particle count instead of a worst-case per-shower capacity (24 x 128 slots). Large
batches run as equal chunks (16,384 showers on CPU) in a ``lax.scan`` inside one compiled
call, writing into one output buffer.

CPU throughput notes (XLA:CPU, measured): the hash is written with plain uint32 ops (3.5x
faster than the threefry primitive), sines, cosines and tangents are branch-free
polynomials (XLA's take 10-17 ns each), prefix sums are blocked triangular products (an
associative scan compiles 8x slower, ``cumsum`` runs 2x slower), fields are scattered as
scalars (row scatters cost 30 ns per row) and values with several consumers are
materialised through a ``lax.cond`` (XLA's loop fusion otherwise recomputes them in each
consumer; stacking them into one array stops vectorisation). For large batches the
fresh output buffer's page faults are a large share of the time: with glibc,
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (transparent huge pages for malloc) removes most.

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
import jax.numpy as jnp
import numpy as np

from jaxgen.data.showers._config import ShowerConfig
from jaxgen.data.showers._config import default_max_points
from jaxgen.data.showers._config import pool_capacities

_ENERGY_WORD = np.uint32(0xFFFFFFFF)  # counter word reserved for the E0 draw
SMALL_BATCH = 10_000  # below this, one scan over all steps (fast compile)
N_STAGES = 8  # scans over pools of fixed size for larger batches
RESIM_BATCH = 64
CPU_CHUNK = 16_384  # showers per chunk on CPU (pools of at most ~450k slots)
ACCEL_CHUNK = 262_144  # smallest re-simulation batch: one compiled shape serves most calls
_MAX_FLAT = 2**31 - 8  # flat point indices are int32


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


def _materializer(flag: jax.Array):
    """An identity on arrays that makes XLA compute them once, into buffers.

    XLA's CPU loop fusion inlines shared values (the hash, the trigonometry) into every
    consumer and recomputes them there; reduce_precision and optimisation barriers do not
    stop it on CPU, but values that leave a ``lax.cond`` are materialised. ``flag`` must be
    a traced ``True`` (so that XLA cannot drop the conditional).
    """

    def keep(*xs: jax.Array) -> tuple[jax.Array, ...]:
        return jax.lax.cond(flag, lambda: xs, lambda: tuple(jnp.zeros_like(x) for x in xs))

    return keep


def _rotl(x: jax.Array, d: int) -> jax.Array:
    return jax.lax.shift_left(x, jnp.uint32(d)) | jax.lax.shift_right_logical(
        x, jnp.uint32(32 - d))


def _threefry2x32(k0, k1, x0, x1) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds, bit-identical to ``jax.random``'s primitive.

    Written with plain uint32 ops so that XLA fuses and vectorises it: on CPU this runs
    about 3.5x faster than the primitive's lowering (measured 2.8 vs 9.7 ns per draw).
    """
    rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in rotations[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _hash(keys: jax.Array, c0: jax.Array, c1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (the hash behind ``jax.random``) of counters under per-shower keys."""
    c1 = jnp.broadcast_to(jnp.asarray(c1, jnp.uint32), c0.shape)
    return _threefry2x32(keys[:, 0], keys[:, 1], c0, c1)


_SCAN_BLOCK = 16


def _cumsum(x: jax.Array) -> jax.Array:
    """Inclusive cumulative sum of small non-negative int32 counts along the last axis.

    Two levels of blocks of 16: prefix sums inside a block are a product with a triangular
    matrix of ones (exact in float32: block sums stay below 2**24), the blocks' offsets an
    int32 ``cumsum`` over 1/256 of the values. XLA:CPU's ``cumsum`` alone (a reduce-window)
    is 2x slower, and an associative scan compiles 8x slower (one level per factor 2).
    """
    k = _SCAN_BLOCK
    *lead, m = x.shape
    pad = (-m) % (k * k)
    y = jnp.pad(x, [(0, 0)] * len(lead) + [(0, pad)]).reshape(*lead, -1, k, k)
    tri = jnp.triu(jnp.ones((k, k), jnp.float32))
    hi = jax.lax.Precision.HIGHEST  # no reduced-precision matmuls on accelerators
    y = jnp.matmul(y.astype(jnp.float32), tri, precision=hi)
    rows = y[..., -1]
    rows_incl = jnp.matmul(rows, tri, precision=hi)
    y = (y + (rows_incl - rows)[..., None]).astype(jnp.int32)
    blocks = rows_incl[..., -1].astype(jnp.int32)
    y = y + (jnp.cumsum(blocks, axis=-1) - blocks)[..., None, None]
    return y.reshape(*lead, -1)[..., :m]


def _sincos_turns(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sin, cos)`` of the angle ``2 pi u``, float32-accurate, branch-free.

    XLA:CPU's sine and cosine take 10-17 ns per value for arguments spread over a turn;
    this reduction to the nearest quarter turn (exact: ``u - q / 4``) and Taylor
    polynomials on [-pi/4, pi/4] (truncation below 2e-9) vectorise, at about 1 ns.
    """
    q = jnp.round(4.0 * u)
    a = (2.0 * math.pi) * (u - 0.25 * q)
    a2 = a * a
    sin = a * (1.0 + a2 * (-1.0 / 6 + a2 * (1.0 / 120 + a2 * (-1.0 / 5040 + a2 / 362880))))
    cos = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24 + a2 * (-1.0 / 720 + a2 * (1.0 / 40320
                                                                    - a2 / 3628800))))
    quadrant = q.astype(jnp.int32) & 3
    sin_q = jax.lax.select_n(quadrant, sin, cos, -sin, -cos)
    cos_q = jax.lax.select_n(quadrant, cos, -sin, -cos, sin)
    return sin_q, cos_q


def _tan(t: jax.Array) -> jax.Array:
    """``tan(t)`` for ``|t| < pi/2`` from ``_sincos_turns`` (a few ulp)."""
    sin, cos = _sincos_turns(t * (0.5 / math.pi))
    return sin / cos


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
    return _daughters(x, y, px, py, energy, e1, jnp.tan(t1), jnp.tan(t2), jnp.cos(phi),
                      jnp.sin(phi), dz, orientation)


def _daughters(x, y, px, py, energy, e1, tan1, tan2, c, s, dz, orientation):
    """``split_kinematics`` from the daughters' tangents and the azimuth's cos and sin."""
    e2 = energy - e1
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
    points: jax.Array,
    offset: jax.Array | int,
    config: ShowerConfig,
    caps: tuple[int, ...],
    max_points: int,
    n_stages: int = 5,
) -> tuple[_Raw, jax.Array]:
    """Simulates ``B`` showers from key data ``(B, 2)`` uint32 and energies ``(B,)``.

    The read-out points of shower ``i`` are written into the flat output buffer ``points``
    at shower ``offset + i``; returns the other results and the updated buffer.
    """
    b = e0.shape[0]
    n_layers = config.n_layers
    p_stop, p_split = config.probabilities()
    readout = config.readout_index()
    tlo, thi = config.theta_range
    dz = float(config.dz)
    polar, azim = config.incidence
    x0, y0 = config.entry_position
    slope = dz * math.tan(polar)
    row_points = n_layers * max_points * 3
    flat_points = points.shape[0]
    any_unread = bool(np.any((p_stop > 0) & (readout < 0)))  # stops outside the readout
    base_dest = jnp.asarray(offset, jnp.int32) * row_points

    def step(carry, xs):
        (x, y, px, py, energy, shower, pid, k0, k1, n_active, counts, unread, first_bad,
         points) = carry
        t, ps, psp, r = xs
        m = x.shape[0]
        slot = jnp.arange(m, dtype=jnp.int32)
        active = slot < n_active
        keep = _materializer(n_active >= 0)
        # Words 0, 1 of the hashes of (pid, 2t) and (pid, 2t + 1), as two (2, m) arrays
        # (a stack of the four words would not vectorise: 10x slower).
        row = jnp.arange(2, dtype=jnp.uint32)[:, None]
        h0, h1 = keep(*map(_unit, _threefry2x32(k0, k1, pid, (2 * t).astype(jnp.uint32) + row)))
        u, u1, u2, u3 = h0[0], h1[0], h0[1], h1[1]
        stop = active & (u < ps)
        split = active & (u >= ps) & (u < ps + psp)
        move = active & ~stop & ~split
        read = stop & (r >= 0)
        # One scan for both prefix sums: children (slot offsets) and read-out points.
        n_child = move.astype(jnp.int32) + 2 * split.astype(jnp.int32)
        read_i = read.astype(jnp.int32)
        end, before = _cumsum(jnp.stack([n_child, read_i]))
        off = end - n_child
        before = before - read_i
        # Showers from the first one whose children do not fit are flagged for re-simulation.
        lost = (end > m) & (n_child > 0)
        first_bad = jnp.minimum(first_bad, jnp.min(jnp.where(lost, shower, b)))
        # Read-out points: rank of each stop within its shower and layer.
        if any_unread:
            unread = unread.at[shower].add(jnp.where(stop & (r < 0), energy, 0.0))

        def write_points(counts, points):
            per_shower = jnp.zeros((b,), jnp.int32).at[shower].add(read_i)
            base = _cumsum(per_shower) - per_shower
            rank = before - base[shower] + counts[shower, rc]
            ok = read & (rank < max_points)
            dest = jnp.where(ok, base_dest + ((shower * n_layers + rc) * max_points + rank) * 3,
                             flat_points)
            for j, v in enumerate((x, y, energy)):  # scalar scatters: 30x faster than rows
                points = points.at[dest + j].set(v, mode="drop", unique_indices=True)
            return counts.at[:, rc].add(per_shower), points

        rc = jnp.maximum(r, 0)
        counts, points = jax.lax.cond((r >= 0) & (ps > 0), write_points,
                                      lambda c, p: (c, p), counts, points)
        # Daughters of splits (zero-cost draws for the others, which ignore them).
        theta = tlo + (thi - tlo) * u1
        delta = config.asymmetry * theta * (2.0 * u2 - 1.0)
        t1 = 0.5 * theta - delta
        t2 = 0.5 * theta + delta
        s, c = _sincos_turns(u3)
        tan1, tan2, c, s = keep(_tan(t1), _tan(t2), c, s)
        kids = _daughters(x, y, px, py, energy, energy * (t2 / theta), tan1, tan2, c, s, dz,
                          config.orientation)
        x1, y1, e1, x_b, y_b, e_b = keep(*kids)
        # Children, gathered: the first continues the parent's slot order, the second
        # follows it. src[j] is the parent of slot j: one scatter marks each first child's
        # slot with its parent; the unmarked slot after a marked one is a second child
        # (no sort or search; a second scatter for the second children measured 3% slower).
        drop = jnp.int32(m)
        mark = jnp.full((m,), -1, jnp.int32).at[jnp.where(n_child > 0, off, drop)].set(
            slot, mode="drop", unique_indices=True)
        second = mark < 0
        src = jnp.maximum(jnp.where(second, jnp.roll(mark, 1), mark), 0)

        def pick(first, other):
            return jnp.where(second, jnp.take(other, src), jnp.take(first, src))

        new = (
            pick(jnp.where(split, x1, 2 * x - px), x_b),
            pick(jnp.where(split, y1, 2 * y - py), y_b),
            jnp.take(x, src),
            jnp.take(y, src),
            pick(jnp.where(split, e1, energy), e_b),
            jnp.take(shower, src),
            2 * jnp.take(pid, src) + second.astype(jnp.uint32),
            jnp.take(k0, src),
            jnp.take(k1, src),
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
        keys[:, 0],
        keys[:, 1],
        jnp.int32(b),
        jnp.zeros((b, n_layers), jnp.int32),
        jnp.zeros((b,), jnp.float32),
        jnp.int32(b),
        points,
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
    x, y, px, py, energy, shower, _, _, _, n_active, counts, unread, first_bad, points = (
        _resize(carry, caps[-1], b))
    active = jnp.arange(caps[-1], dtype=jnp.int32) < n_active
    escaped = jnp.zeros((b,), jnp.float32).at[shower].add(jnp.where(active, energy, 0.0))
    overflow = jnp.arange(b) >= first_bad
    return _Raw(None, counts, escaped, unread, overflow), points


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
    # Large ones: 8 stages do 263 slot-steps per shower (default configuration) against
    # 304 with 5 and 659 with 1 (the exact per-step sizes would give 226), at about one
    # scan body's compile time per stage.
    return 1 if n < SMALL_BATCH else N_STAGES


@functools.partial(jax.jit, static_argnames=("n", "config", "caps", "max_points", "chunk"))
def _run(key, first, energies, *, n, config, caps, max_points, chunk=None):
    """``n`` showers from ``first``, in chunks of ``chunk`` showers (pools ``caps``).

    The chunks run one after the other in a ``lax.scan`` (a small, cache-friendly working
    set) and write their points into one output buffer, allocated once and never copied;
    the last chunk's showers beyond ``n`` are simulated but not written out.
    ``energies``, if given, has ``ceil(n / chunk) * chunk`` entries.
    """
    chunk = n if chunk is None else chunk
    n_chunks = -(-n // chunk)
    row_points = config.n_layers * max_points * 3

    def one(points, c):
        keys = _shower_keys(key, first + c * chunk, chunk)
        if energies is None:
            e0 = _draw_energy(keys, config)
        else:
            e0 = jax.lax.dynamic_slice_in_dim(energies, c * chunk, chunk)
        raw, points = _simulate_pool(keys, e0, points, c * chunk, config, caps, max_points,
                                     _n_stages(n))
        return points, (raw._replace(points=None), e0)

    points = jnp.zeros((n * row_points,), jnp.float32)
    points, (raw, e0) = jax.lax.scan(one, points, jnp.arange(n_chunks, dtype=jnp.int32))
    raw = jax.tree.map(lambda v: v.reshape(n_chunks * chunk, *v.shape[2:])[:n], raw)
    points = points.reshape(n, config.n_layers, max_points, 3)
    return raw._replace(points=points), e0.reshape(n_chunks * chunk)[:n]


@functools.partial(jax.jit, static_argnames=("config", "caps", "max_points"))
def _rerun(keys, e0, *, config, caps, max_points):
    b = e0.shape[0]
    points = jnp.zeros((b * config.n_layers * max_points * 3,), jnp.float32)
    raw, points = _simulate_pool(keys, e0, points, 0, config, caps, max_points,
                                 _n_stages(b))
    return raw._replace(points=points.reshape(b, config.n_layers, max_points, 3))


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
      chunk_size: showers per compiled call; larger ``n`` is simulated call by call and
        concatenated (default: one call, up to about 900,000 showers at 256 points).
        Inside a call, showers run in chunks of 16384 on CPU (262144 on accelerators)
        that write into one output buffer.

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
    scan_chunk = CPU_CHUNK if jax.default_backend() == "cpu" else ACCEL_CHUNK
    # One compiled call simulates at most `limit` showers (flat int32 point indices, also
    # of the last chunk's padding showers: about 900,000 at the default 256 points), or
    # `chunk_size` if given.
    cap = _MAX_FLAT // (config.n_layers * max_points * 3)
    limit = max(1, cap - min(scan_chunk, cap // 2))
    if chunk_size is None:
        per_call = min(n, limit)
    else:
        per_call = min(n, chunk_size, limit)
    parts = []
    for start in range(0, n, per_call):
        size = min(per_call, n - start)
        # Requested chunks all have one size (one compiled shape); the last one is
        # simulated whole and cut, which equals a shorter chunk (showers are independent).
        sim = per_call if chunk_size is not None else size
        e = None
        if energies is not None:
            e = jnp.pad(energies[start : start + size], (0, sim - size), constant_values=1.0)
        part = _simulate_part(key, sim, min(scan_chunk, sim), config, e, first_index + start,
                              max_points, margin, pool_scale)
        parts.append(part if size == sim else Showers(*(v[:size] for v in part)))
    if len(parts) == 1:
        return parts[0]
    width = max(p.points.shape[2] for p in parts)
    parts = [_widen(p, width) for p in parts]
    return Showers(*(jnp.concatenate(vs) for vs in zip(*parts, strict=True)))


def _widen(s: Showers, width: int) -> Showers:
    extra = width - s.points.shape[2]
    if extra <= 0:
        return s
    points = jnp.pad(s.points, ((0, 0), (0, 0), (0, extra), (0, 0)))
    return s._replace(points=points, mask=jnp.pad(s.mask, ((0, 0), (0, 0), (0, extra))))


@functools.partial(jax.jit, donate_argnums=0)
def _merge(raw: _Raw, idx: jax.Array, sub: _Raw) -> _Raw:
    """``raw`` with rows ``idx`` replaced by ``sub`` (in place; ``idx == n`` is dropped)."""
    return _Raw(*(r.at[idx].set(v, mode="drop") for r, v in zip(raw, sub, strict=True)))


def _simulate_part(key, n, chunk, config, energies, first_index, max_points, margin,
                   pool_scale):
    # Chunks of equal size inside the call (bounded working memory); the last one is
    # simulated whole and its extra showers are not written out.
    if chunk < n:
        chunk = min(chunk, -(-n // -(-n // chunk) // 256) * 256)
    total = -(-n // chunk) * chunk
    if energies is not None and total > n:
        energies = jnp.pad(energies, (0, total - n), constant_values=1.0)
    caps = _scaled(pool_capacities(config, chunk, margin), pool_scale, chunk)
    extra = {"chunk": chunk} if chunk < n else {}  # (jit caches on the keywords passed)
    raw, e0 = _run(key, first_index, energies, n=n, config=config, caps=caps,
                   max_points=max_points, **extra)
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
        dest = np.pad(idx, (0, size - len(idx)), constant_values=n)  # padding: dropped
        raw = _merge(raw, jnp.asarray(dest, jnp.int32), sub)
        bad = np.zeros_like(bad)
        bad[idx] = sub_bad
        scale *= 2.0
    return _finish(raw, e0)


def _finish(raw: _Raw, e0: jax.Array) -> Showers:
    p = raw.points.shape[2]
    mask = jnp.arange(p) < raw.counts[..., None]
    return Showers(raw.points, mask, raw.counts, e0, raw.escaped, raw.unread)
