"""A combinatorial track finder for TrackML events, vectorised with NumPy.

Pipeline (one call, ``find_tracks``), repeated for a few passes with looser seeding on the
hits the earlier passes left:

1. **Spatial binning.** Hits are sorted by ``(layer, phi)`` into one key array, so every
   "hits of layer L within ``dphi`` of ``phi``" query of a whole batch is two
   ``np.searchsorted`` calls and one ragged expansion.
2. **Seeds.** Doublets on successive pixel layers compatible with a helix from the beam
   line (``|z0|``, ``pT >= pt_min``), optionally filtered by the learned cluster-shape seed
   classifier (``jaxgen.methods.trackseeding``); triplets join two doublets that share
   their middle hit and pass curvature, impact-parameter and polar-angle cuts.
3. **Track following.** All candidates advance together, one hit per step: their helix
   (three-point fit over the last hits) is intersected with the successor layers of
   their current layer (a layer graph built once from helices shot through the
   detector), hits in the phi window are compared with the helix evaluated at the hit's
   own radius (barrels) or z (disks), and the nearest layer's best hit within a road
   scaled by the measurement resolution and multiple scattering (Highland) is appended.
   A successor list that skips layers lets a track cross a missing hit. The seeds are
   split over ``TrackerConfig.threads`` worker threads (2 by default).
4. **Ambiguity resolution.** Candidates, best first (most hits, then smallest chi2),
   claim their hits in parallel rounds: a candidate that is the best claimant of all its
   free hits is accepted; the others lose the taken hits and die below ``min_hits``.
5. **Completion.** Accepted tracks are followed inwards from their innermost hits
   through the reversed layer graph in a tight road (the hits inside a seed that had
   to start after a gap), then pick up the free hits of overlapping modules next to
   their hits.
6. **Leftovers.** Hits in no accepted track get track id 0.

References: TrackML Accuracy phase (arXiv:1904.06778), Throughput phase
(arXiv:2105.01160); the winners' combinatorial approach (S. Gorbunov). Cluster-shape seed
filtering: arXiv:2012.04533.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
from typing import NamedTuple

import numpy as np

from jaxgen.data.trackml import Cells
from jaxgen.data.trackml import Hits
from jaxgen.data.trackml import Submission
from jaxgen.data.trackml import build_layers
from jaxgen.data.trackml import read_detector
from jaxgen.methods.tracking._helix import C_LIGHT
from jaxgen.methods.tracking._helix import Helix
from jaxgen.methods.tracking._helix import advance
from jaxgen.methods.tracking._helix import helix_from_points
from jaxgen.methods.tracking._helix import path_to_cylinder
from jaxgen.methods.tracking._helix import path_to_plane
from jaxgen.methods.tracking._helix import signed_path_to_cylinder
from jaxgen.methods.tracking._helix import wrap

PIXEL_VOLUMES = (7, 8, 9)
# Single-hit resolution (mm): (across, along) the measurement; pixels 50 um, short strips
# 80 um x 1.2 mm, long strips 120 um x 10.8 mm, i.e. pitch / sqrt(12) (TrackML detector).
RESOLUTION = {7: (0.02, 0.02), 8: (0.02, 0.02), 9: (0.02, 0.02),
              12: (0.03, 0.35), 13: (0.03, 0.35), 14: (0.03, 0.35),
              16: (0.04, 3.1), 17: (0.04, 3.1), 18: (0.04, 3.1)}
_KEY_STRIDE = 16.0  # layer stride of the (layer, phi) search key; phi + 4 lies in (0.36, 7.64)
_WRAP = 0.5  # hits within this of phi = +-pi are duplicated across the seam


@dataclasses.dataclass(frozen=True)
class PassConfig:
    """Seeding settings of one pass.

    Attributes:
      pt_min: smallest transverse momentum of a seed (GeV).
      z0_max: largest ``|z|`` at the beam line of a seed doublet (mm).
      d0_max: largest transverse impact parameter of a seed triplet (mm).
      theta_tol: largest polar-angle kink between a triplet's two doublets (rad) for a
        1 GeV particle; scaled by ``1/p`` with a floor of a fifth of it.
      seeds_per_hit: most triplets (the best) starting at one hit.
    """

    pt_min: float = 0.3
    z0_max: float = 150.0
    d0_max: float = 2.0
    theta_tol: float = 0.01
    seeds_per_hit: int = 2

    def __post_init__(self):
        for name in ("pt_min", "z0_max", "d0_max", "theta_tol"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be finite and > 0; got {v!r}.")
        if not isinstance(self.seeds_per_hit, int) or self.seeds_per_hit < 1:
            raise ValueError(f"`seeds_per_hit` must be an integer >= 1; got "
                             f"{self.seeds_per_hit!r}.")


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Track-finder settings (defaults tuned on simulated full-scale events).

    Attributes:
      passes: seeding passes, run in order on the hits earlier passes left.
      b_field: solenoid field (T).
      chi2_max: road of the track following, as a chi2 of the two residuals.
      material: material per crossed layer (radiation lengths) in the road's multiple
        scattering term.
      fit_window: hits (the last ones) that the three-point helix fit spans.
      max_hits: most hits per track candidate.
      min_hits: fewest hits of an accepted track.
      max_turn: largest transverse turning angle between two hits (rad).
      max_steps: most following steps.
      search_layers: successor layers searched per step (the nearest along the helix).
      threads: worker threads of the track following; the seeds are split into this
        many contiguous parts, followed concurrently (NumPy releases the GIL in its
        array loops). The result depends on this number (candidates that meet are merged
        only within a part), never on the scheduling.
    """

    passes: tuple[PassConfig, ...] = (
        PassConfig(pt_min=0.4, d0_max=1.0, theta_tol=0.01),
        PassConfig(pt_min=0.18, d0_max=3.0, theta_tol=0.012),
        PassConfig(pt_min=0.12, d0_max=3.0, theta_tol=0.015),
    )
    b_field: float = 2.0
    chi2_max: float = 12.0
    material: float = 0.025
    fit_window: int = 7
    max_hits: int = 24
    min_hits: int = 4
    max_turn: float = 1.5
    max_steps: int = 30
    search_layers: int = 3
    threads: int = 2

    def __post_init__(self):
        if not isinstance(self.passes, tuple) or not self.passes or not all(
                isinstance(p, PassConfig) for p in self.passes):
            raise ValueError("`passes` must be a non-empty tuple of PassConfig; got "
                             f"{self.passes!r}.")
        for name in ("b_field", "chi2_max", "material", "max_turn"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be finite and > 0; got {v!r}.")
        for name in ("fit_window", "max_hits", "min_hits", "max_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 3:
                raise ValueError(f"`{name}` must be an integer >= 3; got {v!r}.")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"`threads` must be an integer >= 1; got {self.threads!r}.")
        if not isinstance(self.search_layers, int) or self.search_layers < 1:
            raise ValueError(f"`search_layers` must be an integer >= 1; got "
                             f"{self.search_layers!r}.")
        if self.min_hits > self.max_hits:
            raise ValueError(f"`min_hits` ({self.min_hits}) must not exceed `max_hits` "
                             f"({self.max_hits}).")

    def kappa_max(self, pt_min: float) -> float:
        """Largest curvature (1/mm) of a track with ``pT >= pt_min``."""
        return C_LIGHT * self.b_field / pt_min


class LayerTable(NamedTuple):
    """The detector's layers as ideal surfaces, ``(L,)`` each, and the layer graph."""

    volume_id: np.ndarray
    layer_id: np.ndarray
    barrel: np.ndarray
    position: np.ndarray  # radius (barrel) or z (disk), mm
    smin: np.ndarray  # range of z (barrel) or r (disk)
    smax: np.ndarray
    successors: np.ndarray  # (L, K) layers a track can reach next (-1 padded), self first
    res_l: np.ndarray  # single-hit resolution along z (barrels) or r (disks), mm
    seed_successors: np.ndarray  # (L, K') the next layer crossed, no skips (-1 padded)
    predecessors: np.ndarray  # (L, K'') the successor graph reversed, self first


def _reverse(succ: np.ndarray) -> np.ndarray:
    """The reversed graph of a ``(L, K)`` successor table (self first, -1 padded)."""
    n = len(succ)
    rows = [np.r_[i, np.flatnonzero((succ[:, 1:] == i).any(1))] for i in range(n)]
    rows = [np.r_[r[0], r[1:][r[1:] != r[0]]] for r in rows]
    out = np.full((n, max(len(r) for r in rows)), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


@functools.cache
def layer_table() -> LayerTable:
    """The real TrackML layers and the layer graph (cached; see ``_layer_graph``)."""
    layers = build_layers(read_detector())
    succ = _layer_graph(layers.barrel, layers.position, layers.smin, layers.smax)
    seed_succ = _layer_graph(layers.barrel, layers.position, layers.smin, layers.smax, 0)
    res_l = np.array([RESOLUTION.get(int(v), (1.0, 10.0))[1] for v in layers.volume_id])
    return LayerTable(layers.volume_id, layers.layer_id, layers.barrel, layers.position,
                      layers.smin, layers.smax, succ, res_l, seed_succ, _reverse(succ))


def _next_crossing(h: Helix, barrel, position, smin, smax, max_turn: float):
    """First layer crossed by each helix after its state: ``(layer, s)`` (-1 if none)."""
    hh = Helix(*(a[:, None] for a in h))
    s = np.where(barrel[None], path_to_cylinder(hh, position[None], max_turn),
                 path_to_plane(hh, position[None], max_turn))
    x, y, z = advance(hh, np.where(np.isfinite(s), s, 0.0))
    coord = np.where(barrel[None], z, np.hypot(x, y))
    s = np.where((coord >= smin[None]) & (coord <= smax[None]), s, np.inf)
    layer = np.argmin(s, 1)
    best = s[np.arange(len(layer)), layer]
    return np.where(np.isfinite(best), layer, -1), best


def _layer_graph(barrel, position, smin, smax, skips: int = 2) -> np.ndarray:
    """Successor layers from helices shot from the beam line through the ideal layers.

    Tracks of pT 0.15-100 GeV, both charges, |eta| < 4.2 and z0 in [-200, 200] mm are
    followed layer by layer; every layer that follows another within ``skips + 1``
    crossings is one of its successors (so one missing hit can be skipped), and each
    layer is its own first successor (overlapping modules give two hits per layer).
    """
    eta = np.linspace(-4.2, 4.2, 211)
    pt = np.array([0.15, 0.3, 1.0, 100.0])
    z0 = np.array([-200.0, 0.0, 200.0])
    e, p, z, q = (a.ravel() for a in np.meshgrid(eta, pt, z0, [-1.0, 1.0], indexing="ij"))
    kappa = q * C_LIGHT * 2.0 / p
    n = len(e)
    h = Helix(np.zeros(n), np.zeros(n), z, np.zeros(n), kappa, np.sinh(e))
    seq = []
    alive = np.ones(n, bool)
    for _ in range(30):
        layer, s = _next_crossing(h, barrel, position, smin, smax, 2.5)
        layer = np.where(alive, layer, -1)
        alive = layer >= 0
        if not alive.any():
            break
        seq.append(layer)
        x, y, zz = advance(h, np.where(alive, s, 0.0))
        # Restart from the crossing with the direction there.
        phi = h.phi + h.kappa * np.where(alive, s, 0.0)
        # Step slightly past the surface so the same layer is not found again.
        h = Helix(x, y, zz, phi, h.kappa, h.t)
        x, y, zz = advance(h, np.full(n, 1.0))
        h = Helix(x, y, zz, phi + h.kappa, h.kappa, h.t)
    seq = np.stack(seq, 1) if seq else np.zeros((n, 0), int)
    n_layers = len(barrel)
    adj = np.zeros((n_layers, n_layers), bool)
    for k in range(1, skips + 2):
        a, b = seq[:, :-k].ravel(), seq[:, k:].ravel()
        ok = (a >= 0) & (b >= 0)
        adj[a[ok], b[ok]] = True
    np.fill_diagonal(adj, False)
    width = 1 + int(adj.sum(1).max())
    succ = np.full((n_layers, width), -1, np.int64)
    for i in range(n_layers):
        row = np.r_[i, np.flatnonzero(adj[i])]
        succ[i, :len(row)] = row
    return succ


class Prepared(NamedTuple):
    """Hits in the tracker's frame, ``(n,)`` each."""

    xyz: np.ndarray  # (n, 3) float64
    r: np.ndarray
    phi: np.ndarray
    layer: np.ndarray  # layer index in ``layer_table()`` order, -1 if unknown
    module: np.ndarray  # module key (volume, layer, module)
    res_t: np.ndarray  # resolution across (r phi)
    res_l: np.ndarray  # resolution along (z in barrels, r in disks)


def prepare_hits(hits: Hits) -> Prepared:
    """Cylindrical coordinates, layer indices and resolutions of the hits."""
    table = layer_table()
    xyz = np.stack([hits.x, hits.y, hits.z], 1).astype(np.float64)
    key = hits.volume_id.astype(np.int64) * 100 + hits.layer_id
    ref = table.volume_id.astype(np.int64) * 100 + table.layer_id
    pos = np.clip(np.searchsorted(ref, key), 0, len(ref) - 1)
    layer = np.where(ref[pos] == key, pos, -1)
    res = np.array([RESOLUTION.get(int(v), (1.0, 10.0)) for v in range(20)])
    vol = np.clip(hits.volume_id, 0, 19)
    res_t, res_l = res[vol, 0], res[vol, 1]
    # A disk module's coarse (v) axis is radial at its centre only: off centre it tilts by
    # up to ~u/r ~ 0.05 rad, which leaks 5 % of the coarse resolution into r phi.
    disk = (layer >= 0) & ~table.barrel[np.maximum(layer, 0)]
    res_t = res_t + np.where(disk, 0.05 * res_l, 0.0)
    return Prepared(xyz, np.hypot(xyz[:, 0], xyz[:, 1]), np.arctan2(xyz[:, 1], xyz[:, 0]),
                    layer, key * 100000 + hits.module_id, res_t, res_l)


N_PHI_BINS = 256  # phi bins per layer of the search index
_U_OFFSET = 2048.0  # u (z in barrels, r in disks, |u| < 2048 mm) shifted to be positive
_U_STRIDE = 4096.0


class SearchIndex(NamedTuple):
    """Hits sorted by ``(layer, phi bin, u)`` with ``u`` = z (barrels) or r (disks)."""

    key: np.ndarray
    hit: np.ndarray


def _u(prep: Prepared, hits: np.ndarray) -> np.ndarray:
    barrel = layer_table().barrel[prep.layer[hits]]
    return np.where(barrel, prep.xyz[hits, 2], prep.r[hits])


def _phi_bin(phi: np.ndarray) -> np.ndarray:
    return np.floor((phi + np.pi) * (N_PHI_BINS / (2 * np.pi))).astype(np.int64)


def build_index(prep: Prepared, mask: np.ndarray) -> SearchIndex:
    """The search index of the hits selected by ``mask`` (on known layers)."""
    idx = np.flatnonzero(mask & (prep.layer >= 0))
    cell = prep.layer[idx] * N_PHI_BINS + np.mod(_phi_bin(prep.phi[idx]), N_PHI_BINS)
    key = cell * _U_STRIDE + np.clip(_u(prep, idx) + _U_OFFSET, 0.0, _U_STRIDE - 1.0)
    order = np.argsort(key, kind="stable")
    return SearchIndex(key[order], idx[order])


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ragged expansion: ``(row, position)`` for every ``lo[row] <= position < hi[row]``."""
    counts = np.maximum(hi - lo, 0)
    rows = np.repeat(np.arange(len(lo)), counts)
    starts = np.cumsum(counts) - counts
    return rows, np.arange(rows.size) - starts[rows] + lo[rows]


def query(index: SearchIndex, layer: np.ndarray, phi: np.ndarray, half_width: np.ndarray,
          u_lo: np.ndarray | None = None, u_hi: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """All (query, hit) pairs with the hit on a layer, in a phi window and a u range.

    ``u`` is z in barrels and r in disks.

    Args:
      index: from ``build_index``.
      layer: ``(q,)`` layer index of each query.
      phi: ``(q,)`` window centres (rad).
      half_width: ``(q,)`` window half-widths (rad, at most pi).
      u_lo: ``(q,)`` lower bounds of u (default: unbounded).
      u_hi: ``(q,)`` upper bounds of u (default: unbounded).

    Returns:
      ``(query_row, hit)``, each ``(m,)``, sorted by query row.
    """
    w = np.minimum(half_width, np.pi)
    b0 = _phi_bin(phi - w)
    b1 = _phi_bin(phi + w)
    nb = np.minimum(b1 - b0 + 1, N_PHI_BINS)
    lo_u = np.zeros(len(nb)) if u_lo is None else np.clip(u_lo + _U_OFFSET, 0.0,
                                                          _U_STRIDE - 1.0)
    hi_u = np.full(len(nb), _U_STRIDE - 1.0) if u_hi is None else np.clip(
        u_hi + _U_OFFSET, 0.0, _U_STRIDE - 1.0)
    # One (query, phi bin) search per cell. NumPy's binary search is ~10x faster on
    # increasing keys, so the searches run with the queries ordered by their first key
    # and the bounds go back to query order afterwards (the output order is unchanged).
    first = (layer * N_PHI_BINS + np.mod(b0, N_PHI_BINS)) * _U_STRIDE + lo_u
    by_key = np.argsort(first, kind="stable")
    srow, k = _expand(np.zeros_like(nb), nb[by_key])
    qrow = by_key[srow]
    cell = layer[qrow] * N_PHI_BINS + np.mod(b0[qrow] + k, N_PHI_BINS)
    at = (np.cumsum(nb) - nb)[qrow] + k  # each search's place in query order
    lo = np.empty(len(at), np.int64)
    hi = np.empty(len(at), np.int64)
    lo[at] = np.searchsorted(index.key, cell * _U_STRIDE + lo_u[qrow])
    hi[at] = np.searchsorted(index.key, cell * _U_STRIDE + hi_u[qrow], side="right")
    qrow = np.repeat(np.arange(len(nb)), nb)
    rows, pos = _expand(lo, hi)
    rows = qrow[rows]
    hit = index.hit[pos]
    return rows, hit


# ------------------------------------------------------------------------------ seeding

_MIN_SEEDS_PER_THREAD = 1000  # seeds or inner hits below which a thread costs more


def _in_parts(fn, threads: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``fn`` on contiguous parts of ``arrays`` in up to ``threads`` threads.

    ``fn`` maps arrays of ``m`` rows to a tuple of arrays of rows; the parts' results are
    concatenated in order, so for a row-wise ``fn`` the result equals one call on the
    whole. NumPy releases the GIL in its array loops, and XLA in its calls.
    """
    parts = min(threads, max(len(arrays[0]) // _MIN_SEEDS_PER_THREAD, 1))
    if parts == 1:
        return tuple(fn(*arrays))
    split = zip(*(np.array_split(a, parts) for a in arrays), strict=True)
    with concurrent.futures.ThreadPoolExecutor(parts) as pool:
        found = list(pool.map(lambda args: tuple(fn(*args)), split))
    return tuple(np.concatenate(part) for part in zip(*found, strict=True))


def doublets(prep: Prepared, index: SearchIndex, free: np.ndarray, pass_cfg: PassConfig,
             config: TrackerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Hit pairs on successive pixel layers compatible with a helix from the beam line.

    The outer hit lies within the phi window of a ``pT >= pt_min`` track and in the z
    (barrel) or r (disk) range of straight lines in ``(r, z)`` from the inner hit to
    the beam line at ``|z0| <= z0_max``.

    The inner hits are split over ``config.threads`` threads; the pairs come out in the
    same order as from one thread.

    Returns:
      ``(inner, outer)`` hit indices, ``(m,)`` each.
    """
    pix = np.isin(layer_table().volume_id, PIXEL_VOLUMES)
    inner = np.flatnonzero(free & (prep.layer >= 0))
    inner = inner[pix[prep.layer[inner]]]
    return _in_parts(lambda h: _doublets_from(prep, index, free, h, pass_cfg, config),
                     config.threads, inner)


def _doublets_from(prep: Prepared, index: SearchIndex, free: np.ndarray, inner: np.ndarray,
                   pass_cfg: PassConfig, config: TrackerConfig
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``doublets`` for the given inner hits (pixel hits on known layers)."""
    table = layer_table()
    pix = np.isin(table.volume_id, PIXEL_VOLUMES)
    succ = table.seed_successors[prep.layer[inner], 1:]
    q_hit = np.repeat(inner, succ.shape[1])
    q_layer = succ.ravel()
    ok = q_layer >= 0
    ok[ok] = pix[q_layer[ok]]
    q_hit, q_layer = q_hit[ok], q_layer[ok]
    kmax = config.kappa_max(pass_cfg.pt_min)
    barrel = table.barrel[q_layer]
    pos = table.position[q_layer]
    r1, z1 = prep.r[q_hit], prep.xyz[q_hit, 2]
    zm = pass_cfg.z0_max
    # Barrel target: z2 = z1 + (z1 - z0) (r2 - r1) / r1 over z0 and r2 = pos +- 5 mm.
    zc = [z1 + (z1 - z0) * (r2 - r1) / r1 for z0 in (-zm, zm) for r2 in (pos - 5, pos + 5)]
    zlo, zhi = np.minimum.reduce(zc), np.maximum.reduce(zc)
    # Disk target on the side s = sign(z2), |z2| = |pos| -+ 10 mm: r2 = r1 (z2 - z0) /
    # (z1 - z0) grows with z0 (for s z0 < s z1), so its least value comes from
    # s z0 = -zm and the near surface, its largest from s z0 = zm and the far surface,
    # unbounded if the inner hit lies within the vertex range (|z1| <= zm). Outwards:
    # r2 > r1 + 0.5 (the cut below).
    side = np.where(pos < 0, -1.0, 1.0)
    sz1 = side * z1
    reach = sz1 + zm > 0
    rlo = np.where(reach, r1 * (np.abs(pos) - 10.0 + zm) / np.where(reach, sz1 + zm, 1.0),
                   np.inf)
    rlo = np.maximum(rlo, r1 + 0.5)
    beyond = sz1 > zm
    rhi = np.where(beyond, r1 * (np.abs(pos) + 10.0 - zm) / np.where(beyond, sz1 - zm, 1.0),
                   2000.0)
    # The phi window of a pT >= pt_min track grows with the outer radius: the layer's
    # radius (barrel) or the largest radius reachable on the disk.
    r_out = np.where(barrel, pos, np.minimum(table.smax[q_layer], rhi + 1.0))
    dphi = np.abs(np.arcsin(np.minimum(0.5 * kmax * r_out, 1.0))
                  - np.arcsin(np.minimum(0.5 * kmax * r1, 1.0))) + 0.003
    u_lo = np.where(barrel, zlo, rlo) - 1.0
    u_hi = np.where(barrel, zhi, rhi) + 1.0
    rows, h2 = query(index, q_layer, prep.phi[q_hit], dphi, u_lo, u_hi)
    h1 = q_hit[rows]
    r1, r2 = prep.r[h1], prep.r[h2]
    z1, z2 = prep.xyz[h1, 2], prep.xyz[h2, 2]
    dr = r2 - r1
    ok = (dr > 0.5) & free[h2]
    z0 = z1 - r1 * (z2 - z1) / np.where(ok, dr, 1.0)
    ok &= np.abs(z0) <= pass_cfg.z0_max
    # Curvature of the circle through the origin and both hits.
    x1, y1, x2, y2 = prep.xyz[h1, 0], prep.xyz[h1, 1], prep.xyz[h2, 0], prep.xyz[h2, 1]
    d12 = np.hypot(x2 - x1, y2 - y1)
    kappa = 2.0 * (x1 * y2 - y1 * x2) / np.maximum(r1 * r2 * d12, 1e-9)
    ok &= np.abs(kappa) <= kmax
    return h1[ok], h2[ok]


_COT_STRIDE = 128.0  # cot(theta) clipped to (-60, 60) and shifted by 64 in the join key


def triplets(prep: Prepared, h1: np.ndarray, h2: np.ndarray, pass_cfg: PassConfig,
             config: TrackerConfig) -> np.ndarray:
    """Triplets ``(m, 3)`` joining doublets that share their middle hit, with quality cuts.

    The join pairs each doublet with the doublets starting at its outer hit whose
    ``cot(theta)`` is within the multiple-scattering and measurement tolerance (a sorted
    search); then the cuts: curvature ``<= kappa_max(pt_min)``, transverse impact
    parameter ``<= d0_max`` and polar-angle kink ``<= theta_tol / p``, each widened by the
    three-point fit's error.
    """
    dz = prep.xyz[h2, 2] - prep.xyz[h1, 2]
    drho = np.maximum(np.hypot(*(prep.xyz[h2, :2] - prep.xyz[h1, :2]).T), 1e-6)
    cot = np.clip(dz / drho, -60.0, 60.0)
    key = h1 * _COT_STRIDE + cot + 64.0
    order = np.argsort(key, kind="stable")
    skey, s2 = key[order], h2[order]
    p_min = pass_cfg.pt_min * np.sqrt(1.0 + cot ** 2)
    tol = (1.0 + cot ** 2) * pass_cfg.theta_tol * np.maximum(1.0 / p_min, 0.2) \
        + 4.0 * 0.03 * (1.0 + np.abs(cot)) / drho
    base = h2 * _COT_STRIDE + cot + 64.0
    tol = np.minimum(tol, 60.0)
    lo = np.searchsorted(skey, base - tol)
    hi = np.searchsorted(skey, base + tol, side="right")
    rows, pos = _expand(lo, hi)
    a, b, c = h1[rows], h2[rows], s2[pos]
    pa, pb, pc = prep.xyz[a], prep.xyz[b], prep.xyz[c]
    h = helix_from_points(pa, pb, pc)
    # Curvature error of a three-point circle, 4 sigma / (L_ab L_bc) for pixel-size sigma,
    # makes a d0 error of kappa_err * r_a^2 / 2: short lever arms (disks) get more room.
    l_ab = np.hypot(*(pb[:, :2] - pa[:, :2]).T)
    l_bc = np.hypot(*(pc[:, :2] - pb[:, :2]).T)
    r_a = np.hypot(pa[:, 0], pa[:, 1])
    kappa_err = 4.0 * 0.02 / np.maximum(l_ab * l_bc, 1e-6)
    kmax = config.kappa_max(pass_cfg.pt_min)
    ok = np.abs(h.kappa) <= kmax + 3.0 * kappa_err
    # Impact parameter: distance of the circle to the beam line.
    k = np.where(np.abs(h.kappa) < 1e-9, 1e-9, h.kappa)
    cx = h.x - np.sin(h.phi) / k
    cy = h.y + np.cos(h.phi) / k
    d0 = np.abs(np.hypot(cx, cy) - 1.0 / np.abs(k))
    ok &= d0 <= pass_cfg.d0_max + 3.0 * kappa_err * 0.5 * r_a ** 2
    # Polar-angle kink, tolerance scaled by multiple scattering ~ 1/p.
    th1 = np.arctan2(pb[:, 2] - pa[:, 2], l_ab)
    th2 = np.arctan2(pc[:, 2] - pb[:, 2], l_bc)
    p = C_LIGHT * config.b_field / np.maximum(np.abs(h.kappa), 1e-9) * np.sqrt(1 + h.t ** 2)
    tol = pass_cfg.theta_tol * np.maximum(1.0 / p, 0.2)
    ok &= np.abs(th2 - th1) <= tol
    a, b, c = a[ok], b[ok], c[ok]
    quality = ((th2 - th1) / tol)[ok] ** 2 + (d0 / (pass_cfg.d0_max + 3.0 * kappa_err * 0.5
                                                    * r_a ** 2))[ok] ** 2
    # A triplet with a doublet that jumps over a hit which another triplet puts between
    # the same two hits (``a -> x -> b``) would leave that hit out (following only goes
    # outwards): it ranks after every triplet without such a gap.
    n = max(int(prep.r.shape[0]), 1)
    bridged = a * n + c
    gap = np.isin(a * n + b, bridged) | np.isin(b * n + c, bridged)
    # A triplet whose first doublet continues another triplet lies inside a longer chain:
    # following that chain's first triplet finds its hits anyway.
    keep = ~np.isin(a * n + b, b * n + c)
    a, b, c, quality, gap = a[keep], b[keep], c[keep], quality[keep], gap[keep]
    # At most ``seeds_per_hit`` triplets (the best) start at one hit.
    order = np.lexsort((quality, gap, a))
    a, b, c = a[order], b[order], c[order]
    start = np.r_[0, np.flatnonzero(np.diff(a)) + 1] if a.size else np.zeros(0, np.int64)
    rank = np.arange(a.size) - np.repeat(start, np.diff(np.r_[start, a.size]))
    keep = rank < pass_cfg.seeds_per_hit
    return np.stack([a[keep], b[keep], c[keep]], 1)


# ---------------------------------------------------------------------------- following


class Candidates(NamedTuple):
    """Track candidates: ``hits (n, max_hits)`` (-1 padded), ``n_hits``, ``chi2`` (n,)."""

    hits: np.ndarray
    n_hits: np.ndarray
    chi2: np.ndarray


def _fit(prep: Prepared, hits: np.ndarray, n_hits: np.ndarray, window: int) -> Helix:
    """Three-point helix over the hits of the last ``window`` layers, on distinct layers.

    Hits of overlapping modules lie a fraction of a millimetre apart in the same layer,
    so the window counts layers, not hits: the first point is the earliest hit within
    ``window`` layers of the last one, the middle point the hit of a third layer whose
    radius is nearest the mean of the two (balanced lever arms).
    """
    rows = np.arange(len(n_hits))
    last = n_hits - 1
    j = np.arange(hits.shape[1])[None]
    lay = np.where(hits >= 0, prep.layer[np.maximum(hits, 0)], -2)
    change = np.zeros(hits.shape, np.int64)
    change[:, :-1] = (lay[:, 1:] != lay[:, :-1]) & (j[:, 1:] <= last[:, None])
    after = np.cumsum(change[:, ::-1], 1)[:, ::-1]  # layer changes from slot j to the end
    big = hits.shape[1]
    a = np.where(after <= window - 1, j, big).min(1)
    a = np.minimum(a, last)
    lc = lay[rows, last][:, None]
    la = lay[rows, a][:, None]
    r = np.where(hits >= 0, prep.r[np.maximum(hits, 0)], np.inf)
    r_mid = 0.5 * (r[rows, a] + r[rows, last])[:, None]
    ok_b = (j > a[:, None]) & (j < last[:, None]) & (lay != lc) & (lay != la)
    b = np.argmin(np.where(ok_b, np.abs(r - r_mid), np.inf), 1)
    # Three layers are always present (seeds span three); guard anyway.
    b = np.where(ok_b.any(1), b, np.maximum(last - 1, 0))
    return helix_from_points(prep.xyz[hits[rows, a]], prep.xyz[hits[rows, b]],
                             prep.xyz[hits[rows, last]])


def _path_to_layer(h: Helix, barrel: np.ndarray, position: np.ndarray,
                   max_turn: float) -> np.ndarray:
    """Arc length to a barrel or disk layer, each solved only where it applies.

    ``position`` is the cylinder's radius (barrel) or the plane's z (disk); shapes
    broadcast.
    """
    shape = np.broadcast_shapes(barrel.shape, position.shape, h.x.shape)
    barrel = np.broadcast_to(barrel, shape)
    position = np.broadcast_to(position, shape)
    out = np.empty(shape)
    for mask, solve in ((barrel, path_to_cylinder), (~barrel, path_to_plane)):
        hm = Helix(*(np.broadcast_to(v, shape)[mask] for v in h))
        out[mask] = solve(hm, position[mask], max_turn)
    return out


def follow(prep: Prepared, index: SearchIndex, seeds: np.ndarray,
           config: TrackerConfig, *, inwards: bool = False,
           free: np.ndarray | None = None) -> Candidates:
    """Extends seeds, one hit per step (see the module docstring).

    Args:
      prep: the prepared hits.
      index: the search index of the hits that may be added.
      seeds: ``(n, k)`` hits in the order of travel (-1 padded; at least three layers).
      config: tracker settings.
      inwards: follow the reversed layer graph (seeds ordered from outside in).
      free: ``(hits,)`` bool, if given only these hits may be added.
    """
    table = layer_table()
    graph = table.predecessors if inwards else table.successors
    n, k = seeds.shape
    hits = np.full((n, max(config.max_hits, k)), -1, np.int64)
    hits[:, :k] = seeds
    n_hits = (seeds >= 0).sum(1).astype(np.int64)
    chi2 = np.zeros(n)
    alive = np.arange(n)
    theta_c = 0.0136 * math.sqrt(config.material)
    for _ in range(config.max_steps):
        if alive.size == 0:
            break
        h = _fit(prep, hits[alive], n_hits[alive], config.fit_window)
        last = hits[alive, n_hits[alive] - 1]
        cur_layer = prep.layer[last]
        succ = graph[cur_layer]  # (alive, K)
        hh = Helix(*(v[:, None] for v in h))
        sl = np.maximum(succ, 0)
        barrel = table.barrel[sl]
        s_layer = np.where(succ < 0, np.inf, _path_to_layer(hh, barrel, table.position[sl],
                                                             config.max_turn))
        # A layer is reachable if the helix crosses its surface within its extent.
        xq, yq, zq = advance(hh, np.where(np.isfinite(s_layer), s_layer, 0.0))
        coord = np.where(barrel, zq, np.hypot(xq, yq))
        inside = (coord >= table.smin[sl] - 10.0) & (coord <= table.smax[sl] + 10.0)
        s_layer = np.where(inside, s_layer, np.inf)
        s_layer[:, 0] = 0.0
        # Only the self loop (first: its path is 0) and the nearest few successor layers
        # are searched, from the crossings computed above (the self loop's at the hit).
        near = np.argsort(s_layer, axis=1)[:, :config.search_layers + 1]
        s_layer = np.take_along_axis(s_layer, near, 1)
        succ = np.take_along_axis(succ, near, 1)
        ok_layer = np.isfinite(s_layer)
        xq, yq, zq = (np.take_along_axis(v, near, 1) for v in (xq, yq, zq))
        xq[:, 0], yq[:, 0], zq[:, 0] = h.x, h.y, h.z
        pt = C_LIGHT * config.b_field / np.maximum(np.abs(h.kappa), 1e-9)
        p = pt * np.sqrt(1.0 + h.t ** 2)
        ms = theta_c / p  # scattering angle per layer (rad)
        r_q = np.maximum(np.hypot(xq, yq), 1.0)
        half = (4.0 * (ms[:, None] * np.maximum(s_layer, 20.0) + 0.05)
                + 0.002 * s_layer) / r_q + 0.002
        ci, ki = np.nonzero(ok_layer)
        # u window: road along z / r, plus the hit's offset from the ideal surface.
        lay_q = succ[ci, ki]
        bq = table.barrel[lay_q]
        tq = h.t[ci]
        dist_q = np.maximum(s_layer[ci, ki], 20.0) * np.sqrt(1.0 + tq ** 2)
        slope_q = np.where(bq, np.sqrt(1.0 + tq ** 2),
                           np.sqrt(1.0 + 1.0 / np.maximum(tq ** 2, 1e-12)))
        offset = np.where(bq, 6.0 * np.abs(tq), 12.0 / np.maximum(np.abs(tq), 1e-3))
        du = 4.0 * (ms[ci] * dist_q * slope_q + 2.0 * table.res_l[lay_q] + 0.002 * dist_q) \
            + np.minimum(offset, 1e3) + 2.0
        uq = np.where(bq, zq[ci, ki], np.hypot(xq[ci, ki], yq[ci, ki]))
        rows, hit = query(index, lay_q, np.arctan2(yq[ci, ki], xq[ci, ki]), half[ci, ki],
                          uq - du, uq + du)
        ci, ki = ci[rows], ki[rows]
        # Residuals: helix evaluated at the hit's own radius (barrel) or z (disk).
        hc = Helix(*(v[ci] for v in h))
        hb = table.barrel[succ[ci, ki]]
        s_hit = _path_to_layer(hc, hb, np.where(hb, prep.r[hit], prep.xyz[hit, 2]),
                               config.max_turn)
        fin = np.isfinite(s_hit)
        xp, yp, zp = advance(hc, np.where(fin, s_hit, 0.0))
        r_h = prep.r[hit]
        d_t = r_h * wrap(prep.phi[hit] - np.arctan2(yp, xp))
        d_l = np.where(hb, prep.xyz[hit, 2] - zp, r_h - np.hypot(xp, yp))
        dist = np.where(fin, s_hit, 0.0) * np.sqrt(1.0 + hc.t ** 2)
        msd = ms[ci] * dist
        sig_t = np.hypot(prep.res_t[hit] + prep.res_t[last[ci]], msd) + 0.002 * s_hit
        slope = np.where(hb, np.sqrt(1.0 + hc.t ** 2),
                         np.sqrt(1.0 + 1.0 / np.maximum(hc.t ** 2, 1e-12)))
        sig_l = np.hypot(prep.res_l[hit] + prep.res_l[last[ci]], msd * slope) \
            + 0.002 * dist
        c2 = (d_t / sig_t) ** 2 + (d_l / sig_l) ** 2
        is_self = succ[ci, ki] == cur_layer[ci]
        used = (hits[alive[ci]] == hit[:, None]).any(1)
        good = fin & (c2 <= config.chi2_max) & ~used
        if free is not None:
            good &= free[hit]
        if inwards:
            # Towards the beam line only (not round a loop), and not the overlap hits of
            # the track's own layer (``pick_up_overlaps``' job).
            good &= ~is_self & (np.hypot(prep.r[hit], prep.xyz[hit, 2])
                                < np.hypot(prep.r[last[ci]], prep.xyz[last[ci], 2]))
        good &= ~is_self | ((prep.module[hit] != prep.module[last[ci]]) & (s_hit < 40.0)
                            & (c2 <= 0.5 * config.chi2_max))
        ci, ki, hit, c2, s_hit = ci[good], ki[good], hit[good], c2[good], s_hit[good]
        # Nearest layer first (the layer's own surface; overlaps in the same layer first),
        # then the best chi2 on it.
        rank_s = np.where(is_self[good], -1.0, s_layer[ci, ki])
        order = np.lexsort((c2, rank_s, ci))
        ci, hit, c2 = ci[order], hit[order], c2[order]
        first = np.r_[True, ci[1:] != ci[:-1]] if ci.size else np.zeros(0, bool)
        ci, hit, c2 = ci[first], hit[first], c2[first]
        cand = alive[ci]
        hits[cand, n_hits[cand]] = hit
        n_hits[cand] += 1
        chi2[cand] += c2
        alive = cand[n_hits[cand] < hits.shape[1]]
        # Candidates that now end in the same two hits continue identically: keep the one
        # with the most hits (then the smallest chi2) and stop the others here.
        if alive.size > 1:
            k1 = hits[alive, n_hits[alive] - 1]
            k2 = hits[alive, n_hits[alive] - 2]
            order = np.lexsort((chi2[alive], -n_hits[alive], k2, k1))
            sk1, sk2 = k1[order], k2[order]
            first = np.r_[True, (sk1[1:] != sk1[:-1]) | (sk2[1:] != sk2[:-1])]
            alive = np.sort(alive[order[first]])
    return Candidates(hits, n_hits, chi2)


# ---------------------------------------------------------------------------- ambiguity


def resolve(cands: Candidates, n_hits_total: int, min_hits: int) -> tuple[np.ndarray, list]:
    """Assigns each hit to at most one candidate (see the module docstring).

    Returns:
      ``(owner, accepted)``: the accepted candidate per hit (-1 if none), ``(n,)``, and the
      accepted candidates' rows.
    """
    n = len(cands.n_hits)
    quality = np.lexsort((cands.chi2 / np.maximum(cands.n_hits, 1), -cands.n_hits))
    rank = np.empty(n, np.int64)
    rank[quality] = np.arange(n)
    hits = cands.hits.copy()
    alive = cands.n_hits >= min_hits
    owner = np.full(n_hits_total, -1, np.int64)
    taken = np.zeros(n_hits_total, bool)
    accepted = []
    for _ in range(1000):
        rows = np.flatnonzero(alive)
        if rows.size == 0:
            break
        hh = hits[rows]
        valid = hh >= 0
        cand_rank = np.broadcast_to(rank[rows][:, None], hh.shape)
        best = np.full(n_hits_total, np.iinfo(np.int64).max)
        np.minimum.at(best, hh[valid], cand_rank[valid])
        wins = np.where(valid, best[np.maximum(hh, 0)] == cand_rank, True).all(1)
        win_rows = rows[wins]
        accepted.append(win_rows)
        wh = hits[win_rows]
        wv = wh >= 0
        owner[wh[wv]] = np.broadcast_to(win_rows[:, None], wh.shape)[wv]
        taken[wh[wv]] = True
        alive[win_rows] = False
        rest = rows[~wins]
        rh = hits[rest]
        rh = np.where((rh >= 0) & taken[np.maximum(rh, 0)], -1, rh)
        hits[rest] = rh
        alive[rest] = (rh >= 0).sum(1) >= min_hits
    acc = np.concatenate(accepted) if accepted else np.zeros(0, np.int64)
    return owner, acc


def _overlap_partners(prep: Prepared, index: SearchIndex, free: np.ndarray, helix: Helix,
                      hit: np.ndarray, rep: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free overlap partners of the track hits ``hit`` (of track rows ``rep``).

    Returns ``(partner, track row, chi2)`` of the pairs within 4 sigma.
    """
    # Overlap partners lie within a few mm along the track: z in a barrel (the radial
    # offset of the modules times cot theta), r in a disk (their z offset over cot theta).
    t_abs = np.abs(helix.t[rep])
    hit_barrel = layer_table().barrel[prep.layer[hit]]
    du = np.where(hit_barrel, 5.0 + 8.0 * t_abs, 5.0 + 12.0 / np.maximum(t_abs, 1e-2))
    du = du + 3.0 * prep.res_l[hit]
    u0 = np.where(hit_barrel, prep.xyz[hit, 2], prep.r[hit])
    q_rows, cand = query(index, prep.layer[hit], prep.phi[hit],
                         np.full(hit.shape, 0.02), u0 - du, u0 + du)
    h0, t0, cand = hit[q_rows], rep[q_rows], cand
    keep = free[cand] & (prep.module[cand] != prep.module[h0])
    h0, t0, cand = h0[keep], t0[keep], cand[keep]
    hx = Helix(*(v[t0] for v in helix))
    barrel = layer_table().barrel[prep.layer[h0]]

    def residual(h):
        t = np.where(np.abs(hx.t) < 1e-9, 1e-9, hx.t)
        s = np.where(barrel, signed_path_to_cylinder(hx, prep.r[h]),
                     (prep.xyz[h, 2] - hx.z) / t)
        fin = np.isfinite(s)
        x, y, z = advance(hx, np.where(fin, s, 0.0))
        d_t = prep.r[h] * wrap(prep.phi[h] - np.arctan2(y, x))
        d_l = np.where(barrel, prep.xyz[h, 2] - z, prep.r[h] - np.hypot(x, y))
        return d_t, d_l, fin

    t_a, l_a, f_a = residual(h0)
    t_b, l_b, f_b = residual(cand)
    sig_t = prep.res_t[h0] + prep.res_t[cand] + 0.05
    sig_l = prep.res_l[h0] + prep.res_l[cand] + 0.1
    c2 = ((t_b - t_a) / sig_t) ** 2 + ((l_b - l_a) / sig_l) ** 2
    keep = f_a & f_b & (c2 <= 16.0)
    return cand[keep], t0[keep], c2[keep]


def pick_up_overlaps(prep: Prepared, index: SearchIndex, track: np.ndarray,
                     free: np.ndarray, config: TrackerConfig) -> np.ndarray:
    """Adds to each track the free hits of overlapping modules next to its hits.

    A particle crossing two overlapping modules of one layer leaves two hits a few
    millimetres apart. For each track hit, free hits of the same layer on another module
    within a small phi window are compared with the track's helix (first, middle and
    last hit), relative to the track hit's own residual so that the helix's error
    cancels; the best one within 4 sigma of the resolutions joins the track.

    Returns:
      The updated ``(n,)`` track ids.
    """
    rows = np.flatnonzero(track > 0)
    if rows.size == 0:
        return track
    order = np.argsort(track[rows], kind="stable")
    rows = rows[order]
    tid = track[rows]
    start = np.r_[0, np.flatnonzero(np.diff(tid)) + 1]
    count = np.diff(np.r_[start, len(rows)])
    # Helix per track through its innermost, middle and outermost hit (by radius).
    rr = prep.r[rows]
    key = np.lexsort((rr, tid))
    srt = rows[key]
    a = srt[start]
    c = srt[start + count - 1]
    b = srt[start + count // 2]
    ok = (count >= 3) & (prep.layer[a] != prep.layer[b]) & (prep.layer[b] != prep.layer[c])
    helix = helix_from_points(prep.xyz[a], prep.xyz[b], prep.xyz[c])
    # Evaluate from the first hit: restart the state there, going forward.
    rep = np.repeat(np.arange(len(start)), count)
    hit = srt
    good_track = ok[rep]
    hit, rep = hit[good_track], rep[good_track]
    cand, t0, c2 = _in_parts(lambda h, r: _overlap_partners(prep, index, free, helix, h, r),
                             config.threads, hit, rep)
    return _assign_best(track, cand, tid[start][t0], c2)


def _assign_best(track: np.ndarray, hit: np.ndarray, owner: np.ndarray,
                 cost: np.ndarray) -> np.ndarray:
    """``track`` with each claimed ``hit`` given to its claimant ``owner`` of least ``cost``."""
    order = np.lexsort((cost, hit))
    hit, owner = hit[order], owner[order]
    first = np.r_[True, hit[1:] != hit[:-1]] if hit.size else np.zeros(0, bool)
    out = track.copy()
    out[hit[first]] = owner[first]
    return out


# Road of the inward extension (chi2 of the two residuals). Measured on a full-scale
# simulated event with the road at 12: of the hits it added, those with chi2 < 1 were the
# track's particle's in 94 % of cases, 1-2 in 73 %, 2-4 in 21 %, above 4 in 4 %. The inner
# layers are the densest, and a wrong hit there costs another particle its seed.
_INWARD_CHI2 = 2.0


def extend_inwards(prep: Prepared, index: SearchIndex, track: np.ndarray, free: np.ndarray,
                   first_id: int, config: TrackerConfig) -> np.ndarray:
    """Adds to tracks ``>= first_id`` the free hits on the layers inside their first hit.

    Following only goes outwards, so a track seeded after a layer where its seed would
    have needed a missing hit (a gap between modules, a barrel-to-disk transition) leaves
    its inner hits behind. Each track's innermost hits (by distance from the origin,
    ``fit_window`` of them) are followed in reverse through the reversed layer graph; a
    free hit claimed by several tracks joins the one with the smallest chi2 per hit.

    Returns:
      The updated ``(n,)`` track ids.
    """
    rows = np.flatnonzero(track >= first_id)
    if rows.size == 0:
        return track
    dist = np.hypot(prep.r[rows], prep.xyz[rows, 2])
    order = np.lexsort((-dist, track[rows]))  # per track, outermost first
    rows = rows[order]
    tid = track[rows]
    start = np.r_[0, np.flatnonzero(np.diff(tid)) + 1]
    count = np.diff(np.r_[start, len(rows)])
    k = min(config.fit_window, int(count.max()))
    # The innermost k hits of each track, ordered outside-in; a shorter track's row ends
    # in -1 padding (``follow`` continues from the last real hit).
    take = np.minimum(count, k)
    j = np.arange(k)[None]
    src = (start + count - take)[:, None] + j
    seeds = np.where(j < take[:, None], rows[np.minimum(src, len(rows) - 1)], -1)
    # The helix fit needs hits on three distinct layers (the padding's -1 is not one).
    layers = np.where(seeds >= 0, prep.layer[np.maximum(seeds, 0)], -1)
    distinct = (np.diff(np.sort(layers, 1), axis=1) > 0).sum(1) + 1 - (layers < 0).any(1)
    ok = distinct >= 3
    seeds, ids = seeds[ok], tid[start][ok]
    if len(seeds) == 0:
        return track
    road = dataclasses.replace(config, chi2_max=_INWARD_CHI2)
    cands = Candidates(*_in_parts(
        lambda s: follow(prep, index, s, road, inwards=True, free=free),
        config.threads, seeds))
    n0 = (seeds >= 0).sum(1)
    grew = np.flatnonzero(cands.n_hits > n0)
    if grew.size == 0:
        return track
    per_hit = cands.chi2[grew] / (cands.n_hits[grew] - n0[grew])
    new_j = np.arange(cands.hits.shape[1])[None]
    mask = (new_j >= n0[grew, None]) & (new_j < cands.n_hits[grew, None])
    rr, cc = np.nonzero(mask)
    return _assign_best(track, cands.hits[grew[rr], cc], ids[grew[rr]], per_hit[rr])


# ------------------------------------------------------------------------------- driver


def find_tracks(hits: Hits, cells: Cells | None = None, config: TrackerConfig | None = None,
                seed_filter=None) -> np.ndarray:
    """Reconstructs the tracks of one event (deterministic).

    Args:
      hits: the event's hits (``jaxgen.data.trackml.Hits``), ``(n,)`` columns.
      cells: its cells, used by ``seed_filter`` (optional).
      config: tracker settings (default ``TrackerConfig()``).
      seed_filter: a ``jaxgen.methods.trackseeding.SeedFilter``; seed doublets it
        rejects are dropped (a cluster-based filter needs ``cells``).

    Returns:
      ``(n,)`` int64 track id per hit, aligned with ``hits``; 0 marks hits in no track.

    Raises:
      ValueError: for malformed hits or config, or a cluster filter without cells.

    Example:
      >>> import jax
      >>> from jaxgen.data import trackml
      >>> ev = trackml.simulate_event(jax.random.key(0),
      ...                             trackml.SimConfig(n_particles=20, n_noise=0))
      >>> track = find_tracks(ev.hits)
      >>> track.shape == ev.hits.hit_id.shape
      True
    """
    check_hits(hits)
    config = TrackerConfig() if config is None else config
    if not isinstance(config, TrackerConfig):
        raise ValueError(f"`config` must be a TrackerConfig; got {type(config).__name__}.")
    prep = prepare_hits(hits)
    n = len(prep.r)
    track = np.zeros(n, np.int64)
    free = prep.layer >= 0
    next_id = 1
    cluster = None if seed_filter is None else seed_filter.hit_features(hits, cells)
    for pass_cfg in config.passes:
        index = build_index(prep, free)
        h1, h2 = doublets(prep, index, free, pass_cfg, config)
        if seed_filter is not None and h1.size:
            keep, = _in_parts(lambda a, b: (seed_filter.keep(prep, cluster, a, b),),
                              config.threads, h1, h2)
            h1, h2 = h1[keep], h2[keep]
        seeds = triplets(prep, h1, h2, pass_cfg, config)
        if seeds.size == 0:
            continue
        cands = Candidates(*_in_parts(lambda s, index=index: follow(prep, index, s, config),
                                      config.threads, seeds))
        owner, acc = resolve(cands, n, config.min_hits)
        hit_rows = np.flatnonzero(owner >= 0)
        ids = np.full(len(cands.n_hits), -1, np.int64)
        ids[acc] = next_id + np.arange(len(acc))
        next_id += len(acc)
        track[hit_rows] = ids[owner[hit_rows]]
        free &= owner < 0
        track = extend_inwards(prep, index, track, free, next_id - len(acc), config)
        free &= track == 0
        track = pick_up_overlaps(prep, index, track, free, config)
        free &= track == 0
    return track


def reconstruct(event, config: TrackerConfig | None = None, seed_filter=None) -> Submission:
    """``find_tracks`` on a ``jaxgen.data.trackml.Event``, as a ``Submission``.

    Example:
      >>> import jax
      >>> from jaxgen.data import trackml
      >>> from jaxgen.methods.tracking import reconstruct
      >>> ev = trackml.simulate_event(jax.random.key(0),
      ...                             trackml.SimConfig(n_particles=20, n_noise=0))
      >>> sub = reconstruct(ev)
      >>> sub.hit_id.shape == ev.hits.hit_id.shape       # one track id per hit
      True
    """
    track = find_tracks(event.hits, event.cells, config, seed_filter)
    n = len(track)
    return Submission(np.full(n, int(event.event_id), np.int64),
                      np.asarray(event.hits.hit_id, np.int64), track)


def check_hits(hits: Hits) -> None:
    """Raises ``ValueError`` for hits of inconsistent lengths or non-finite positions."""
    if not isinstance(hits, Hits):
        raise ValueError(f"`hits` must be a jaxgen.data.trackml.Hits; got {type(hits).__name__}.")
    n = len(hits.hit_id)
    for name in Hits._fields:
        a = np.asarray(getattr(hits, name))
        if a.shape != (n,):
            raise ValueError(f"`hits.{name}` must have shape ({n},); got {a.shape}.")
    for name in ("x", "y", "z"):
        if not np.isfinite(getattr(hits, name)).all():
            raise ValueError(f"`hits.{name}` contains NaN or inf values.")
