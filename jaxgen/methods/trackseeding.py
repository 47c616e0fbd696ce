r"""Cluster-shape track seeding: doublet/triplet classifiers and a singlet direction regressor.

Fox, Huang, Isaacson, Ju, Nachman, "Beyond 4D Tracking: Using Cluster Shapes for Track
Seeding", arXiv:2012.04533 (JINST 2021). A pixel cluster's shape carries the particle's
direction (its length along the module's v axis grows with ``|cot theta|``, its width
along u with the track's curvature and the Lorentz drift), so a classifier on the
clusters of a hit pair rejects most fake seed doublets that pass the spatial cuts.

- Per hit, from its cells: first and last cell indices along both module axes, the
  extents ``nch0, nch1`` and the total charge (``hit_cluster_features``).
- Per pair of hits on consecutive layers: spatial features
  ``(dphi, dz, dr, dphi/dr, z0, deta)``, cluster features (both hits') or both
  (``pair_features``); per triplet likewise (``triplet_features``).
- A doublet classifier per feature set (MLP, weighted BCE with balanced classes, trained
  with ``jaxgen.train.fit``) and the singlet direction regressor (cosine loss).
- The paper's evaluation: purity at 98 % efficiency in 12 bins of the true particle's
  pT x |eta| (``purity_table``), and the purity before any selection.
- ``SeedFilter``: a trained doublet classifier and its 98 %-efficiency threshold, which
  ``jaxgen.methods.tracking.find_tracks`` applies to its seed doublets;
  ``save_seed_filter`` / ``load_seed_filter`` store it in one ``.npz`` file (arrays and a
  JSON header, no pickle), which the tracker's command line reads (``--seed-filter``).

Purity at efficiency :math:`\epsilon` in a bin: the threshold :math:`c` is the
:math:`(1-\epsilon)` quantile of the true pairs' classifier outputs, and the purity is
:math:`N_\mathrm{true}(f \ge c) / N(f \ge c)` in the bin.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxgen._checks import check_array
from jaxgen.classifiers import Classifier
from jaxgen.classifiers import classifier_logits
from jaxgen.classifiers import mlp_classifier
from jaxgen.classifiers import train_classifier
from jaxgen.data.trackml import Cells
from jaxgen.data.trackml import Hits
from jaxgen.io import atomic_open
from jaxgen.methods.tracking._tracker import Prepared
from jaxgen.methods.tracking._tracker import TrackerConfig
from jaxgen.methods.tracking._tracker import build_index
from jaxgen.methods.tracking._tracker import doublets
from jaxgen.methods.tracking._tracker import layer_table
from jaxgen.methods.tracking._tracker import prepare_hits
from jaxgen.methods.tracking._tracker import query
from jaxgen.nn import MLP
from jaxgen.train import FitConfig
from jaxgen.train import fit

FEATURE_SETS = ("spatial", "cluster", "combined")
HIT_FEATURES = ("ch0_first", "ch1_first", "ch0_last", "ch1_last", "nch0", "nch1", "charge")
SPATIAL_FEATURES = ("dphi", "dz", "dr", "dphi_dr", "z0", "deta")
PT_BINS = (0.0, 0.5, 1.0, np.inf)
ETA_BINS = (0.0, 1.0, 1.5, 2.1, 3.0)
BARREL_PIXEL_LAYERS = ((8, 2), (8, 4), (8, 6), (8, 8))

#: Training of the seed classifiers: Adam 1e-3, batches of 512, early stopping.
SEED_FIT_CONFIG = FitConfig(epochs=30, batch_size=512, learning_rate=1e-3,
                            schedule="constant", clip_norm=None, val_fraction=0.2,
                            patience=5, progress=False)


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_SETS:
        raise ValueError(f"`kind` must be one of {list(FEATURE_SETS)}; got {kind!r}.")


def hit_cluster_features(hits: Hits, cells: Cells) -> np.ndarray:
    """Cluster-shape features of every hit from its cells.

    Args:
      hits: ``(n,)`` hit columns.
      cells: the cells of these hits (``(m,)`` rows, several per hit).

    Returns:
      ``(n, 7)`` float32: first and last cell index along u (``ch0``) and v (``ch1``),
      the extents ``nch0 = last - first + 1`` and ``nch1``, and the summed charge
      (``HIT_FEATURES``). Hits without cells get zeros.

    Raises:
      ValueError: if ``cells`` is ``None`` or has cells of unknown hits.
    """
    if cells is None:
        raise ValueError("`cells` is required for cluster features; the event has none.")
    order = np.argsort(hits.hit_id, kind="stable")
    sorted_ids = hits.hit_id[order]
    pos = np.clip(np.searchsorted(sorted_ids, cells.hit_id), 0, max(len(order) - 1, 0))
    if len(cells.hit_id) and not (sorted_ids[pos] == cells.hit_id).all():
        raise ValueError("`cells` has rows whose hit_id is not in `hits`.")
    row = order[pos]
    n = len(hits.hit_id)
    out = np.zeros((n, len(HIT_FEATURES)), np.float32)
    if len(row) == 0:
        return out
    # Segment reductions over the cells grouped by hit (already grouped in TrackML files,
    # so the stable sort is a linear pass).
    c_order = np.argsort(row, kind="stable")
    r = row[c_order]
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    at = r[starts]
    ch0, ch1 = cells.ch0[c_order], cells.ch1[c_order]
    f0, f1 = np.minimum.reduceat(ch0, starts), np.minimum.reduceat(ch1, starts)
    l0, l1 = np.maximum.reduceat(ch0, starts), np.maximum.reduceat(ch1, starts)
    charge = np.add.reduceat(cells.value[c_order].astype(np.float64), starts)
    out[at] = np.stack([f0, f1, l0, l1, l0 - f0 + 1, l1 - f1 + 1, charge], 1)
    return out


def _spatial(prep: Prepared, h1: np.ndarray, h2: np.ndarray, out: np.ndarray) -> None:
    """Writes the 6 ``SPATIAL_FEATURES`` of the pairs into ``out`` ``(m, 6)``."""
    r1, r2 = prep.r[h1], prep.r[h2]
    z1, z2 = prep.xyz[h1, 2], prep.xyz[h2, 2]
    dphi = prep.phi[h2] - prep.phi[h1]
    dphi = np.where(dphi > np.pi, dphi - 2 * np.pi, np.where(dphi < -np.pi, dphi + 2 * np.pi,
                                                             dphi))
    dr = r2 - r1
    safe = np.where(np.abs(dr) < 1e-3, 1e-3, dr)
    dz = z2 - z1
    # Pseudorapidity per hit (one arcsinh per hit instead of two per pair).
    eta = np.arcsinh(prep.xyz[:, 2] / np.maximum(prep.r, 1e-3))
    out[:, 0] = dphi
    out[:, 1] = dz
    out[:, 2] = dr
    out[:, 3] = dphi / safe
    out[:, 4] = z1 - r1 * dz / safe
    out[:, 5] = eta[h2] - eta[h1]


def _context(prep: Prepared, hits: Sequence[np.ndarray], out: np.ndarray) -> None:
    """Writes the inner hit's r and |z| and every hit's barrel flag into ``out``."""
    barrel = layer_table().barrel
    out[:, 0] = prep.r[hits[0]]
    out[:, 1] = np.abs(prep.xyz[hits[0], 2])
    for j, h in enumerate(hits):
        out[:, 2 + j] = barrel[prep.layer[h]]


def pair_features(prep: Prepared, cluster: np.ndarray | None, h1: np.ndarray,
                  h2: np.ndarray, kind: str, *, context: bool = False) -> np.ndarray:
    """Features of hit pairs ``(h1 inner, h2 outer)``.

    Args:
      prep: hits from ``jaxgen.methods.tracking`` (``prepare_hits``).
      cluster: ``(n, 7)`` from ``hit_cluster_features`` (unused for ``"spatial"``).
      h1: ``(m,)`` inner hit indices.
      h2: ``(m,)`` outer hit indices.
      kind: ``"spatial"`` (``SPATIAL_FEATURES``, 6), ``"cluster"`` (both hits' 7
        cluster features, 14) or ``"combined"`` (20).
      context: append the inner hit's r and |z| and both hits' barrel flags (the
        tracker's filter sees pairs from all pixel layers).

    Returns:
      ``(m, d)`` float32.
    """
    _check_kind(kind)
    spatial, clustered = kind in ("spatial", "combined"), kind in ("cluster", "combined")
    if clustered and cluster is None:
        raise ValueError(f"`cluster` features are required for kind {kind!r}.")
    n_hit = len(HIT_FEATURES)
    out = np.empty((len(h1), 6 * spatial + 2 * n_hit * clustered + 4 * context), np.float32)
    c = 0
    if spatial:
        _spatial(prep, h1, h2, out[:, :6])
        c = 6
    if clustered:
        out[:, c:c + n_hit] = cluster[h1]
        out[:, c + n_hit:c + 2 * n_hit] = cluster[h2]
        c += 2 * n_hit
    if context:
        _context(prep, (h1, h2), out[:, c:])
    return out


def triplet_features(prep: Prepared, cluster: np.ndarray | None, triplets: np.ndarray,
                     kind: str) -> np.ndarray:
    """Features of hit triplets ``(m, 3)`` (inner to outer).

    Spatial: both doublets' spatial features, the three-point curvature and the
    difference of the doublets' polar angles; cluster: the three hits' cluster features.
    """
    _check_kind(kind)
    a, b, c = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    cols = []
    if kind in ("spatial", "combined"):
        from jaxgen.methods.tracking._helix import helix_from_points

        h = helix_from_points(prep.xyz[a], prep.xyz[b], prep.xyz[c])
        th1 = np.arctan2(prep.xyz[b, 2] - prep.xyz[a, 2], prep.r[b] - prep.r[a])
        th2 = np.arctan2(prep.xyz[c, 2] - prep.xyz[b, 2], prep.r[c] - prep.r[b])
        ab, bc = (np.empty((len(a), 6), np.float32) for _ in range(2))
        _spatial(prep, a, b, ab)
        _spatial(prep, b, c, bc)
        cols += [ab, bc, np.stack([1e3 * h.kappa, th2 - th1], 1)]
    if kind in ("cluster", "combined"):
        if cluster is None:
            raise ValueError(f"`cluster` features are required for kind {kind!r}.")
        cols += [cluster[a], cluster[b], cluster[c]]
    return np.concatenate(cols, 1).astype(np.float32)


class PairSample(NamedTuple):
    """Hit pairs with truth, ``(m,)`` each: indices, label and the particle's pT, eta."""

    h1: np.ndarray
    h2: np.ndarray
    label: np.ndarray  # bool: same (non-noise) particle
    pt: np.ndarray  # of the inner hit's particle (0 for noise)
    eta: np.ndarray


def _truth_kinematics(event) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pid = event.truth.particle_id
    p = event.particles
    order = np.argsort(p.particle_id)
    pos = np.clip(np.searchsorted(p.particle_id[order], pid), 0, len(order) - 1)
    known = (p.particle_id[order][pos] == pid) & (pid != 0)
    row = order[pos]
    pt = np.where(known, np.hypot(p.px[row], p.py[row]), 0.0)
    eta = np.where(known, np.arcsinh(p.pz[row] / np.maximum(pt, 1e-9)), 0.0)
    return pid, pt, eta


def _sample(event, h1, h2) -> PairSample:
    if event.truth is None or event.particles is None:
        raise ValueError("`event` needs truth and particles to label pairs.")
    pid, pt, eta = _truth_kinematics(event)
    label = (pid[h1] == pid[h2]) & (pid[h1] != 0)
    return PairSample(h1, h2, label, pt[h1], eta[h1])


def barrel_pairs(event, prep: Prepared | None = None, *, dphi_max: float = 0.12,
                 z0_max: float = 200.0) -> PairSample:
    """All hit pairs on consecutive pixel-barrel layers within a loose window.

    The paper's doublets: pairs of hits on consecutive barrel pixel layers (volume 8,
    layers 2-4, 4-6, 6-8) with ``|dphi| <= dphi_max`` (pT above ~0.2 GeV) and a beam-line
    intercept ``|z0| <= z0_max``; their purity is the "before any selection" purity.

    Args:
      event: a ``jaxgen.data.trackml.Event`` with truth and particles.
      prep: its prepared hits (computed if ``None``).
      dphi_max: phi window (rad).
      z0_max: beam-line window (mm).

    Returns:
      The labelled ``PairSample``.
    """
    prep = prepare_hits(event.hits) if prep is None else prep
    table = layer_table()
    ids = list(zip(table.volume_id.tolist(), table.layer_id.tolist(), strict=True))
    lays = [ids.index(v) for v in BARREL_PIXEL_LAYERS]
    index = build_index(prep, np.ones(len(prep.r), bool))
    h1s, h2s = [], []
    for la, lb in zip(lays[:-1], lays[1:], strict=True):
        inner = np.flatnonzero(prep.layer == la)
        r1, z1 = prep.r[inner], prep.xyz[inner, 2]
        rb = table.position[lb]
        zc = [z1 + (z1 - z0) * (r2 - r1) / r1 for z0 in (-z0_max, z0_max)
              for r2 in (rb - 5, rb + 5)]
        rows, h2 = query(index, np.full(inner.shape, lb), prep.phi[inner],
                         np.full(inner.shape, dphi_max), np.minimum.reduce(zc) - 1,
                         np.maximum.reduce(zc) + 1)
        h1 = inner[rows]
        dz = prep.xyz[h2, 2] - prep.xyz[h1, 2]
        z0 = prep.xyz[h1, 2] - prep.r[h1] * dz / (prep.r[h2] - prep.r[h1])
        dphi = np.abs(np.mod(prep.phi[h2] - prep.phi[h1] + np.pi, 2 * np.pi) - np.pi)
        ok = (np.abs(z0) <= z0_max) & (dphi <= dphi_max)
        h1s.append(h1[ok])
        h2s.append(h2[ok])
    return _sample(event, np.concatenate(h1s), np.concatenate(h2s))


def seed_pairs(event, prep: Prepared | None = None,
               config: TrackerConfig | None = None) -> PairSample:
    """The tracker's seed doublets (every pass, all pixel layers), labelled."""
    config = TrackerConfig() if config is None else config
    prep = prepare_hits(event.hits) if prep is None else prep
    free = prep.layer >= 0
    index = build_index(prep, free)
    h1s, h2s = [], []
    for pass_cfg in config.passes:
        h1, h2 = doublets(prep, index, free, pass_cfg, config)
        h1s.append(h1)
        h2s.append(h2)
    h1, h2 = np.concatenate(h1s), np.concatenate(h2s)
    key = np.unique(h1.astype(np.int64) * len(prep.r) + h2)
    return _sample(event, key // len(prep.r), key % len(prep.r))


def train_doublet_classifier(key: jax.Array, features: np.ndarray, labels: np.ndarray, *,
                             hidden: Sequence[int] = (64, 64, 64),
                             config: FitConfig | None = None,
                             max_fakes_per_true: float = 20.0) -> Classifier:
    """Trains a doublet classifier (true pair = 1) with class-balanced weighted BCE.

    Args:
      key: PRNG key (fake subsampling, initialisation, shuffling).
      features: ``(m, d)`` pair features.
      labels: ``(m,)`` bool, true pairs.
      hidden: MLP widths.
      config: training settings (default ``SEED_FIT_CONFIG``).
      max_fakes_per_true: fakes are subsampled to at most this many per true pair (the
        classes are balanced by weights anyway).

    Returns:
      The trained ``Classifier``.

    Raises:
      ValueError: for mismatched shapes, non-finite features or a missing class.
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels, bool)
    check_array("features", features, ndim=2)
    if labels.shape != (features.shape[0],):
        raise ValueError(f"`labels` must have shape ({features.shape[0]},); got "
                         f"{labels.shape}.")
    n1 = int(labels.sum())
    if n1 == 0 or n1 == len(labels):
        raise ValueError("`labels` must contain both true and fake pairs.")
    k_sub, k_fit = jax.random.split(key)
    fakes = np.flatnonzero(~labels)
    n_keep = int(min(len(fakes), max(max_fakes_per_true * n1, 1)))
    if n_keep < len(fakes):
        pick = np.asarray(jax.random.choice(k_sub, len(fakes), (n_keep,), replace=False))
        fakes = np.sort(fakes[pick])
    clf, _ = train_classifier(k_fit, features[fakes], features[labels],
                              model=mlp_classifier(tuple(hidden)),
                              config=SEED_FIT_CONFIG if config is None else config)
    return clf


_CHUNK = 1 << 15  # rows per classifier call in ``logits``: one compiled shape


def logits(clf: Classifier, features: np.ndarray) -> np.ndarray:
    """Classifier logits ``(m,)`` of features ``(m, d)``.

    The rows go through in chunks of a fixed size (the last one zero-padded), so events
    of every size reuse one compiled program and at most one chunk is wasted on padding.
    """
    features = np.asarray(features, np.float32)
    m, d = features.shape
    out = np.empty(m, np.float32)
    for start in range(0, m, _CHUNK):
        chunk = features[start:start + _CHUNK]
        n = chunk.shape[0]
        if n < _CHUNK:
            chunk = np.concatenate([chunk, np.zeros((_CHUNK - n, d), np.float32)])
        out[start:start + n] = np.asarray(classifier_logits(clf, chunk))[:n]
    return out


def threshold_at_efficiency(scores: np.ndarray, labels: np.ndarray,
                            efficiency: float = 0.98) -> float:
    """The cut keeping the fraction ``efficiency`` of the true pairs (``scores >= cut``)."""
    if not 0.0 < efficiency <= 1.0:
        raise ValueError(f"`efficiency` must be in (0, 1]; got {efficiency!r}.")
    true = np.sort(np.asarray(scores)[np.asarray(labels, bool)])
    if true.size == 0:
        raise ValueError("`labels` has no true pairs.")
    k = int(np.floor((1.0 - efficiency) * true.size))
    return float(true[min(k, true.size - 1)])


def purity_at_efficiency(scores: np.ndarray, labels: np.ndarray,
                         efficiency: float = 0.98) -> float:
    """Purity of the pairs passing the cut that keeps ``efficiency`` of the true ones.

    Example:
      >>> import numpy as np
      >>> from jaxgen.methods.trackseeding import purity_at_efficiency
      >>> scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
      >>> labels = np.array([1, 1, 0, 1, 0])
      >>> float(purity_at_efficiency(scores, labels, efficiency=1.0))   # 3 true of 4 kept
      0.75
    """
    cut = threshold_at_efficiency(scores, labels, efficiency)
    passed = np.asarray(scores) >= cut
    return float(np.asarray(labels, bool)[passed].mean())


def purity_table(scores: np.ndarray, sample: PairSample, efficiency: float = 0.98,
                 min_true: int = 10) -> list[dict]:
    """Purity at ``efficiency`` in the paper's 12 bins of pT x |eta| (arXiv:2012.04533).

    Pairs are binned by the inner hit's particle (fakes whose inner hit is noise are in
    no bin); the cut is set per bin on its true pairs.

    Returns:
      One dict per bin: ``pt``, ``eta`` (bounds), ``n_true``, ``n_pairs``, ``original``
      (purity before selection) and ``purity`` (``nan`` with fewer than ``min_true``
      true pairs).
    """
    scores = np.asarray(scores)
    aeta = np.abs(sample.eta)
    rows = []
    for p0, p1 in zip(PT_BINS[:-1], PT_BINS[1:], strict=True):
        for e0, e1 in zip(ETA_BINS[:-1], ETA_BINS[1:], strict=True):
            m = (sample.pt > p0) & (sample.pt <= p1) & (aeta >= e0) & (aeta < e1)
            n_true = int(sample.label[m].sum())
            pur = (purity_at_efficiency(scores[m], sample.label[m], efficiency)
                   if n_true >= min_true else float("nan"))
            rows.append({"pt": (p0, p1), "eta": (e0, e1), "n_true": n_true,
                         "n_pairs": int(m.sum()),
                         "original": float(sample.label[m].mean()) if m.any() else float("nan"),
                         "purity": pur})
    return rows


# ------------------------------------------------------------------- singlet direction


def singlet_inputs(prep: Prepared, cluster: np.ndarray | None, kind: str) -> np.ndarray:
    """Inputs of the singlet regressor: ``xyz`` (spatial), cluster, or both (``(n, d)``)."""
    _check_kind(kind)
    cols = []
    if kind in ("spatial", "combined"):
        cols.append(prep.xyz)
    if kind in ("cluster", "combined"):
        if cluster is None:
            raise ValueError(f"`cluster` features are required for kind {kind!r}.")
        cols.append(cluster)
    return np.concatenate(cols, 1).astype(np.float32)


class DirectionRegressor(NamedTuple):
    """The singlet MLP: parameters and input standardisation."""

    model: nn.Module
    params: dict
    shift: jax.Array
    scale: jax.Array


def singlet_mlp(d: int) -> nn.Module:
    """The paper's singlet network: widths ``d, d, 4d, 4d, 2d`` then 3 outputs."""
    return MLP((d, d, 4 * d, 4 * d, 2 * d, 3))


@functools.cache
def _cosine_loss(model: nn.Module):
    def loss_fn(params, batch, key):
        del key
        pred = model.apply(params, batch["x"])
        # sqrt(|p|^2 + eps): the norm's gradient stays finite at p = 0.
        norm = jnp.sqrt(jnp.sum(pred * pred, -1) + 1e-12)
        return 1.0 - jnp.sum(pred * batch["u"], -1) / norm

    return loss_fn


def train_direction_regressor(key: jax.Array, inputs: np.ndarray, directions: np.ndarray,
                              config: FitConfig | None = None) -> DirectionRegressor:
    """Trains the singlet regressor with the cosine loss ``1 - cos(pred, true)``.

    Args:
      key: PRNG key.
      inputs: ``(n, d)`` from ``singlet_inputs``.
      directions: ``(n, 3)`` true momentum directions (normalised here).
      config: training settings (default ``SEED_FIT_CONFIG``).
    """
    x = np.asarray(inputs, np.float32)
    u = np.asarray(directions, np.float64)
    check_array("inputs", x, ndim=2)
    check_array("directions", u, ndim=2, last_dim=3)
    if u.shape[0] != x.shape[0]:
        raise ValueError("`inputs` and `directions` must have the same number of rows.")
    norm = np.linalg.norm(u, axis=1, keepdims=True)
    if not (norm > 0).all():
        raise ValueError("`directions` contains zero vectors.")
    u = (u / norm).astype(np.float32)
    shift, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    model = singlet_mlp(x.shape[1])
    k_init, k_fit = jax.random.split(key)
    params = model.init(k_init, jnp.zeros((1, x.shape[1])))
    result = fit(_cosine_loss(model), params, {"x": jnp.asarray((x - shift) / scale),
                                               "u": jnp.asarray(u)},
                 key=k_fit, config=SEED_FIT_CONFIG if config is None else config)
    return DirectionRegressor(model, result.params, jnp.asarray(shift), jnp.asarray(scale))


def predict_direction(reg: DirectionRegressor, inputs: np.ndarray) -> np.ndarray:
    """Unit directions ``(n, 3)`` predicted from ``(n, d)`` inputs."""
    x = (jnp.asarray(inputs, jnp.float32) - reg.shift) / reg.scale
    pred = np.asarray(jax.jit(reg.model.apply)(reg.params, x), np.float64)
    return pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------------- seed filter


@dataclasses.dataclass(frozen=True)
class SeedFilter:
    """A trained doublet classifier applied to the tracker's seed doublets.

    Attributes:
      classifier: trained on ``pair_features(..., kind, context=True)``.
      kind: its feature set.
      threshold: logit cut (pairs with ``logit >= threshold`` are kept).
    """

    classifier: Classifier
    kind: str
    threshold: float

    def __post_init__(self):
        _check_kind(self.kind)
        if not np.isfinite(self.threshold):
            raise ValueError(f"`threshold` must be finite; got {self.threshold!r}.")

    def hit_features(self, hits: Hits, cells: Cells | None) -> np.ndarray | None:
        """Per-hit cluster features (``None`` for the spatial set)."""
        if self.kind == "spatial":
            return None
        if cells is None:
            raise ValueError(f"a {self.kind!r} seed filter needs the event's `cells`.")
        return hit_cluster_features(hits, cells)

    def keep(self, prep: Prepared, cluster: np.ndarray | None, h1: np.ndarray,
             h2: np.ndarray) -> np.ndarray:
        """``(m,)`` bool: the doublets ``(h1, h2)`` that pass the filter."""
        x = pair_features(prep, cluster, h1, h2, self.kind, context=True)
        return logits(self.classifier, x) >= self.threshold


def train_seed_filter(key: jax.Array, events: Sequence, kind: str = "combined", *,
                      efficiency: float = 0.98, config: TrackerConfig | None = None,
                      fit_config: FitConfig | None = None,
                      hidden: Sequence[int] = (32, 32)) -> tuple[SeedFilter, dict]:
    """Trains the tracker's seed filter on simulated events (truth needed).

    The doublets are those the tracker seeds from (``seed_pairs``); the classifier is
    trained on a random 80 % of them and the threshold set so that ``efficiency`` of the
    true doublets of the held-out 20 % pass. The network is smaller than the purity
    studies' 3x64 (``hidden``): it runs on every seed doublet of an event (about 1e6 at
    full scale), so it must cost less than the seeds it removes. On full-scale events
    2x32 keeps 10 % of the doublets at 98 % efficiency (3x64: 8 %) at a quarter of the
    cost, and the tracker's score with it is as good.

    Returns:
      ``(filter, info)`` with ``info`` holding the held-out efficiency and the number of
      true doublets it was measured on, the fraction of doublets kept and the purity
      before/after.

    Example:
      On one small simulated event (a short training; the filter's threshold is set on the
      held-out true doublets):

      >>> import jax
      >>> from jaxgen.data import trackml
      >>> from jaxgen.methods import trackseeding
      >>> from jaxgen.train import FitConfig
      >>> sim = trackml.SimConfig(n_particles=200, n_noise=500)
      >>> event = trackml.simulate_event(jax.random.key(0), sim)
      >>> filt, info = trackseeding.train_seed_filter(
      ...     jax.random.key(1), [event], hidden=(8,),
      ...     fit_config=FitConfig(epochs=1, batch_size=256, progress=False))
      >>> filt.kind, 0.0 < info["kept_fraction"] <= 1.0
      ('combined', True)
    """
    _check_kind(kind)
    xs, ys = [], []
    for ev in events:
        prep = prepare_hits(ev.hits)
        cluster = None if kind == "spatial" else hit_cluster_features(ev.hits, ev.cells)
        s = seed_pairs(ev, prep, config)
        xs.append(pair_features(prep, cluster, s.h1, s.h2, kind, context=True))
        ys.append(s.label)
    x, y = np.concatenate(xs), np.concatenate(ys)
    k_split, k_fit = jax.random.split(key)
    perm = np.asarray(jax.random.permutation(k_split, len(y)))
    n_val = max(1, len(y) // 5)
    val, tr = perm[:n_val], perm[n_val:]
    clf = train_doublet_classifier(k_fit, x[tr], y[tr], hidden=hidden, config=fit_config)
    z = logits(clf, x[val])
    cut = threshold_at_efficiency(z, y[val], efficiency)
    kept = z >= cut
    info = {"n_doublets": int(len(y)), "true_fraction": float(y.mean()),
            "val_true_doublets": int(y[val].sum()),
            "val_efficiency": float(kept[y[val]].mean()), "kept_fraction": float(kept.mean()),
            "purity_before": float(y[val].mean()), "purity_after": float(y[val][kept].mean())}
    return SeedFilter(clf, kind, cut), info


_FILTER_FORMAT = "jaxgen.seed_filter/1"


def save_seed_filter(path: str | os.PathLike, seed_filter: SeedFilter) -> None:
    """Writes a seed filter to ``path`` (``.npz``), atomically and without pickle.

    The file holds the classifier's parameters (one array per leaf, named by its path),
    the input standardisation and a JSON header with the format, feature set, threshold
    and the MLP's hidden widths.
    """
    if not isinstance(seed_filter, SeedFilter):
        raise ValueError(f"`seed_filter` must be a SeedFilter; got "
                         f"{type(seed_filter).__name__}.")
    clf = seed_filter.classifier
    if clf.ensemble:
        raise ValueError("`seed_filter` holds an ensemble classifier; only single "
                         "classifiers are saved.")
    flat = traverse_util.flatten_dict(jax.device_get(clf.params), sep="/")
    # Flax names the MLP's layers Dense_0, Dense_1, ...: order them by that number.
    kernels = sorted((k for k in flat if k.endswith("/kernel")),
                     key=lambda k: int(k.rsplit("/", 2)[-2].rsplit("_", 1)[-1]))
    hidden = [int(flat[k].shape[1]) for k in kernels[:-1]]
    header = {"format": _FILTER_FORMAT, "kind": seed_filter.kind,
              "threshold": float(seed_filter.threshold), "hidden": hidden}
    arrays = {f"params/{k}": np.asarray(v) for k, v in flat.items()}
    arrays["shift"] = np.asarray(clf.shift)
    arrays["scale"] = np.asarray(clf.scale)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_seed_filter(path: str | os.PathLike) -> SeedFilter:
    """Reads a seed filter written by ``save_seed_filter``.

    Raises:
      ValueError: if the file is not a jaxgen seed filter or its parameters do not fit
        the MLP its header describes.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"`path` {str(path)!r} is not a readable seed filter: {e}") from e
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (KeyError, ValueError) as e:
        raise ValueError(f"`path` {str(path)!r} has no seed-filter header.") from e
    if header.get("format") != _FILTER_FORMAT:
        raise ValueError(f"`path` {str(path)!r} holds format {header.get('format')!r}, "
                         f"not {_FILTER_FORMAT!r}.")
    params = traverse_util.unflatten_dict(
        {k[len("params/"):]: jnp.asarray(v) for k, v in arrays.items()
         if k.startswith("params/")}, sep="/")
    model = mlp_classifier(tuple(header["hidden"]))
    shift, scale = jnp.asarray(arrays["shift"]), jnp.asarray(arrays["scale"])
    expected = jax.eval_shape(model.init, jax.random.key(0),
                              jnp.zeros((1,) + shift.shape, jnp.float32))
    if jax.tree.map(lambda a: a.shape, expected) != jax.tree.map(lambda a: a.shape, params):
        raise ValueError(f"`path` {str(path)!r}: the parameters do not fit an MLP with "
                         f"hidden widths {header['hidden']}.")
    clf = Classifier(model, params, shift, scale)
    return SeedFilter(clf, header["kind"], float(header["threshold"]))
