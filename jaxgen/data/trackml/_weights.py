"""TrackML hit weights and particle-id bit fields (Amrouche et al., arXiv:1904.06778).

The weight of a hit of particle p is ``w_pt(pT_p) * w_order(i, n_p)``, normalised to sum
to one over the event:

- ``w_pt`` is 0.2 up to 0.5 GeV, rises linearly to 1 at 3 GeV and stays 1 above
  (``interp(pT, [0.05, 0.5, 3], [0.2, 0.2, 1])``, 0 below 0.05 GeV);
- ``w_order`` interpolates the proposal ``[10, 8, 6, 5, 3, 3, 3, 5, 6]`` stretched over the
  particle's ``n`` hits (capped at 20) and normalised per particle; the hit index ``i``
  is the (average) rank of ``|tz - vz|`` among the particle's hits. Particles with fewer
  than 4 hits, and noise (``particle_id == 0``), get weight 0.

This is the challenge library's ``weights.py`` (``weight_hits``) written with numpy sorts
instead of pandas group-bys.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

ORDER_PROPOSAL = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
ORDER_MIN_HITS = 4
ORDER_MAX_HITS = 20

# particle_id bit fields: (name, mask, shift) as in trackml-library utils.decode_particle_id.
ID_FIELDS = (
    ("vertex_id", 0xFFF0000000000000, 52),
    ("primary_id", 0x000FFFF000000000, 36),
    ("generation", 0x0000000FFF000000, 24),
    ("secondary_id", 0x0000000000FFF000, 12),
    ("process", 0x0000000000000FFF, 0),
)


def _order_matrix() -> np.ndarray:
    w = np.zeros((ORDER_MAX_HITS + 1, ORDER_MAX_HITS))
    k = len(ORDER_PROPOSAL)
    for n in range(ORDER_MIN_HITS, ORDER_MAX_HITS + 1):
        supports = np.arange(k) * (n - 1) / (k - 1)
        row = np.interp(np.arange(n), supports, ORDER_PROPOSAL)
        w[n, :n] = row / row.sum()
    return w


ORDER_MATRIX = _order_matrix()
"""``ORDER_MATRIX[n, i]``: order weight of the i-th hit of an n-hit particle."""


def weight_pt(pt: ArrayLike) -> np.ndarray:
    """The transverse-momentum weight ``w_pt`` (see the module docstring), shape of ``pt``.

    Example:
      >>> from jaxgen.data import trackml
      >>> trackml.weight_pt([0.3, 1.75, 10.0]).round(3).tolist()    # flat, linear, then 1
      [0.2, 0.6, 1.0]
    """
    return np.interp(np.asarray(pt, np.float64), [0.05, 0.5, 3.0], [0.2, 0.2, 1.0],
                     left=0.0, right=1.0)


def decode_particle_id(particle_id: ArrayLike) -> dict[str, np.ndarray]:
    """Splits particle ids into ``vertex_id, primary_id, generation, secondary_id, process``.

    Args:
      particle_id: integer ids, any shape.

    Returns:
      A dict of int64 arrays of the same shape.

    Example:
      >>> import numpy as np
      >>> from jaxgen.data import trackml
      >>> pid = trackml.encode_particle_id(np.array([3]), np.array([17]), np.array([0]),
      ...                                  np.array([0]), np.array([1]))
      >>> fields = trackml.decode_particle_id(pid)
      >>> int(fields["vertex_id"][0]), int(fields["primary_id"][0]), int(fields["process"][0])
      (3, 17, 1)
    """
    pid = np.asarray(particle_id).astype(np.int64).view(np.uint64)
    return {name: ((pid & np.uint64(mask)) >> np.uint64(shift)).astype(np.int64)
            for name, mask, shift in ID_FIELDS}


def encode_particle_id(
    vertex_id: ArrayLike, primary_id: ArrayLike, generation: ArrayLike,
    secondary_id: ArrayLike, process: ArrayLike,
) -> np.ndarray:
    """Packs the bit fields back into ``int64`` particle ids (inverse of decoding)."""
    out = np.zeros(np.broadcast(vertex_id, primary_id, generation, secondary_id,
                                process).shape, np.uint64)
    for (name, mask, shift), v in zip(
        ID_FIELDS, (vertex_id, primary_id, generation, secondary_id, process), strict=True
    ):
        v = np.asarray(v).astype(np.uint64)
        if (v > np.uint64(mask >> shift)).any():
            raise ValueError(f"`{name}` does not fit in its {mask.bit_count()} bits.")
        out |= (v << np.uint64(shift)) & np.uint64(mask)
    return out.view(np.int64)


def hit_weights(
    hit_particle_id: ArrayLike, tz: ArrayLike, particle_id: ArrayLike, vz: ArrayLike,
    px: ArrayLike, py: ArrayLike, *, primaries_only: bool = False,
) -> np.ndarray:
    """The challenge's per-hit score weights, normalised to sum to one.

    Args:
      hit_particle_id: ``(n,)`` the truth particle of each hit (0 = noise).
      tz: ``(n,)`` true z of each hit (mm).
      particle_id: ``(p,)`` the particle table's ids.
      vz: ``(p,)`` production vertex z (mm).
      px: ``(p,)`` momentum x (GeV).
      py: ``(p,)`` momentum y (GeV).
      primaries_only: the Throughput-phase variant: hits of particles with
        generation != 0 get weight 0 too.

    Returns:
      ``(n,)`` float64 weights summing to 1 (all zero if no hit can carry weight).
    """
    hp = np.asarray(hit_particle_id, np.int64)
    tz = np.asarray(tz, np.float64)
    pid = np.asarray(particle_id, np.int64)
    n = hp.shape[0]
    order = np.argsort(pid, kind="stable")
    spid = pid[order]
    pos = np.clip(np.searchsorted(spid, hp), 0, max(len(spid) - 1, 0))
    known = (spid[pos] == hp) if len(spid) else np.zeros(n, bool)
    row = order[pos]
    pt = np.hypot(np.asarray(px, np.float64), np.asarray(py, np.float64))
    w_pt = np.where(known, weight_pt(pt)[row] if len(spid) else 0.0, 0.0)
    dz = np.abs(tz - np.where(known, np.asarray(vz, np.float64)[row] if len(spid) else 0.0,
                              np.nan))
    dz = np.where(known, dz, 0.0)
    # Per-particle hit count and the average rank of |tz - vz| (pandas' default rank).
    srt = np.lexsort((dz, hp))
    hp_s, dz_s = hp[srt], dz[srt]
    new_p = np.r_[True, hp_s[1:] != hp_s[:-1]]
    p_start = np.maximum.accumulate(np.where(new_p, np.arange(n), 0))
    p_idx = np.cumsum(new_p) - 1
    p_count = np.bincount(p_idx)
    new_tie = new_p | np.r_[True, dz_s[1:] != dz_s[:-1]]
    t_idx = np.cumsum(new_tie) - 1
    t_first = np.flatnonzero(new_tie)
    t_last = np.r_[t_first[1:], n] - 1
    avg_rank0 = 0.5 * (t_first + t_last)[t_idx] - p_start  # 0-based average rank
    ihit = np.floor(avg_rank0).astype(np.int64)
    nhits = p_count[p_idx]
    valid = (nhits >= ORDER_MIN_HITS) & (ihit < ORDER_MAX_HITS) & (hp_s != 0)
    w_order = np.where(valid, ORDER_MATRIX[np.minimum(nhits, ORDER_MAX_HITS),
                                           np.minimum(ihit, ORDER_MAX_HITS - 1)], 0.0)
    w = np.empty(n)
    w[srt] = w_order
    w = w * w_pt
    if primaries_only:
        w = np.where(decode_particle_id(hp)["generation"] == 0, w, 0.0)
    total = w.sum()
    return w / total if total > 0 else w
