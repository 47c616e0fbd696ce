"""Configuration of the SUPA-like shower simulator and the process statistics it implies.

The defaults reproduce the released SUPA generator (``main_discrete.py`` of
``itsdaniele/SUPA``, arXiv:2202.05012): E0 = 65 GeV, 24 steps of dz = 2, stop probability
``(l / 27) ** 0.75`` above layer 6, split probability 0.6 up to layer 6 and 0.3 above,
opening angle U(pi/32, pi/16), asymmetry U(-theta/4, theta/4), readout layers 5-8, 9-17 and
18-27, and CaloGAN-like grids 3x96, 12x12 and 12x6.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

ENERGY_SPECTRA = ("fixed", "uniform", "log_uniform")
ORIENTATIONS = ("reference", "exact")
MAX_STEPS = 32  # particle ids are paths in the binary split tree: < 2**n_steps in uint32.


def _bad(field: str, msg: str, value: object) -> ValueError:
    return ValueError(f"ShowerConfig.{field} {msg}; got {value!r}.")


def _finite(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(field, "must be a number", value)
    if not math.isfinite(value):
        raise _bad(field, "must be finite", value)
    return float(value)


@dataclasses.dataclass(frozen=True)
class ShowerConfig:
    """The rules of the discrete SUPA process (arXiv:2202.05012); hashable, so jit-static.

    Attributes:
      energy: primary energy E0 in GeV when ``energy_spectrum == "fixed"`` (default 65).
      energy_spectrum: ``"fixed"``, ``"uniform"`` or ``"log_uniform"``; the last two draw
        E0 per shower in ``energy_range``.
      energy_range: ``(low, high)`` in GeV for the non-fixed spectra.
      entry_position: ``(x, y)`` of the primary at layer 0 (reference: ``(0, 0)``).
      incidence: ``(polar, azimuth)`` angles in radians of the primary's direction
        (reference: ``(0, 0)``, along z); the polar angle is below pi/2.
      n_steps: number of propagation steps (reference 24, at most 32). Particles still
        active after the last step are not read out, as in the reference.
      dz: layer spacing (reference 2).
      stop_scale, stop_power: ``p_stop(l) = min(1, (l / stop_scale) ** stop_power)``.
      stop_min_layer: particles stop only in layers ``l > stop_min_layer`` (reference 6).
      split_prob_early: split probability in layers ``l <= stop_min_layer`` (reference 0.6).
      split_prob_late: split probability added above ``p_stop`` in later layers (reference
        0.3): a particle splits if ``p_stop <= p < p_stop + split_prob_late``.
      theta_range: opening angle range ``(low, high)`` in radians (reference pi/32, pi/16).
      asymmetry: delta ~ U(-asymmetry * theta, asymmetry * theta), below 0.5 (ref. 1/4).
      readout_layers: inclusive ``(first, last)`` process-layer ranges, one per calorimeter
        layer, increasing and disjoint (reference (5, 8), (9, 17), (18, 27)).
      grid_bins: ``(nx, ny)`` per calorimeter layer (reference (3, 96), (12, 12), (12, 6)).
      grid_extent: half-width ``e`` of the square ``[-e, e]^2`` of each grid (5, 10, 15).
      orientation: ``"reference"`` rotates the daughters with the matrix of the released
        code (its ``center(v) @ d``, which aligns them with the parent's direction only when
        that direction lies in the y-z or x-z plane); ``"exact"`` uses its transpose, which
        maps the local z axis exactly onto the parent's direction.
    """

    energy: float = 65.0
    energy_spectrum: str = "fixed"
    energy_range: tuple[float, float] = (10.0, 100.0)
    entry_position: tuple[float, float] = (0.0, 0.0)
    incidence: tuple[float, float] = (0.0, 0.0)
    n_steps: int = 24
    dz: float = 2.0
    stop_scale: float = 27.0
    stop_power: float = 0.75
    stop_min_layer: int = 6
    split_prob_early: float = 0.6
    split_prob_late: float = 0.3
    theta_range: tuple[float, float] = (math.pi / 32, math.pi / 16)
    asymmetry: float = 0.25
    readout_layers: tuple[tuple[int, int], ...] = ((5, 8), (9, 17), (18, 27))
    grid_bins: tuple[tuple[int, int], ...] = ((3, 96), (12, 12), (12, 6))
    grid_extent: tuple[float, ...] = (5.0, 10.0, 15.0)
    orientation: str = "reference"

    def __post_init__(self) -> None:
        if _finite("energy", self.energy) <= 0:
            raise _bad("energy", "must be > 0", self.energy)
        if self.energy_spectrum not in ENERGY_SPECTRA:
            raise _bad("energy_spectrum", f"must be one of {list(ENERGY_SPECTRA)}",
                       self.energy_spectrum)
        lo, hi = self._pair("energy_range")
        if not 0 < lo <= hi:
            raise _bad("energy_range", "must satisfy 0 < low <= high", self.energy_range)
        self._pair("entry_position")
        polar, _ = self._pair("incidence")
        if not 0 <= polar < math.pi / 2:
            raise _bad("incidence", "polar angle must be in [0, pi/2)", self.incidence)
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int):
            raise _bad("n_steps", "must be an int", self.n_steps)
        if not 1 <= self.n_steps <= MAX_STEPS:
            raise _bad("n_steps", f"must be in [1, {MAX_STEPS}]", self.n_steps)
        for name in ("dz", "stop_scale"):
            if _finite(name, getattr(self, name)) <= 0:
                raise _bad(name, "must be > 0", getattr(self, name))
        if _finite("stop_power", self.stop_power) < 0:
            raise _bad("stop_power", "must be >= 0", self.stop_power)
        if isinstance(self.stop_min_layer, bool) or not isinstance(self.stop_min_layer, int):
            raise _bad("stop_min_layer", "must be an int", self.stop_min_layer)
        if self.stop_min_layer < -1:
            raise _bad("stop_min_layer", "must be >= -1", self.stop_min_layer)
        for name in ("split_prob_early", "split_prob_late"):
            if not 0 <= _finite(name, getattr(self, name)) <= 1:
                raise _bad(name, "must be in [0, 1]", getattr(self, name))
        tlo, thi = self._pair("theta_range")
        if not 0 < tlo <= thi < math.pi / 2:
            raise _bad("theta_range", "must satisfy 0 < low <= high < pi/2", self.theta_range)
        if not 0 <= _finite("asymmetry", self.asymmetry) < 0.5:
            raise _bad("asymmetry", "must be in [0, 0.5)", self.asymmetry)
        self._check_layers()
        if self.orientation not in ORIENTATIONS:
            raise _bad("orientation", f"must be one of {list(ORIENTATIONS)}", self.orientation)

    def _pair(self, field: str) -> tuple[float, float]:
        value = getattr(self, field)
        if not isinstance(value, tuple) or len(value) != 2:
            raise _bad(field, "must be a tuple of 2 numbers", value)
        return _finite(field, value[0]), _finite(field, value[1])

    def _check_layers(self) -> None:
        ranges = self.readout_layers
        if not isinstance(ranges, tuple) or not ranges:
            raise _bad("readout_layers", "must be a non-empty tuple of (first, last)", ranges)
        prev = -1
        for r in ranges:
            ok = (isinstance(r, tuple) and len(r) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in r))
            if not ok or not prev < r[0] <= r[1]:
                raise _bad("readout_layers", "must be increasing, disjoint (first, last) int "
                           "ranges starting at >= 0", ranges)
            prev = r[1]
        n = len(ranges)
        bins = self.grid_bins
        if not isinstance(bins, tuple) or len(bins) != n:
            raise _bad("grid_bins", f"must hold one (nx, ny) per readout layer ({n})", bins)
        for b in bins:
            if not (isinstance(b, tuple) and len(b) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                            for v in b)):
                raise _bad("grid_bins", "must hold positive int pairs (nx, ny)", bins)
        ext = self.grid_extent
        if not isinstance(ext, tuple) or len(ext) != n:
            raise _bad("grid_extent", f"must hold one half-width per readout layer ({n})", ext)
        for e in ext:
            if _finite("grid_extent", e) <= 0:
                raise _bad("grid_extent", "must hold positive half-widths", ext)

    @property
    def n_layers(self) -> int:
        """Number of calorimeter (readout) layers."""
        return len(self.readout_layers)

    def readout_index(self) -> np.ndarray:
        """Calorimeter layer of each process layer ``0..n_steps-1`` (``-1``: not read out)."""
        out = np.full(self.n_steps, -1, np.int32)
        for k, (first, last) in enumerate(self.readout_layers):
            out[first : min(last, self.n_steps - 1) + 1] = k
        return out

    def probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """``(p_stop, p_split)`` per process layer ``0..n_steps-1`` (float64)."""
        layers = np.arange(self.n_steps, dtype=np.float64)
        late = layers > self.stop_min_layer
        p_stop = np.where(late, np.minimum(1.0, (layers / self.stop_scale) ** self.stop_power),
                          0.0)
        p_split = np.where(late, np.minimum(self.split_prob_late, 1.0 - p_stop),
                           self.split_prob_early)
        return p_stop, p_split


def particle_moments(config: ShowerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the number of active particles per shower at layers 0..n_steps.

    The process is a Galton-Watson branching process with layer-dependent offspring
    X in {0 (stop), 1 (pass), 2 (split)}: E[Z_{t+1}] = f_t E[Z_t] and
    Var[Z_{t+1}] = E[Z_t] v_t + f_t^2 Var[Z_t], with f_t = E[X] and v_t = Var[X].
    """
    p_stop, p_split = config.probabilities()
    p_pass = 1.0 - p_stop - p_split
    f = p_pass + 2 * p_split
    v = p_pass + 4 * p_split - f**2
    mean = np.ones(config.n_steps + 1)
    var = np.zeros(config.n_steps + 1)
    for t in range(config.n_steps):
        mean[t + 1] = f[t] * mean[t]
        var[t + 1] = mean[t] * v[t] + f[t] ** 2 * var[t]
    return mean, var


def mean_points(config: ShowerConfig) -> np.ndarray:
    """Expected number of read-out points per calorimeter layer, shape ``(n_layers,)``.

    Example:
      >>> from jaxgen.data.showers import ShowerConfig, mean_points
      >>> mean_points(ShowerConfig()).shape          # one expectation per calorimeter layer
      (3,)
    """
    mean, _ = particle_moments(config)
    p_stop, _ = config.probabilities()
    stops = mean[:-1] * p_stop
    idx = config.readout_index()
    return np.array([stops[idx == k].sum() for k in range(config.n_layers)])


def _split_table(config: ShowerConfig) -> np.ndarray:
    """``pi[t, e]``: a particle born at layer t splits at layer e into two children."""
    p_stop, p_split = config.probabilities()
    n = config.n_steps
    survive = 1.0 - p_stop - p_split
    pi = np.zeros((n, n))
    for t in range(n):
        alive = 1.0
        for e in range(t, n - 1):  # a split at the last layer creates no children
            pi[t, e] = alive * p_split[e]
            alive *= survive[e]
    return pi


def _generation_stats(config: ShowerConfig) -> tuple[np.ndarray, ...]:
    """Means and variances per generation of the particles and of the ends (no children)."""
    n = config.n_steps
    pi = _split_table(config)
    m = np.zeros((n, n))
    m[:, 1:] = 2.0 * pi[:, :-1]
    ends = 1.0 - pi.sum(1)  # P(a particle born at t stops or escapes)
    z, cov = np.eye(n)[0], np.zeros((n, n))
    stats = np.zeros((4, n))
    for g in range(n):
        stats[:, g] = (z.sum(), cov.sum(), z @ ends,
                       z @ (ends * (1.0 - ends)) + ends @ cov @ ends)
        offspring = (np.einsum("t,ti,ij->ij", z, 2.0 * m, np.eye(n))
                     - np.einsum("t,ti,tj->ij", z, m, m))
        cov = m.T @ cov @ m + offspring
        z = m.T @ z
    return tuple(stats)


def generation_moments(config: ShowerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the number of particles per generation of a shower's split tree.

    Generation ``g`` holds the particles created by ``g`` splits (the primary is generation
    0; a split at the last layer creates no particles: they would escape unread). As a
    multi-type Galton-Watson process over birth layers: a particle born at layer ``t``
    splits at layer ``e >= t`` with probability
    ``pi[t, e] = prod_{t <= j < e} (1 - p_stop_j - p_split_j) * p_split_e``, giving two
    children born at ``e + 1``; with ``M[t, e + 1] = 2 pi[t, e]``, the counts ``Z_g`` by
    birth layer have ``E[Z_{g+1}] = M^T E[Z_g]`` and
    ``Cov[Z_{g+1}] = M^T Cov[Z_g] M + sum_t E[Z_g]_t (diag(2 M_t) - M_t M_t^T)``.

    Returns:
      ``(mean, var)``, each of shape ``(n_steps,)`` (generations ``0..n_steps-1``).
    """
    mean, var, _, _ = _generation_stats(config)
    return mean, var


class PoolCapacities(NamedTuple):
    """Slots per generation for a batch of showers.

    ``particles``: the pool; ``ends``: the particles that stop or escape (all but the
    splits with children).
    """

    particles: tuple[int, ...]
    ends: tuple[int, ...]


def pool_capacities(config: ShowerConfig, n: int, margin: float = 6.0) -> PoolCapacities:
    """Pool sizes for a batch of ``n`` showers, per generation ``0..n_steps-1``.

    Each is the batch mean plus ``margin`` standard deviations of the generation's count
    (``generation_moments``; the counts of independent showers add), rounded up to a
    multiple of 8, and never above the exact bound ``n * 2**g``; generation 0 holds the
    ``n`` primaries. Overflow is still detected and handled by re-simulation.
    """
    mean, var, end_mean, end_var = _generation_stats(config)

    def cap(mu: float, v: float, bound: int) -> int:
        want = n * mu + margin * math.sqrt(n * max(v, 0.0)) + 8
        return max(1, min(bound, int(math.ceil(want / 8.0) * 8)))

    return PoolCapacities(
        tuple(cap(mean[g], var[g], n * 2**g) for g in range(config.n_steps)),
        tuple(cap(end_mean[g], end_var[g], n * 2**g) for g in range(config.n_steps)),
    )


def default_max_points(config: ShowerConfig) -> int:
    """Default point capacity per layer: 5x the largest mean count, rounded up to 32.

    For the reference configuration this is 256 (mean 50.6 points in layer 1); in 10^6
    simulated showers the largest layer held 246 points, so re-simulation with a wider
    buffer (which widens the whole batch's output) is very rare.
    """
    m = float(mean_points(config).max()) if config.n_layers else 0.0
    return max(32, int(math.ceil(5.0 * m / 32.0) * 32))
