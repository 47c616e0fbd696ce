"""One generation of the split tree, and the generations of a batch of showers.

A particle's whole path until it stops or splits is drawn at once (``_event``), so the
simulation runs over the generations of each shower's split tree, not over layers. All
particles of a generation of a batch live in one flat, shower-sorted pool; one scatter per
generation sorts them into the splits with children and the ends (stops by readout layer,
escapes, unread stops). The ends are read out into padded per-shower point clouds; the
splits' daughters form the next generation. Scatters run over these compacted lists only
(a scalar scatter costs about 4 ns per element on CPU, 4x a gather) and write fields as
scalars (row scatters cost 30 ns per row).
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
from jaxgen.data.showers._kernels import _cumsum
from jaxgen.data.showers._kernels import _materializer
from jaxgen.data.showers._kernels import _sincos_turns
from jaxgen.data.showers._kernels import _tan
from jaxgen.data.showers._kernels import _threefry2x32
from jaxgen.data.showers._kernels import _unit
from jaxgen.data.showers._kinematics import _daughters


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


def _event(pool: _Pool, born: jax.Array, config: ShowerConfig, first_layer: int, keep):
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
    survive = jnp.ones_like(v)
    layer = jnp.full(v.shape, first_layer, jnp.int32)
    upto_split = layer
    # Unrolled over the (<= 32, static) layers: one elementwise kernel per particle.
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
    born = pool.tag & ((1 << _TAG_BITS) - 1)
    layer, split, u_theta = _event(pool, born, config, first_layer, keep)
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
    steps = (layer - born).astype(jnp.float32)
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
    list sizes; a longer one is a ``lax.while_loop`` over a pool of ``2 * ms`` slots (the
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


def simulate_pool(
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

    ``caps`` are the list sizes per generation; the generations run as at most ``stages``
    blocks of code (``_stage_plan``): more follow the particle counts closer, fewer
    compile faster (one for small batches). The read-out points of shower ``i`` are
    written into the flat output buffer ``points`` at shower ``offset + i``; returns the
    other results and the updated buffer.
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
    for first, stop, ms, me in _stage_plan(caps, stages):
        if stop == first + 1:  # one generation: exact list sizes
            pool, tally = gen(pool, tally, ms=ms, me=me, first_layer=first)
            continue
        # Several generations at the stage's largest sizes, ending early once no
        # particle is left (a small batch's single stage ends after its deepest shower).
        pool, tally = _resize(pool, tally, 2 * ms)

        def body(carry, ms=ms, me=me, first=first):
            g, pool, tally = carry
            return (g + 1, *gen(pool, tally, ms=ms, me=me, first_layer=first))

        _, pool, tally = jax.lax.while_loop(
            lambda c, length=stop - first: (c[0] < length) & (c[1].n > 0), body,
            (jnp.int32(0), pool, tally))
    overflow = jnp.arange(b) >= tally.first_bad
    return _Raw(None, tally.counts, tally.escaped, tally.unread, overflow), tally.points
