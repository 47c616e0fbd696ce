"""The vectorised SUPA-like shower simulator (arXiv:2202.05012).

The simulation runs over the generations of each shower's split tree, not over layers
(``_generations``): a particle's whole path until it stops or splits is drawn at once (one
uniform, compared with the survival probabilities of the layers ahead, gives the event
layer and whether it is a stop or a split, with exactly the per-layer probabilities of the
step-by-step process), so a particle is handled once instead of once per layer it passes.
All particles of a generation of a batch of showers live in one flat, shower-sorted pool.
One scatter per generation sorts them into the splits with children and the ends (stops
by readout layer, escapes, unread stops); the ends are read out into padded per-shower
point clouds and the splits' daughters form the next generation. Pools are sized per
generation from the process's analytic mean and variance (``pool_capacities``): about 148
slots per shower for the 143 particles (and 72 ends) of the default configuration, where a
layer-by-layer pool processes about 200 particle-steps. The generations run as 8 stages
from 10,000 showers on (plain code for a single generation with its own sizes, a
``lax.while_loop`` at the largest sizes for several) and below that as one stage, which
ends after the deepest shower's last generation. Large batches run as equal chunks
(16,384 showers on CPU) in a ``lax.scan`` inside one compiled call, writing into one
output buffer.

CPU notes (XLA:CPU, measured): the kernels (hash, trigonometry, prefix sums) are written
for it (``_kernels``) and scatters run over compacted lists only (``_generations``). For
large batches the fresh output buffer's page faults are a large share of the time (20-40 %
of the wall time, varying with the kernel's state): with glibc,
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (transparent huge pages for malloc) removes most.

Randomness is a counter-based hash: the draws of a particle are
``threefry2x32(shower key, (particle id, j))``, j = 0 (event, opening angle) and 1
(asymmetry, azimuth; splits only), where the id is the particle's path in the binary split
tree, with a leading 1. A shower's result therefore depends only on its key and the
configuration, not on the batch, the pool layout or the capacities; a shower whose pool or
point capacity overflowed is re-simulated with larger capacities and comes out as an
unbounded simulation would (no truncation, no bias). The particles, their draws, counts
and energies are exactly the same; different stage plans (small and large batches) may
round a position differently (XLA may fuse a multiply-add in one and not the other), by
a few ulp per generation.
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
from jaxgen.data.showers._generations import _Raw
from jaxgen.data.showers._generations import simulate_pool
from jaxgen.data.showers._kernels import _hash
from jaxgen.data.showers._kernels import _unit

_ENERGY_WORD = np.uint32(0xFFFFFFFF)  # counter word reserved for the E0 draw
SMALL_BATCH = 10_000  # below this, one stage over all generations (fast compile)
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


def _n_stages(n: int) -> int:
    # Small batches: one stage (fast to compile; the padding work is small in absolute terms).
    return 1 if n < SMALL_BATCH else N_STAGES


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
        raw, points = simulate_pool(keys, e0, points, c * chunk, config, caps, max_points,
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
    raw, points = simulate_pool(keys, e0, points, 0, config, caps, max_points,
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
    chunks (``first_index`` = showers already generated) equals one generated at once
    (positions to a few ulp where the chunks are on different sides of 10,000 showers,
    which switches the compiled code path). Showers whose particle pool or point capacity
    overflowed are detected and re-simulated with doubled capacities until none
    overflows; the output's ``max_points`` grows if a shower needs it. Nothing is ever
    truncated.

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
    # Rare: re-simulate the flagged showers with larger capacities (same keys: the same
    # particles and draws as with unbounded capacities), then merge them in.
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
