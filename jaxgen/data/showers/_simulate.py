"""The vectorised SUPA-like shower simulator (arXiv:2202.05012).

The simulation runs over the generations of each shower's split tree, not over layers: a
particle's whole path until it stops or splits is drawn at once (``_event``: one uniform,
compared with the survival probabilities of the layers ahead, gives the event layer and
whether it is a stop or a split, with exactly the per-layer probabilities of the
step-by-step process), so a particle is handled once instead of once per layer it passes.
All particles of a generation of a batch of showers live in one flat, shower-sorted pool.
One scatter per generation sorts them into the splits with children and the ends (stops
by readout layer, escapes, unread stops); the ends are read out into padded per-shower
point clouds and the splits' daughters form the next generation. Pools are sized per
generation from the process's analytic mean and variance (``pool_capacities``): about 148
slots per shower for the 143 particles (and 72 ends) of the default configuration, where a
layer-by-layer pool processes about 200 particle-steps. The generations run as 8 stages
(a ``lax.scan`` each, or plain code for a single generation with its own sizes) above
10,000 showers, and as one ``lax.while_loop`` that stops at the last non-empty generation
below. Large batches run as equal chunks (16,384 showers on CPU) in a ``lax.scan`` inside
one compiled call, writing into one output buffer.

CPU throughput notes (XLA:CPU, measured): the hash is written with plain uint32 ops (3.5x
faster than the threefry primitive), sines, cosines and tangents are branch-free
polynomials (XLA's take 10-17 ns each), prefix sums are blocked triangular products (an
associative scan compiles 8x slower, ``cumsum`` runs 2x slower), fields are scattered as
scalars (row scatters cost 30 ns per row), scatters run over the compacted lists only
(about 4 ns per element, 4x a gather) and values with several consumers are materialised
through a ``lax.cond`` (XLA's loop fusion otherwise recomputes them in each consumer;
stacking them into one array stops vectorisation). For large batches the fresh output
buffer's page faults are a large share of the time (about 20 %): with glibc,
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (transparent huge pages for malloc) removes most.

Randomness is a counter-based hash: the draws of a particle are
``threefry2x32(shower key, (particle id, j))``, j = 0 (event, opening angle) and 1
(asymmetry, azimuth; splits only), where the id is the particle's path in the binary split
tree, with a leading 1. A shower's result therefore depends only on its key and the
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

from jaxgen.data.showers._config import PoolCapacities
from jaxgen.data.showers._config import ShowerConfig
from jaxgen.data.showers._config import default_max_points
from jaxgen.data.showers._config import pool_capacities

_ENERGY_WORD = np.uint32(0xFFFFFFFF)  # counter word reserved for the E0 draw
SMALL_BATCH = 10_000  # below this, one loop over generations (fast compile)
N_STAGES = 8  # code blocks over the generations of larger batches
RESIM_BATCH = 64
CPU_CHUNK = 16_384  # showers per chunk on CPU (pools of at most ~450k slots)
ACCEL_CHUNK = 262_144  # smallest re-simulation batch: one compiled shape serves most calls
_MAX_FLAT = 2**31 - 8  # flat point indices are int32


class Showers(NamedTuple):
    """A batch of simulated showers as padded point clouds.

    Attributes:
      points: ``(n, n_layers, max_points, 3)`` float32 read-out points ``(x, y, E)``, with
        E in GeV, by generation of the split tree (the order carries no physics); zero
        beyond ``counts``.
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


class _Raw(NamedTuple):
    points: jax.Array
    counts: jax.Array
    escaped: jax.Array
    unread: jax.Array
    pool_overflow: jax.Array


class _Pool(NamedTuple):
    """The particles of one generation, shower-sorted; the first ``n`` slots are real."""

    x: jax.Array  # (m,) position at the birth layer
    y: jax.Array
    dx: jax.Array  # (m,) displacement per layer (direction, scaled to dz)
    dy: jax.Array
    energy: jax.Array
    tag: jax.Array  # (m,) int32: shower << _TAG_BITS | birth layer
    pid: jax.Array  # (m,) uint32: path in the split tree, with a leading 1
    k0: jax.Array  # (m,) uint32: the shower's key
    k1: jax.Array
    n: jax.Array  # () int32


class _Tally(NamedTuple):
    """Per-shower results, accumulated over the generations."""

    counts: jax.Array  # (b, n_layers) int32
    escaped: jax.Array  # (b,) float32
    unread: jax.Array  # (b,) float32
    first_bad: jax.Array  # () int32: showers from this one on overflowed a pool
    points: jax.Array  # flat output buffer


_TAG_BITS = 5  # birth layers < MAX_STEPS = 32


def _event(pool: _Pool, config: ShowerConfig, first_layer: int, keep):
    """Each particle's fate, drawn at once: ``(layer, split, u_theta)``.

    With ``v = 1 - u`` uniform in (0, 1] and ``S_k`` the probability of passing the layers
    from its birth to k, a particle passes layer k iff ``S_k >= v`` and, at its event
    layer e, splits iff ``S_{e-1} (1 - p_stop_e) >= v``: every layer's stop, split and
    pass probabilities are those of the step-by-step process. ``layer == n_steps``: it
    passed all layers.
    """
    p_stop, p_split = config.probabilities()
    w0, w1 = _threefry2x32(pool.k0, pool.k1, pool.pid, jnp.zeros_like(pool.pid))
    v, u_theta = keep(1.0 - _unit(w0), _unit(w1))
    born = pool.tag & ((1 << _TAG_BITS) - 1)
    survive = jnp.ones_like(v)
    layer = jnp.full(v.shape, first_layer, jnp.int32)
    upto_split = layer
    for k in range(first_layer, config.n_steps):
        on = born <= k
        no_stop = survive * jnp.where(on, np.float32(1.0 - p_stop[k]), np.float32(1.0))
        survive = survive * jnp.where(on, np.float32(1.0 - p_stop[k] - p_split[k]),
                                      np.float32(1.0))
        layer = layer + (survive >= v).astype(jnp.int32)
        upto_split = upto_split + (no_stop >= v).astype(jnp.int32)
    layer, split = keep(layer, upto_split > layer)
    return layer, split, u_theta


def _generation(pool: _Pool, tally: _Tally, *, ms: int, me: int, first_layer: int, b: int,
                base_dest: jax.Array, config: ShowerConfig, max_points: int):
    """One generation of the split tree: every particle passes, then stops or splits.

    One scatter sorts the particles into two lists, each in pool order (so shower-sorted):
    the splits with children (``ms`` slots) and the ends (``me`` slots: the stops of each
    readout layer, then the escapes, then the stops outside the readout). The ends are
    tallied and read out; the children of the splits form the next generation's pool of
    ``2 * ms`` slots, both children of a split side by side.
    """
    n_steps, n_layers = config.n_steps, config.n_layers
    m = pool.x.shape[0]
    keep = _materializer(pool.n >= 0)
    slot = jnp.arange(m, dtype=jnp.int32)
    active = slot < pool.n
    layer, split, u_theta = _event(pool, config, first_layer, keep)
    kids = active & split & (layer < n_steps - 1)
    # Kinds of ends: 0..n_layers-1 read out; n_layers escaped (still active after the last
    # layer, or a split at the last layer: as in the reference, its daughters are never
    # read out); n_layers + 1 stopped outside the readout.
    kind = jnp.full((m,), n_layers + 1, jnp.int32)
    for k, (lo, hi) in enumerate(config.readout_layers):
        kind = jnp.where((layer >= lo) & (layer <= hi), k, kind)
    kind = jnp.where((layer == n_steps) | split, n_layers, kind)
    n_kinds = n_layers + 2 if _any_unread(config) else n_layers + 1
    rows = [kids] + [active & ~kids & (kind == k) for k in range(n_kinds)]
    cum = keep(*_cumsum(jnp.stack([a.astype(jnp.int32) for a in rows])))
    # List positions: splits first, then the ends kind by kind; overflowing entries are
    # dropped and their showers (and all later ones) flagged for re-simulation.
    drop = jnp.int32(ms + me)
    index = jnp.where(kids & (cum[0] <= ms), cum[0] - 1, drop)
    offsets, start = [], jnp.int32(0)
    for k in range(n_kinds):
        offsets.append(start)
        index = jnp.where(rows[1 + k], ms + start + cum[1 + k] - 1, index)
        start = start + cum[1 + k][-1]
    shower = jax.lax.shift_right_logical(pool.tag, _TAG_BITS)
    lost = (kids & (cum[0] > ms)) | (~kids & active & (index >= ms + me))
    first_bad = jnp.minimum(tally.first_bad, jnp.min(jnp.where(lost, shower, b)))
    (index,) = keep(index)
    src = jnp.zeros((ms + me,), jnp.int32).at[index].set(slot, mode="drop",
                                                          unique_indices=True)
    steps = (layer - (pool.tag & ((1 << _TAG_BITS) - 1))).astype(jnp.float32)
    xe, ye = pool.x + steps * pool.dx, pool.y + steps * pool.dy
    tally = _read_out(tally._replace(first_bad=first_bad), src[ms:], offsets, start,
                      (xe, ye, pool.energy, shower), b=b, base_dest=base_dest,
                      n_layers=n_layers, max_points=max_points)
    if ms == 0:  # the last generation: no children
        return None, tally
    child_tag = jax.lax.shift_left(shower, _TAG_BITS) | (layer + 1)
    parents = (jnp.take(a, src[:ms]) for a in (xe, ye, pool.dx, pool.dy, pool.energy,
                                                child_tag, pool.pid, pool.k0, pool.k1,
                                                u_theta))
    return _children(*parents, jnp.minimum(cum[0][-1], ms), config, keep), tally


def _read_out(tally: _Tally, src: jax.Array, offsets: list, total: jax.Array,
              fields: tuple, *, b: int, base_dest: jax.Array, n_layers: int,
              max_points: int) -> _Tally:
    """Tallies the ends listed in ``src`` and writes out their read-out points.

    ``src`` is kind-major and shower-sorted; each point goes to its rank within its shower
    and layer.
    """
    me = src.shape[0]
    n_kinds = len(offsets)
    j = jnp.arange(me, dtype=jnp.int32)
    live = j < total
    kind = jnp.zeros((me,), jnp.int32)
    for k in range(1, n_kinds):
        kind = kind + (j >= offsets[k]).astype(jnp.int32)
    xe, ye, e, shower = (jnp.take(a, src) for a in fields)
    # Per shower: points per layer (counts, exact in float32), escaped and unread energy.
    value = jnp.where(kind < n_layers, 1.0, e)
    sums = jnp.zeros((b * n_kinds,), jnp.float32).at[
        jnp.where(live, shower * n_kinds + kind, b * n_kinds)].add(value, mode="drop")
    sums = sums.reshape(b, n_kinds)
    per_shower = sums[:, :n_layers].astype(jnp.int32).T  # (n_layers, b)
    # Rank in the shower and layer: position in the kind's segment, minus the points of
    # the earlier showers there, plus the shower's points from earlier generations.
    start = tally.counts.T - (_cumsum(per_shower) - per_shower)
    kc = jnp.minimum(kind, n_layers - 1)
    pos = j
    for k in range(1, n_layers):
        pos = jnp.where(kc == k, j - offsets[k], pos)
    rank = pos + jnp.take(start.reshape(-1), kc * b + shower)
    ok = live & (kind < n_layers) & (rank < max_points)
    flat_points = tally.points.shape[0]
    dest = jnp.where(ok, base_dest + ((shower * n_layers + kc) * max_points + rank) * 3,
                     flat_points)
    points = tally.points
    for k, val in enumerate((xe, ye, e)):  # scalar scatters: 30x faster than rows
        points = points.at[dest + k].set(val, mode="drop", unique_indices=True)
    escaped = tally.escaped + sums[:, n_layers]
    unread = tally.unread + sums[:, n_layers + 1] if n_kinds > n_layers + 1 else tally.unread
    return _Tally(tally.counts + per_shower.T, escaped, unread, tally.first_bad, points)


def _children(xe, ye, dx, dy, e, tag, pid, k0, k1, u_theta, n_split, config, keep) -> _Pool:
    """The next generation: both daughters of each listed split, side by side."""
    ms = xe.shape[0]
    w0, w1 = _threefry2x32(k0, k1, pid, jnp.ones_like(pid))
    u_delta, u_phi = keep(_unit(w0), _unit(w1))
    tlo, thi = config.theta_range
    theta = tlo + (thi - tlo) * u_theta
    delta = config.asymmetry * theta * (2.0 * u_delta - 1.0)
    t1 = 0.5 * theta - delta
    t2 = 0.5 * theta + delta
    s, c = _sincos_turns(u_phi)
    tan1, tan2, c, s = keep(_tan(t1), _tan(t2), c, s)
    x1, y1, e1, x2, y2, e2 = keep(*_daughters(xe, ye, dx, dy, e, e * (t2 / theta), tan1,
                                              tan2, c, s, float(config.dz),
                                              config.orientation))

    def pair(a, b):
        return jnp.stack([a, b], axis=1).reshape(-1)

    def twice(a):
        return jnp.broadcast_to(a[:, None], (ms, 2)).reshape(-1)

    pid = pid + pid
    return _Pool(pair(x1, x2), pair(y1, y2), pair(x1 - xe, x2 - xe), pair(y1 - ye, y2 - ye),
                 pair(e1, e2), twice(tag), pair(pid, pid + jnp.uint32(1)), twice(k0),
                 twice(k1), 2 * n_split)


def _stage_plan(caps: PoolCapacities, n_stages: int) -> list[tuple[int, int, int, int]]:
    """Splits generations ``0..n_steps-1`` into at most ``n_stages`` contiguous stages.

    Returns ``(first, stop, ms, me)`` per stage: a stage of one generation gets its own
    list sizes; a longer one is a ``lax.scan`` over a pool of ``2 * ms`` slots (the
    largest any of its generations reads or writes) and ``me`` end slots. The split
    minimises the total pool work by dynamic programming.
    """
    p, e = caps.particles, caps.ends
    n = len(p)
    need = [max(p[g], p[g + 1] if g + 1 < n else 0) for g in range(n)]

    def cost(i: int, j: int) -> float:
        if j == i + 1:
            return p[i] + (p[i + 1] if i + 1 < n else 0) + e[i]
        return (j - i) * (2 * max(need[i:j]) + max(e[i:j]))

    k_max = max(1, min(n_stages, n))
    best = [[math.inf] * (n + 1) for _ in range(k_max + 1)]
    arg = [[0] * (n + 1) for _ in range(k_max + 1)]
    best[0][0] = 0.0
    for k in range(1, k_max + 1):
        for j in range(1, n + 1):
            for i in range(j):
                c = best[k - 1][i] + cost(i, j)
                if c < best[k][j]:
                    best[k][j], arg[k][j] = c, i
    k = min(range(1, k_max + 1), key=lambda kk: best[kk][n])
    plan, j = [], n
    while k > 0:
        i = arg[k][j]
        if j == i + 1:
            ms = p[j] // 2 if j < n else 0
        else:
            ms = max(-(-need[g] // 2) for g in range(i, j))
        plan.append((i, j, ms, max(e[i:j])))
        j, k = i, k - 1
    return plan[::-1]


def _resize(pool: _Pool, tally: _Tally, size: int) -> tuple[_Pool, _Tally]:
    """Pads or truncates the pool to ``size`` slots; truncated showers are flagged."""
    m = pool.x.shape[0]
    if size == m:
        return pool, tally
    if size > m:
        return pool._replace(**{f: jnp.pad(getattr(pool, f), (0, size - m))
                                for f in pool._fields if f != "n"}), tally
    lost = pool.n > size
    cut = jax.lax.shift_right_logical(pool.tag[size], _TAG_BITS)
    tally = tally._replace(first_bad=jnp.where(lost, jnp.minimum(tally.first_bad, cut),
                                               tally.first_bad))
    pool = pool._replace(**{f: getattr(pool, f)[:size] for f in pool._fields if f != "n"})
    return pool._replace(n=jnp.minimum(pool.n, size)), tally


def _any_unread(config: ShowerConfig) -> bool:
    """Whether particles can stop outside the readout layers."""
    p_stop, _ = config.probabilities()
    return bool(np.any((p_stop > 0) & (config.readout_index() < 0)))


def _simulate_pool(
    keys: jax.Array,
    e0: jax.Array,
    points: jax.Array,
    offset: jax.Array | int,
    config: ShowerConfig,
    caps: PoolCapacities,
    max_points: int,
    stages: int,
) -> tuple[_Raw, jax.Array]:
    """Simulates ``B`` showers from key data ``(B, 2)`` uint32 and energies ``(B,)``.

    ``caps`` are the list sizes per generation. ``stages > 0``: at most that many blocks
    of code over the generations, with sizes that follow the particle counts (for large
    batches; ``_stage_plan``); ``0``: one ``lax.while_loop`` over generations with the
    largest sizes, ending after the last non-empty generation (fast to compile; for small
    batches). The read-out points of shower ``i`` are written into the flat output buffer
    ``points`` at shower ``offset + i``; returns the other results and the updated buffer.
    """
    b = e0.shape[0]
    polar, azim = config.incidence
    x0, y0 = config.entry_position
    slope = float(config.dz) * math.tan(polar)
    row_points = config.n_layers * max_points * 3
    base_dest = jnp.asarray(offset, jnp.int32) * row_points

    def full(v):
        return jnp.full((b,), v, jnp.float32)

    pool = _Pool(full(x0), full(y0), full(slope * math.cos(azim)), full(slope * math.sin(azim)),
                 e0.astype(jnp.float32),
                 jax.lax.shift_left(jnp.arange(b, dtype=jnp.int32), _TAG_BITS),
                 jnp.ones((b,), jnp.uint32), keys[:, 0], keys[:, 1], jnp.int32(b))
    tally = _Tally(jnp.zeros((b, config.n_layers), jnp.int32), jnp.zeros((b,), jnp.float32),
                   jnp.zeros((b,), jnp.float32), jnp.int32(b), points)
    gen = functools.partial(_generation, b=b, base_dest=base_dest, config=config,
                            max_points=max_points)
    if stages:
        for first, stop, ms, me in _stage_plan(caps, stages):
            if stop == first + 1:  # one generation: exact list sizes
                pool, tally = gen(pool, tally, ms=ms, me=me, first_layer=first)
                continue
            pool, tally = _resize(pool, tally, 2 * ms)

            def body(carry, _, ms=ms, me=me, first=first):
                return gen(*carry, ms=ms, me=me, first_layer=first), None

            (pool, tally), _ = jax.lax.scan(body, (pool, tally), None, length=stop - first)
    else:
        ms = max(-(-b // 2), max(caps.particles[1:], default=0) // 2)
        me = max(caps.ends)
        pool = jax.tree.map(lambda a: jnp.pad(a, (0, 2 * ms - b)) if a.ndim else a, pool)

        def body(carry):
            pool, tally = carry
            return gen(pool, tally, ms=ms, me=me, first_layer=0)

        pool, tally = jax.lax.while_loop(lambda c: c[0].n > 0, body, (pool, tally))
    overflow = jnp.arange(b) >= tally.first_bad
    return _Raw(None, tally.counts, tally.escaped, tally.unread, overflow), tally.points


def _n_stages(n: int) -> int:
    # 0: one while loop over generations (small batches: fast to compile).
    return 0 if n < SMALL_BATCH else N_STAGES


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


@functools.partial(jax.jit, static_argnames=("n", "config", "caps", "max_points", "chunk",
                                             "stages"))
def _run(key, first, energies, *, n, config, caps, max_points, chunk=None, stages=None):
    """``n`` showers from ``first``, in chunks of ``chunk`` showers (pools ``caps``).

    The chunks run one after the other in a ``lax.scan`` (a small, cache-friendly working
    set) and write their points into one output buffer, allocated once and never copied;
    the last chunk's showers beyond ``n`` are simulated but not written out.
    ``energies``, if given, has ``ceil(n / chunk) * chunk`` entries. ``stages``: as in
    ``_simulate_pool`` (default by batch size).
    """
    chunk = n if chunk is None else chunk
    stages = _n_stages(n) if stages is None else stages
    n_chunks = -(-n // chunk)
    row_points = config.n_layers * max_points * 3

    def one(points, c):
        keys = _shower_keys(key, first + c * chunk, chunk)
        if energies is None:
            e0 = _draw_energy(keys, config)
        else:
            e0 = jax.lax.dynamic_slice_in_dim(energies, c * chunk, chunk)
        raw, points = _simulate_pool(keys, e0, points, c * chunk, config, caps, max_points,
                                     stages)
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


def _scaled(caps: PoolCapacities, scale: float, n: int) -> PoolCapacities:
    if scale == 1.0:
        return caps
    return PoolCapacities(*(tuple(max(1, min(n * 2**g, int(math.ceil(c * scale / 8) * 8)))
                                  for g, c in enumerate(part)) for part in caps))


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
