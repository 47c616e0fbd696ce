"""Fast simulation of TrackML-like events on the real detector geometry, in JAX.

``simulate_event(key)`` is a pure function of a PRNG key: a jit-compiled kernel samples
particles, propagates them as helices in a 2 T solenoid field (along z) through the real
layers, intersects them with the actual module planes (overlapping modules give two hits
in one layer, as in the real data), scatters them at every crossed module (Highland
formula, from the module thickness), optionally removes their mean ionisation energy
loss, digitises every hit into the cells its path through the sensor lights up and adds
noise hits. The host then only compacts the fixed-size arrays into the same ``Event``
that ``read_event`` returns (hit ids sorted by volume, layer and module as in the
challenge's files; truth weights computed as the challenge's).

What resembles the real TrackML data (arXiv:1904.06778), with the numbers measured on
the real samples in ``tests/data/trackml_samples``:

- particles: ~9000 per event, 22% secondaries (generation 1-3, produced in the detector
  material, softer and more central); primaries flat in eta in [-4, 4] with a Tsallis
  pT spectrum ``pT (1 + pT / (n T))^-n`` (T = 0.147 GeV, n = 6.48, maximum-likelihood fit
  to the real primaries, pT > 0.1 GeV); secondaries ``pT exp(-pT / 0.093)`` (fit);
  vertices Gaussian (sigma_xy = 15 um, sigma_z = 5.5 mm); particle ids with the
  challenge's bit fields (vertex, primary, generation, secondary, process);
- hadrons stop with probability 0.02 at each layer with a crossed module (nuclear
  interactions; this gives the real event's share of short primary tracks);
- particles below 150 MeV leave no hits (as in the real particle tables) and
  propagation stops after half a turn (loopers' returning hits are rare in the real
  data);
- cells: the cells crossed by the straight path through the sensor's digitisation
  depth, with the charge (pixels, 1 per mm of path) proportional to the path length in
  each cell and binary strips (value 1); in the barrels the charge drifts with the
  Lorentz angle along u (tan = -0.12, 0.241, 0.16 in volumes 8, 13, 17); the measured
  position is the charge-weighted cell centroid corrected for the drift, so strips
  measure their coarse direction with their long pitch. Calibrated on the real subset's
  pixel and endcap clusters against their true paths (``DIGITIZATION_DEPTH``): with
  the depth twice the file's ``module_t`` in every endcap volume and tan = -0.12 in the
  pixel barrel, the first and last cell of 99.5 % of the real clusters are exactly those
  of the straight path (with ``module_t`` itself, 13 % of the pixel-endcap clusters
  were one cell longer along v, and with tan = -0.241 a third of the barrel clusters one
  cell longer along u);
- noise: a fixed number of hits per event, spread over volumes with the real subset's
  fractions and uniformly by area within a volume.

Command line::

    python -m jaxgen.data.trackml.simulate --events 10 --out DIR [--seed 0] [--gzip]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data.trackml._event import Cells
from jaxgen.data.trackml._event import Event
from jaxgen.data.trackml._event import Hits
from jaxgen.data.trackml._event import Particles
from jaxgen.data.trackml._event import Truth
from jaxgen.data.trackml._event import write_event
from jaxgen.data.trackml._geometry import Detector
from jaxgen.data.trackml._geometry import Layers
from jaxgen.data.trackml._geometry import build_layers
from jaxgen.data.trackml._geometry import read_detector
from jaxgen.data.trackml._weights import encode_particle_id
from jaxgen.data.trackml._weights import hit_weights

C_LIGHT = 2.99792458e-4  # GeV / (T mm): pT = C_LIGHT * B * R for |q| = 1
X0_SILICON = 93.7  # mm
DEDX_SILICON = 3.88e-4  # GeV / mm, minimum ionising (1.664 MeV cm^2/g * 2.33 g/cm^3)
SHORT_ROWS = 8  # rows of the first digitisation pass (most clusters are shorter)
EPS_STEP = 1e-2  # mm: a crossing closer than this is the surface we stand on

PDG = np.array([211, -211, 321, -321, 2212, -2212, 11, -11, 13, -13], np.int32)
MASS = np.array([0.13957, 0.13957, 0.49368, 0.49368, 0.93827, 0.93827,
                 0.000511, 0.000511, 0.10566, 0.10566], np.float32)
CHARGE = np.array([1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.int32)
# Primary composition like the real tables (pi 85 %, K 9 %, p 6 %, few leptons).
PRIMARY_TYPE_PROBS = (0.42, 0.42, 0.045, 0.045, 0.03, 0.03, 0.003, 0.003, 0.002, 0.002)
# Secondaries in the real subset: protons 45 %, charged pions the rest.
SECONDARY_TYPE_PROBS = (0.275, 0.275, 0.0, 0.0, 0.45, 0.0, 0.0, 0.0, 0.0, 0.0)
# Noise hits per volume 7, 8, 9, 12, 13, 14, 16, 17, 18 in the real subset (829 hits).
NOISE_VOLUME_COUNTS = (37, 82, 33, 54, 246, 49, 24, 266, 38)
NOISE_VOLUMES = (7, 8, 9, 12, 13, 14, 16, 17, 18)
# Lorentz drift along u (tan of the angle). Pixel barrel: fitted to the real subset's
# cluster extents (tan -0.12 puts 1,848 of 1,856 cluster ends on the straight path; the
# real measured u carries the uncorrected shift, +9 um). Strip barrels: not calibrated.
LORENTZ_TAN = {8: -0.12, 13: 0.241, 17: 0.16}
PIXEL_VALUE_PER_MM = {7: 1.0, 8: 1.0, 9: 1.0}
# Depth of the charge path in units of the module thickness (`module_t`), per volume.
# The real digitisation of every endcap volume used twice `module_t`: on the real subset
# the first and last cells of 2,725 of the 2,728 pixel-endcap cluster ends along v (2,723
# along u) and of all but 8 of the 3,000 strip-endcap ends are those of a path through
# 2 x module_t (with 1 x, 345 pixel ends along v lie one cell further out; with 2.2 x, 68
# fall one cell short). It also explains the
# endcaps' doubled charge per mm of `module_t`. Material (scattering) uses `module_t`.
DIGITIZATION_DEPTH = {7: 2.0, 9: 2.0, 12: 2.0, 14: 2.0, 16: 2.0, 18: 2.0}


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Fast-simulation settings; defaults give a full TrackML-scale event.

    Attributes:
      n_particles: particles per event (static; ~1e4 at full scale).
      n_vertices: primary vertices (hard scatter + pile-up).
      vertex_sigma_xy, vertex_sigma_z: Gaussian beam-spot widths (mm).
      eta_max: primaries are flat in pseudorapidity in [-eta_max, eta_max].
      pt_min: lower pT of generated particles (GeV).
      pt_temperature, pt_power: Tsallis spectrum of primaries (GeV, dimensionless).
      secondary_fraction: fraction of particles that are secondaries.
      secondary_pt_temperature: exponential slope of their pT spectrum (GeV).
      secondary_eta_sigma: Gaussian width of their pseudorapidity.
      b_field: solenoid field along z (T).
      hit_pt_min: particles below this pT leave no hits (GeV).
      max_turn: propagation stops after this transverse turning angle (rad).
      max_steps: at most this many layer crossings per particle (static; at full scale
        fewer than 1e-4 of the particles still record hits after 16 crossings).
      multiple_scattering: scatter at every crossed module (Highland formula).
      energy_loss: remove the mean ionisation loss at every crossed module.
      material_factor: material per module in units of its silicon thickness.
      hit_efficiency: probability that a crossed module records the hit.
      interaction_probability: probability that a hadron stops (nuclear interaction in
        the module and its supports) at each layer where it crosses a module; 0.02
        reproduces the real event's ~18 % of primaries with 1-8 hits.
      n_noise: noise hits per event (static).
      max_cluster_rows: cells per hit along its longer direction (static, 2 per row).
      value_fluctuation: relative Gaussian spread of each pixel's charge (0.10: the real
        subset's single-cell pixel clusters have charge / path length within +-0.10 at
        the 16th and 84th percentiles).
      hit_capacity: slots for particle hits (static; 0 means 12 per particle).
      long_cluster_capacity: slots for clusters longer than 8 rows (static; 0 means
        n_particles + n_noise / 4).
    """

    n_particles: int = 9000
    n_vertices: int = 140
    vertex_sigma_xy: float = 0.015
    vertex_sigma_z: float = 5.5
    eta_max: float = 4.0
    pt_min: float = 0.1
    pt_temperature: float = 0.147
    pt_power: float = 6.48
    secondary_fraction: float = 0.217
    secondary_pt_temperature: float = 0.093
    secondary_eta_sigma: float = 0.9
    b_field: float = 2.0
    hit_pt_min: float = 0.15
    max_turn: float = math.pi
    max_steps: int = 16
    multiple_scattering: bool = True
    energy_loss: bool = True
    material_factor: float = 1.0
    hit_efficiency: float = 1.0
    interaction_probability: float = 0.02
    n_noise: int = 17000
    max_cluster_rows: int = 40
    value_fluctuation: float = 0.10
    hit_capacity: int = 0
    long_cluster_capacity: int = 0

    def __post_init__(self):
        for name in ("n_particles", "n_vertices", "max_steps", "max_cluster_rows"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {v!r}.")
        for name in ("n_noise", "hit_capacity", "long_cluster_capacity"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"`{name}` must be a non-negative integer; got {v!r}.")
        for name in ("vertex_sigma_xy", "vertex_sigma_z", "material_factor",
                     "value_fluctuation"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"`{name}` must be finite and >= 0; got {v!r}.")
        for name in ("eta_max", "pt_min", "pt_temperature", "pt_power",
                     "secondary_pt_temperature", "secondary_eta_sigma", "b_field", "max_turn"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be finite and > 0; got {v!r}.")
        for name in ("secondary_fraction", "hit_efficiency", "interaction_probability"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]; got {v!r}.")
        if not self.hit_pt_min >= 0:
            raise ValueError(f"`hit_pt_min` must be >= 0; got {self.hit_pt_min!r}.")
        if self.n_particles - round(self.secondary_fraction * self.n_particles) < 1:
            raise ValueError("`secondary_fraction` leaves no primary particle.")
        if self.n_particles > 65535:
            raise ValueError("`n_particles` must fit the 16-bit primary_id (<= 65535).")

    @property
    def n_secondaries(self) -> int:
        """Number of secondary particles."""
        return round(self.secondary_fraction * self.n_particles)

    @property
    def capacity(self) -> int:
        """Slots reserved for particle hits."""
        return self.hit_capacity or 12 * self.n_particles

    @property
    def long_capacity(self) -> int:
        """Slots for clusters longer than the short digitisation pass."""
        return self.long_cluster_capacity or max(256, self.n_particles + self.n_noise // 4)


class Geometry(NamedTuple):
    """Device arrays of the detector used by the simulation kernel (float32)."""

    center: jax.Array  # (m, 3)
    rotation: jax.Array  # (m, 3, 3)
    thickness: jax.Array
    depth: jax.Array  # digitisation depth of the charge path (mm)
    min_hu: jax.Array
    max_hu: jax.Array
    hv: jax.Array
    pitch_u: jax.Array
    pitch_v: jax.Array
    lorentz: jax.Array  # tan of the Lorentz angle, per module
    value_scale: jax.Array  # charge per mm (0 for binary strips)
    noise_cdf: jax.Array  # (m,) cumulative probability of a noise hit per module
    secondary_cdf: jax.Array  # (m,) cumulative probability of a secondary vertex
    barrel: jax.Array  # (L,) bool
    position: jax.Array  # (L,)
    smin: jax.Array
    smax: jax.Array
    n_phi: jax.Array
    n_s: jax.Array
    offset: jax.Array
    grid: jax.Array  # (bins, K)


def _area(det: Detector) -> np.ndarray:
    return (det.min_hu + det.max_hu) * 2.0 * det.hv


@functools.cache
def _default_geometry() -> tuple[Detector, Layers]:
    det = read_detector()
    return det, build_layers(det)


def make_geometry(detector: Detector | None = None,
                  layers: Layers | None = None) -> tuple[Detector, Layers, Geometry]:
    """Detector, its layers and the kernel's device arrays (default: the real geometry).

    Example:
      >>> from jaxgen.data import trackml
      >>> detector, layers, geometry = trackml.make_geometry()     # the packaged real detector
      >>> int(detector.volume_id.shape[0])
      18728
    """
    if detector is None:
        detector, layers = _default_geometry()
    elif layers is None:
        layers = build_layers(detector)
    vol = detector.volume_id
    lorentz = np.zeros(len(vol), np.float32)
    for v, t in LORENTZ_TAN.items():
        lorentz[vol == v] = t
    scale = np.zeros(len(vol), np.float32)
    for v, s in PIXEL_VALUE_PER_MM.items():
        scale[vol == v] = s
    depth = np.asarray(detector.thickness, np.float64).copy()
    for v, f in DIGITIZATION_DEPTH.items():
        depth[vol == v] *= f
    area = _area(detector)
    noise_w = np.zeros(len(vol))
    counts = dict(zip(NOISE_VOLUMES, NOISE_VOLUME_COUNTS, strict=True))
    for v in np.unique(vol):
        m = vol == v
        noise_w[m] = counts.get(int(v), 0) * area[m] / area[m].sum()
    r = np.hypot(detector.center[:, 0], detector.center[:, 1])
    sec_w = area / np.maximum(r, 30.0)
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    geo = Geometry(
        center=f32(detector.center), rotation=f32(detector.rotation),
        thickness=f32(detector.thickness), depth=f32(depth), min_hu=f32(detector.min_hu),
        max_hu=f32(detector.max_hu), hv=f32(detector.hv), pitch_u=f32(detector.pitch_u),
        pitch_v=f32(detector.pitch_v), lorentz=f32(lorentz), value_scale=f32(scale),
        noise_cdf=f32(np.cumsum(noise_w) / noise_w.sum()),
        secondary_cdf=f32(np.cumsum(sec_w) / sec_w.sum()),
        barrel=jnp.asarray(layers.barrel), position=f32(layers.position),
        smin=f32(layers.smin), smax=f32(layers.smax), n_phi=jnp.asarray(layers.n_phi),
        n_s=jnp.asarray(layers.n_s), offset=jnp.asarray(layers.offset),
        grid=jnp.asarray(layers.grid),
    )
    return detector, layers, geo


# ----------------------------------------------------------------------------- source


def _tsallis_icdf(pt_min: float, temperature: float, power: float, n: int = 2048):
    """Tabulated inverse CDF of pT (1 + pT / (n T))^-n on [pt_min, 200 GeV]."""
    x = np.geomspace(pt_min, 200.0, 20001)
    f = x * np.exp(-power * np.log1p(x / (power * temperature)))
    cdf = np.r_[0.0, np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))]
    cdf /= cdf[-1]
    u = np.linspace(0.0, 1.0, n)
    return jnp.asarray(np.log(np.interp(u, cdf, x)), jnp.float32)


def _sample_module(key, cdf, n: int):
    """Module rows drawn from a cumulative distribution (inverse-CDF sampling)."""
    u = jax.random.uniform(key, (n,))
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)


def _sample_in_modules(key, geo: Geometry, idx):
    """Area-uniform local (u, v) points on modules ``idx`` (trapezoids)."""
    k1, k2 = jax.random.split(key)
    a = geo.min_hu[idx]
    length = 2.0 * geo.hv[idx]
    b = (geo.max_hu[idx] - a) / length
    c = a * length + 0.5 * b * length**2
    uu = jax.random.uniform(k1, idx.shape)
    y = 2.0 * uu * c / (a + jnp.sqrt(a * a + 2.0 * b * uu * c))
    v = y - geo.hv[idx]
    hu = a + b * y
    u = hu * jax.random.uniform(k2, idx.shape, minval=-1.0, maxval=1.0)
    return u, v


def _sample_particles(key, geo: Geometry, config: SimConfig):
    n = config.n_particles
    n_sec = config.n_secondaries
    n0 = n - n_sec
    ks = jax.random.split(key, 12)
    vtx_pos = jnp.concatenate([
        config.vertex_sigma_xy * jax.random.normal(ks[0], (config.n_vertices, 2)),
        config.vertex_sigma_z * jax.random.normal(ks[1], (config.n_vertices, 1)),
    ], 1)
    vtx = jax.random.randint(ks[2], (n0,), 0, config.n_vertices)
    icdf0 = _tsallis_icdf(config.pt_min, config.pt_temperature, config.pt_power)
    icdf1 = _tsallis_icdf(config.pt_min, config.secondary_pt_temperature, 1e8)
    grid = jnp.linspace(0.0, 1.0, icdf0.shape[0])
    pt0 = jnp.exp(jnp.interp(jax.random.uniform(ks[3], (n0,)), grid, icdf0))
    pt1 = jnp.exp(jnp.interp(jax.random.uniform(ks[4], (n_sec,)), grid, icdf1))
    eta0 = jax.random.uniform(ks[5], (n0,), minval=-config.eta_max, maxval=config.eta_max)
    eta1 = config.secondary_eta_sigma * jax.random.normal(ks[6], (n_sec,))
    phi = jax.random.uniform(ks[7], (n,), minval=-jnp.pi, maxval=jnp.pi)
    t0 = jax.random.choice(ks[8], len(PDG), (n0,), p=jnp.asarray(PRIMARY_TYPE_PROBS))
    t1 = jax.random.choice(ks[9], len(PDG), (n_sec,), p=jnp.asarray(SECONDARY_TYPE_PROBS))
    # Secondaries start on a module (material interaction), inner layers preferred.
    mod = _sample_module(ks[10], geo.secondary_cdf, n_sec)
    u, v = _sample_in_modules(ks[11], geo, mod)
    sec_pos = geo.center[mod] + geo.rotation[mod, :, 0] * u[:, None] \
        + geo.rotation[mod, :, 1] * v[:, None]
    parent = jnp.arange(n_sec) % n0
    gen = 1 + jax.random.choice(jax.random.fold_in(key, 1), 3, (n_sec,),
                                p=jnp.asarray([0.89, 0.10, 0.01]))
    proc = 1 + jax.random.randint(jax.random.fold_in(key, 2), (n_sec,), 0, 2)
    ptype = jnp.concatenate([t0, t1])
    pt = jnp.concatenate([pt0, pt1])
    eta = jnp.concatenate([eta0, eta1])
    pos = jnp.concatenate([vtx_pos[vtx], sec_pos], 0)
    return dict(
        pos=pos, pt=pt, eta=eta, phi=phi, type_index=ptype,
        vertex=jnp.concatenate([vtx, vtx[parent]]),
        primary=jnp.concatenate([jnp.arange(n0), parent]),
        generation=jnp.concatenate([jnp.zeros(n0, jnp.int32), gen]),
        process=jnp.concatenate([jnp.zeros(n0, jnp.int32), proc]),
        secondary=jnp.concatenate([jnp.zeros(n0, jnp.int32), 1 + jnp.arange(n_sec) // n0]),
    )


# -------------------------------------------------------------------------- propagation


def _helix_point(x, y, z, phi, cot, kappa, s):
    """Position and direction angle after transverse arc length ``s`` (any sign)."""
    b = kappa * s
    c, sn = jnp.cos(phi), jnp.sin(phi)
    f1 = s * jnp.sinc(b / jnp.pi)  # sin(b) / kappa
    half = jnp.sinc(b / (2 * jnp.pi))
    f2 = s * 0.5 * b * half * half  # (1 - cos b) / kappa
    return x + f1 * c - f2 * sn, y + f1 * sn + f2 * c, z + s * cot, phi + b


def _u_to_s(u, kappa):
    x = 0.5 * kappa * u
    small = jnp.abs(x) < 1e-4
    xs = jnp.where(small, 1.0, x)
    return jnp.where(small, u * (1.0 - x * x / 3.0), u * jnp.arctan(xs) / xs)


def _next_crossing(x, y, z, phi, cot, kappa, turn_left, geo: Geometry):
    """Transverse arc length and layer of the next ideal-surface crossing (inf: none)."""
    c, sn = jnp.cos(phi), jnp.sin(phi)
    a_par = (x * c + y * sn)[:, None]
    b_perp = (-x * sn + y * c)[:, None]
    r02 = (x * x + y * y)[:, None]
    k = kappa[:, None]
    pos = geo.position[None]
    s_max = jnp.minimum(jnp.pi / jnp.maximum(jnp.abs(kappa), 1e-12), turn_left
                        / jnp.maximum(jnp.abs(kappa), 1e-12))[:, None]
    # Cylinders: a u^2 + 2 A u - D = 0 with u = (2 / kappa) tan(kappa s / 2).
    delta = pos * pos - r02
    a = 1.0 + k * b_perp - 0.25 * k * k * delta
    disc = a_par * a_par + a * delta
    sq = jnp.sqrt(jnp.maximum(disc, 0.0))
    qq = -(a_par + jnp.where(a_par >= 0, sq, -sq))
    qq = jnp.where(qq == 0, 1e-30, qq)
    u1 = qq / jnp.where(a == 0, 1e-30, a)
    u2 = -delta / qq
    zc = z[:, None]
    cz = cot[:, None]
    outs = []
    for u in (u1, u2):
        s = _u_to_s(u, k)
        zz = zc + s * cz
        ok = (disc >= 0) & (s > EPS_STEP) & (s < s_max) & (zz >= geo.smin) & (zz <= geo.smax)
        outs.append(jnp.where(ok & geo.barrel[None], s, jnp.inf))
    # Disks.
    s = (pos - zc) / jnp.where(cz == 0, 1e-30, cz)
    ok = (s > EPS_STEP) & (s < s_max)
    xh = 0.5 * k * jnp.where(ok, s, 0.0)
    u = jnp.where(jnp.abs(xh) < 1e-4, s, s * jnp.tan(xh) / jnp.where(xh == 0, 1.0, xh))
    r2 = r02 + (2.0 * a_par * u + (1.0 + k * b_perp) * u * u) / (1.0 + 0.25 * k * k * u * u)
    r = jnp.sqrt(jnp.maximum(r2, 0.0))
    ok = ok & (r >= geo.smin) & (r <= geo.smax) & ~geo.barrel[None]
    outs.append(jnp.where(ok, s, jnp.inf))
    allc = jnp.minimum(jnp.minimum(outs[0], outs[1]), outs[2])
    layer = jnp.argmin(allc, 1)
    return jnp.min(allc, 1), layer


def _candidates(geo: Geometry, layer, x, y, z):
    barrel = geo.barrel[layer]
    s = jnp.where(barrel, z, jnp.hypot(x, y))
    phi = jnp.arctan2(y, x)
    n_phi, n_s = geo.n_phi[layer], geo.n_s[layer]
    smin, smax = geo.smin[layer], geo.smax[layer]
    ip = jnp.floor(phi / (2 * jnp.pi) * n_phi).astype(jnp.int32) % n_phi
    is_ = jnp.floor((s - smin) / (smax - smin) * n_s).astype(jnp.int32)
    outside = (is_ < 0) | (is_ >= n_s)
    cand = geo.grid[geo.offset[layer] + ip * n_s + jnp.clip(is_, 0, n_s - 1)]
    return jnp.where(outside[:, None], -1, cand)


class _Carry(NamedTuple):
    x: jax.Array
    y: jax.Array
    z: jax.Array
    phi: jax.Array
    cot: jax.Array
    p: jax.Array
    turn_left: jax.Array
    alive: jax.Array


def _propagate(key, geo: Geometry, config: SimConfig, start: _Carry, q, mass):
    """Scans layer crossings; returns per step up to 4 module hits per particle."""
    n_keep = 4
    qf = q.astype(jnp.float32)

    hadron = mass > 0.12  # pions, kaons, protons (not e, mu)

    def step(carry: _Carry, k):
        kk = jax.random.fold_in(key, k)
        k_eff, k_ms1, k_ms2, k_int = jax.random.split(kk, 4)
        sin_t = 1.0 / jnp.sqrt(1.0 + carry.cot**2)
        pt = carry.p * sin_t
        kappa = -qf * config.b_field * C_LIGHT / pt
        s, layer = _next_crossing(carry.x, carry.y, carry.z, carry.phi, carry.cot, kappa,
                                  carry.turn_left, geo)
        found = carry.alive & jnp.isfinite(s)
        s = jnp.where(found, s, 0.0)
        x, y, z, phi = _helix_point(carry.x, carry.y, carry.z, carry.phi, carry.cot, kappa, s)
        cand = _candidates(geo, layer, x, y, z)  # (n, K)
        idx = jnp.maximum(cand, 0)
        nrm = geo.rotation[idx, :, 2]  # (n, K, 3)
        cen = geo.center[idx]
        # Two Newton steps from the ideal crossing onto each candidate module plane.
        ds = jnp.zeros(cand.shape, jnp.float32)
        xb, yb, zb, phb = (a[:, None] for a in (x, y, z, phi))
        cotb, kb, sinb = carry.cot[:, None], kappa[:, None], sin_t[:, None]
        for _ in range(2):
            hx, hy, hz, hphi = _helix_point(xb, yb, zb, phb, cotb, kb, ds)
            d = jnp.stack([jnp.cos(hphi) * sinb, jnp.sin(hphi) * sinb, cotb * sinb
                           + 0.0 * hphi], -1)
            diff = cen - jnp.stack([hx, hy, hz], -1)
            nd = jnp.sum(nrm * d, -1)
            nd = jnp.where(jnp.abs(nd) < 1e-6, 1e-6, nd)
            ds = ds + jnp.sum(nrm * diff, -1) / nd * sinb
        hx, hy, hz, hphi = _helix_point(xb, yb, zb, phb, cotb, kb, ds)
        d = jnp.stack([jnp.cos(hphi) * sinb, jnp.sin(hphi) * sinb, cotb * sinb + 0.0 * hphi],
                      -1)
        pt3 = jnp.stack([hx, hy, hz], -1)
        rot = geo.rotation[idx]  # (n, K, 3, 3)
        loc = jnp.einsum("nkji,nkj->nki", rot, pt3 - cen)
        ldir = jnp.einsum("nkji,nkj->nki", rot, d)
        hv = geo.hv[idx]
        hu = geo.min_hu[idx] + (geo.max_hu[idx] - geo.min_hu[idx]) * (loc[..., 1] + hv) / (2 * hv)
        inside = (jnp.abs(loc[..., 0]) <= hu) & (jnp.abs(loc[..., 1]) <= hv) \
            & (jnp.abs(loc[..., 2]) < 1e-2)
        # The module crossing must lie after the step's start (never behind the vertex).
        crossed = (cand >= 0) & inside & found[:, None] & (jnp.abs(ds) < 200.0) \
            & (ds > EPS_STEP - s[:, None])
        recorded = crossed & jax.random.bernoulli(k_eff, config.hit_efficiency, cand.shape) \
            & (pt >= config.hit_pt_min)[:, None]
        # Keep the first n_keep recorded modules (a layer rarely has more than 4).
        rank = jnp.cumsum(recorded, axis=1) - 1
        onehot = recorded[:, :, None] & (rank[:, :, None] == jnp.arange(n_keep))  # (n, K, 4)

        def take(a):
            sel = onehot.reshape(onehot.shape + (1,) * (a.ndim - 2))
            return jnp.sum(jnp.where(sel, a[:, :, None], 0), axis=1).astype(a.dtype)

        out = dict(
            valid=onehot.any(1), module=take(cand), pos=take(pt3),
            mom=take(d) / sinb[:, :, None] * pt[:, None, None] / 1.0,
            local=take(loc[..., :2]), ldir=take(ldir),
        )
        # Material of every crossed module: multiple scattering and energy loss.
        path = jnp.where(crossed, geo.thickness[idx] / jnp.maximum(jnp.abs(
            jnp.sum(nrm * d, -1)), 1e-3), 0.0).sum(1) * config.material_factor
        energy = jnp.sqrt(carry.p**2 + mass**2)
        beta = carry.p / energy
        stops = hadron & crossed.any(1) & jax.random.bernoulli(
            k_int, config.interaction_probability, found.shape)
        alive = found & ~stops
        p_new = carry.p
        if config.energy_loss:
            e_new = energy - DEDX_SILICON * path * jnp.minimum(1.0 / beta**2, 10.0)
            alive = alive & (e_new > mass * 1.0001)
            p_new = jnp.sqrt(jnp.maximum(e_new**2 - mass**2, 1e-12))
        phi_new, cot_new = phi, carry.cot
        if config.multiple_scattering:
            xx0 = path / X0_SILICON
            theta0 = 13.6e-3 / (beta * carry.p) * jnp.sqrt(xx0) * (
                1.0 + 0.038 * jnp.log(jnp.maximum(xx0 / beta**2, 1e-12)))
            theta0 = jnp.where(xx0 > 0, jnp.maximum(theta0, 0.0), 0.0)
            a1 = theta0 * jax.random.normal(k_ms1, theta0.shape)
            a2 = theta0 * jax.random.normal(k_ms2, theta0.shape)
            cos_t = carry.cot * sin_t
            dx = jnp.cos(phi) * sin_t + a1 * cos_t * jnp.cos(phi) - a2 * jnp.sin(phi)
            dy = jnp.sin(phi) * sin_t + a1 * cos_t * jnp.sin(phi) + a2 * jnp.cos(phi)
            dz = cos_t - a1 * sin_t
            phi_new = jnp.arctan2(dy, dx)
            cot_new = dz / jnp.hypot(dx, dy)
        new = _Carry(
            x=x, y=y, z=z, phi=phi_new, cot=cot_new, p=jnp.where(alive, p_new, carry.p),
            turn_left=carry.turn_left - jnp.abs(kappa * s), alive=alive,
        )
        return new, out

    _, outs = jax.lax.scan(step, start, jnp.arange(config.max_steps))
    return outs


# ------------------------------------------------------------------------ digitisation


def _digitize(key, geo: Geometry, module, local, ldir, rows: int, fluct: float):
    """Cells lit by the straight path through the sensor; measured local position.

    Args:
      key: PRNG key of the charge fluctuations.
      geo: device geometry.
      module: ``(h,)`` module rows.
      local: ``(h, 2)`` true (u, v) at the mid-plane.
      ldir: ``(h, 3)`` local direction.
      rows: cell rows along the cluster's longer direction (2 cells per row).
      fluct: relative Gaussian spread of the pixel charge.

    Returns:
      ch0, ch1, value ``(h, 2 * rows)`` (value 0 = no cell), measured ``(h, 2)`` and
      ``(h,)`` whether the cluster is longer than ``rows`` (then truncated).
    """
    t = geo.depth[module]
    pu, pv = geo.pitch_u[module], geo.pitch_v[module]
    mhu, hv = geo.max_hu[module], geo.hv[module]
    lam = geo.lorentz[module]
    scale = geo.value_scale[module]
    dw = ldir[:, 2]
    dw = jnp.where(jnp.abs(dw) < 1e-3, jnp.where(dw < 0, -1e-3, 1e-3), dw)
    su, sv = ldir[:, 0] / dw, ldir[:, 1] / dw
    length = jnp.minimum(t / jnp.abs(dw), 100.0)
    u, v = local[:, 0], local[:, 1]
    # Entry (w = -t/2) and exit (w = +t/2) in cell units, exit drifted by lam * t.
    a0 = (u - 0.5 * su * t + mhu) / pu
    a1 = (u + 0.5 * su * t + lam * t + mhu) / pu
    b0 = (v - 0.5 * sv * t + hv) / pv
    b1 = (v + 0.5 * sv * t + hv) / pv
    swap = jnp.abs(b1 - b0) > jnp.abs(a1 - a0)
    d0, d1 = jnp.where(swap, b0, a0), jnp.where(swap, b1, a1)
    o0, o1 = jnp.where(swap, a0, b0), jnp.where(swap, a1, b1)
    flip = d1 < d0
    d0, d1, o0, o1 = (jnp.where(flip, d1, d0), jnp.where(flip, d0, d1),
                      jnp.where(flip, o1, o0), jnp.where(flip, o0, o1))
    dd = d1 - d0
    thin = dd < 1e-6
    slope = jnp.where(thin, 0.0, (o1 - o0) / jnp.where(thin, 1.0, dd))
    # A cluster longer than ``rows`` keeps its central rows, so its centroid stays unbiased.
    first_row = jnp.where(jnp.floor(d1) - jnp.floor(d0) + 1.0 > rows,
                          jnp.floor(0.5 * (d0 + d1)) - rows // 2, jnp.floor(d0))
    k = first_row[:, None] + jnp.arange(rows, dtype=jnp.float32)[None]
    lo = jnp.maximum(d0[:, None], k)
    hi = jnp.minimum(d1[:, None], k + 1.0)
    frac = jnp.where(thin[:, None], (k == jnp.floor(d0)[:, None]).astype(jnp.float32),
                     jnp.maximum(hi - lo, 0.0) / jnp.where(thin, 1.0, dd)[:, None])
    o_lo = o0[:, None] + (lo - d0[:, None]) * slope[:, None]
    o_hi = o0[:, None] + (jnp.maximum(hi, lo) - d0[:, None]) * slope[:, None]
    omin, omax = jnp.minimum(o_lo, o_hi), jnp.maximum(o_lo, o_hi)
    c1 = jnp.floor(omin)
    two = jnp.floor(omax) > c1
    f1 = jnp.where(two, (c1 + 1.0 - omin) / jnp.where(two, omax - omin, 1.0), 1.0)
    kk = jnp.concatenate([k, k], 1)
    cc = jnp.concatenate([c1, c1 + 1.0], 1)
    ff = jnp.concatenate([frac * f1, jnp.where(two, frac * (1.0 - f1), 0.0)], 1)
    ch0 = jnp.where(swap[:, None], cc, kk)
    ch1 = jnp.where(swap[:, None], kk, cc)
    n_u = jnp.round(2.0 * mhu / pu)[:, None]
    n_v = jnp.round(2.0 * hv / pv)[:, None]
    ok = (ff > 1e-7) & (ch0 >= 0) & (ch0 < n_u) & (ch1 >= 0) & (ch1 < n_v)
    noise = 1.0 + fluct * jax.random.normal(key, ff.shape)
    pixel = scale[:, None] > 0
    value = jnp.where(pixel, ff * length[:, None] * scale[:, None] * jnp.maximum(noise, 0.1),
                      1.0)
    value = jnp.where(ok, value, 0.0)
    # A path whose charge drifted entirely off the sensor edge still lights its edge cell.
    none = ~ok.any(1)
    mid0 = jnp.clip(jnp.floor((u + mhu) / pu), 0, n_u[:, 0] - 1)
    mid1 = jnp.clip(jnp.floor((v + hv) / pv), 0, n_v[:, 0] - 1)
    first = (jnp.arange(ff.shape[1]) == 0)[None] & none[:, None]
    ch0 = jnp.where(first, mid0[:, None], ch0)
    ch1 = jnp.where(first, mid1[:, None], ch1)
    value = jnp.where(first, jnp.where(scale > 0, length * scale, 1.0)[:, None], value)
    wsum = value.sum(1)
    safe = jnp.where(wsum > 0, wsum, 1.0)
    cu = ((ch0 + 0.5) * pu[:, None] - mhu[:, None]) * value
    cv = ((ch1 + 0.5) * pv[:, None] - hv[:, None]) * value
    mu = jnp.where(wsum > 0, cu.sum(1) / safe - 0.5 * lam * t, u)
    mv = jnp.where(wsum > 0, cv.sum(1) / safe, v)
    n_rows = jnp.floor(d1) - jnp.floor(d0) + 1.0
    return (ch0.astype(jnp.int32), ch1.astype(jnp.int32), value, jnp.stack([mu, mv], 1),
            n_rows > rows)


# ------------------------------------------------------------------------------ kernel


def _to_global(geo: Geometry, module, uv):
    return geo.center[module] + geo.rotation[module, :, 0] * uv[:, :1] \
        + geo.rotation[module, :, 1] * uv[:, 1:2]


@functools.partial(jax.jit, static_argnames=("config",))
def simulate_arrays(key: jax.Array, geo: Geometry, config: SimConfig) -> dict:
    """The jit-compiled simulation kernel: fixed-size arrays of one event.

    Args:
      key: PRNG key.
      geo: device geometry from ``make_geometry``.
      config: settings (static).

    Returns:
      A dict of arrays: particle columns ``(n_particles,)``; particle hits padded to
      ``config.capacity`` (``n_hits`` are valid); noise hits ``(n_noise,)``; cells
      ``(capacity + n_noise, 2 * max_cluster_rows)`` (value 0 = no cell).
    """
    k_src, k_prop, k_noise, k_dig = jax.random.split(key, 4)
    src = _sample_particles(k_src, geo, config)
    type_index = src["type_index"]
    q = jnp.asarray(CHARGE)[type_index]
    mass = jnp.asarray(MASS)[type_index]
    eta, phi, pt = src["eta"], src["phi"], src["pt"]
    cot = jnp.sinh(eta)
    p = pt * jnp.cosh(eta)
    start = _Carry(x=src["pos"][:, 0], y=src["pos"][:, 1], z=src["pos"][:, 2], phi=phi,
                   cot=cot, p=p, turn_left=jnp.full(pt.shape, config.max_turn),
                   alive=jnp.ones(pt.shape, bool))
    outs = _propagate(k_prop, geo, config, start, q, mass)
    steps, n, keep = outs["valid"].shape
    valid = outs["valid"].reshape(-1)
    cap = config.capacity
    (slot,) = jnp.nonzero(valid, size=cap, fill_value=0)
    n_hits = valid.sum()
    def flat(a):
        return a.reshape((steps * n * keep,) + a.shape[3:])[slot]

    particle = (jnp.arange(steps * n * keep) // keep) % n
    module = flat(outs["module"])
    local = flat(outs["local"])
    ldir = flat(outs["ldir"])
    # Noise: module by volume weight and area, point area-uniform, random direction.
    kn = jax.random.split(k_noise, 5)
    nmod = _sample_module(kn[0], geo.noise_cdf, config.n_noise)
    nu, nv = _sample_in_modules(kn[1], geo, nmod)
    cos_a = jax.random.uniform(kn[2], (config.n_noise,), minval=0.5, maxval=1.0)
    az = jax.random.uniform(kn[3], (config.n_noise,), minval=-jnp.pi, maxval=jnp.pi)
    sin_a = jnp.sqrt(1.0 - cos_a**2)
    ndir = jnp.stack([sin_a * jnp.cos(az), sin_a * jnp.sin(az), cos_a], 1)
    all_mod = jnp.concatenate([module, nmod])
    all_local = jnp.concatenate([local, jnp.stack([nu, nv], 1)])
    all_dir = jnp.concatenate([ldir, ndir])
    # Two passes: every hit with a few rows, then the long clusters with all rows.
    k_short, k_long = jax.random.split(k_dig)
    ch0, ch1, value, meas, long = _digitize(k_short, geo, all_mod, all_local, all_dir,
                                            SHORT_ROWS, config.value_fluctuation)
    real = jnp.concatenate([jnp.arange(cap) < n_hits, jnp.ones(config.n_noise, bool)])
    long = long & real
    n_long = long.sum()
    (li,) = jnp.nonzero(long, size=config.long_capacity, fill_value=0)
    l_ch0, l_ch1, l_value, l_meas, _ = _digitize(k_long, geo, all_mod[li], all_local[li],
                                                 all_dir[li], config.max_cluster_rows,
                                                 config.value_fluctuation)
    used = jnp.arange(config.long_capacity) < n_long
    meas = meas.at[jnp.where(used, li, meas.shape[0])].set(l_meas, mode="drop")
    return dict(
        vertex=src["vertex"], primary=src["primary"], generation=src["generation"],
        process=src["process"], secondary=src["secondary"], type_index=type_index,
        q=q, pos=src["pos"], mom=jnp.stack([pt * jnp.cos(phi), pt * jnp.sin(phi), pt * cot], 1),
        n_hits=n_hits, hit_particle=particle[slot], hit_module=module,
        hit_true=flat(outs["pos"]), hit_mom=flat(outs["mom"]),
        noise_module=nmod, noise_true=_to_global(geo, nmod, jnp.stack([nu, nv], 1)),
        measured=_to_global(geo, all_mod, meas), ch0=ch0, ch1=ch1, value=value,
        long=long, n_long=n_long, long_index=li, long_ch0=l_ch0, long_ch1=l_ch1,
        long_value=l_value,
    )


def _assemble(arrays: dict, detector: Detector, config: SimConfig, event_id: int) -> Event:
    """Compacts the kernel's padded arrays into an ``Event`` (host, numpy)."""
    a = {k: np.asarray(v) for k, v in arrays.items()}
    n_hits = int(a["n_hits"])
    cap = config.capacity
    n_noise = config.n_noise
    keep = np.r_[np.arange(n_hits), cap + np.arange(n_noise)]
    module = np.r_[a["hit_module"][:n_hits], a["noise_module"]]
    part = np.r_[a["hit_particle"][:n_hits], np.full(n_noise, -1)]
    true = np.concatenate([a["hit_true"][:n_hits], a["noise_true"]])
    mom = np.concatenate([a["hit_mom"][:n_hits], np.zeros((n_noise, 3), np.float32)])
    meas = a["measured"][keep]
    order = np.argsort(module, kind="stable")
    module, part, true, mom, meas = module[order], part[order], true[order], mom[order], \
        meas[order]
    src_row = keep[order]
    n = len(order)
    hit_id = np.arange(1, n + 1, dtype=np.int32)
    pid = encode_particle_id(a["vertex"] + 1, a["primary"] + 1, a["generation"],
                             a["secondary"], a["process"])
    hit_pid = np.where(part >= 0, pid[np.maximum(part, 0)], 0)
    nhits = np.bincount(part[part >= 0], minlength=len(pid)).astype(np.int32)
    mom_p = a["mom"]
    w = hit_weights(hit_pid, true[:, 2], pid, a["pos"][:, 2], mom_p[:, 0], mom_p[:, 1])
    hits = Hits(hit_id=hit_id, x=meas[:, 0].astype(np.float32),
                y=meas[:, 1].astype(np.float32), z=meas[:, 2].astype(np.float32),
                volume_id=detector.volume_id[module], layer_id=detector.layer_id[module],
                module_id=detector.module_id[module])
    # Cells: short pass for ordinary hits, long pass for long clusters.
    row_of = np.full(cap + n_noise, -1, np.int64)
    row_of[src_row] = np.arange(n)
    n_long = int(a["n_long"])
    long_src = a["long_index"][:n_long]
    short_ok = (a["value"] > 0) & ~a["long"][:, None] & (row_of >= 0)[:, None]
    r_s, c_s = np.nonzero(short_ok)
    lv = a["long_value"][:n_long]
    long_ok = (lv > 0) & (row_of[long_src] >= 0)[:, None]
    r_l, c_l = np.nonzero(long_ok)
    hit_row = np.r_[row_of[r_s], row_of[long_src][r_l]]
    ch0 = np.r_[a["ch0"][r_s, c_s], a["long_ch0"][:n_long][r_l, c_l]]
    ch1 = np.r_[a["ch1"][r_s, c_s], a["long_ch1"][:n_long][r_l, c_l]]
    val = np.r_[a["value"][r_s, c_s], lv[r_l, c_l]]
    corder = np.lexsort((ch0, ch1, hit_row))
    cells = Cells(hit_id=hit_id[hit_row[corder]], ch0=ch0[corder].astype(np.int32),
                  ch1=ch1[corder].astype(np.int32), value=val[corder].astype(np.float32))
    particles = Particles(
        particle_id=pid, particle_type=PDG[a["type_index"]],
        vx=a["pos"][:, 0].astype(np.float32), vy=a["pos"][:, 1].astype(np.float32),
        vz=a["pos"][:, 2].astype(np.float32), px=mom_p[:, 0].astype(np.float32),
        py=mom_p[:, 1].astype(np.float32), pz=mom_p[:, 2].astype(np.float32),
        q=a["q"].astype(np.int32), nhits=nhits,
    )
    truth = Truth(hit_id=hit_id, particle_id=hit_pid.astype(np.int64),
                  tx=true[:, 0].astype(np.float32), ty=true[:, 1].astype(np.float32),
                  tz=true[:, 2].astype(np.float32), tpx=mom[:, 0].astype(np.float32),
                  tpy=mom[:, 1].astype(np.float32), tpz=mom[:, 2].astype(np.float32),
                  weight=w.astype(np.float32))
    return Event(int(event_id), hits, cells, particles, truth)


def simulate_event(key: jax.Array, config: SimConfig = SimConfig(), *, event_id: int = 0,
                   detector: Detector | None = None) -> Event:
    """Simulates one TrackML-like event (the arrays ``read_event`` returns).

    Args:
      key: PRNG key; the event is a pure function of it (and of the config).
      config: simulation settings.
      event_id: the event number written into file names.
      detector: geometry (default: the packaged real TrackML detector).

    Returns:
      An ``Event`` with hits, cells, particles and truth (weights normalised to 1).

    Raises:
      ValueError: if the hits overflow ``config.hit_capacity`` (raise it).

    Example:
      >>> import jax
      >>> from jaxgen.data.trackml import SimConfig, simulate_event
      >>> ev = simulate_event(jax.random.key(0), SimConfig(n_particles=20, n_noise=0))
      >>> int(ev.hits.hit_id[0])
      1
    """
    detector, _, geo = make_geometry(detector)
    arrays = simulate_arrays(key, geo, config)
    check_capacity(arrays, config)
    return _assemble(arrays, detector, config, event_id)


def check_capacity(arrays: dict, config: SimConfig) -> None:
    """Raises ``ValueError`` if the kernel's hits or long clusters overflowed their slots."""
    if int(arrays["n_hits"]) > config.capacity:
        raise ValueError(
            f"{int(arrays['n_hits'])} particle hits overflow `hit_capacity` "
            f"{config.capacity}; raise it."
        )
    if int(arrays["n_long"]) > config.long_capacity:
        raise ValueError(
            f"{int(arrays['n_long'])} long clusters overflow `long_cluster_capacity` "
            f"{config.long_capacity}; raise it."
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write N simulated events in the challenge's format."""
    ap = argparse.ArgumentParser(prog="python -m jaxgen.data.trackml.simulate",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, required=True, help="number of events")
    ap.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first-event", type=int, default=1000, help="id of the first event")
    ap.add_argument("--particles", type=int, default=SimConfig.n_particles)
    ap.add_argument("--noise", type=int, default=SimConfig.n_noise)
    ap.add_argument("--gzip", action="store_true", help="write .csv.gz files")
    args = ap.parse_args(argv)
    if args.events < 1:
        print("error: --events must be >= 1", file=sys.stderr)
        return 2
    config = SimConfig(n_particles=args.particles, n_noise=args.noise)
    key = jax.random.key(args.seed)
    for i in range(args.events):
        ev = simulate_event(jax.random.fold_in(key, i), config,
                            event_id=args.first_event + i)
        prefix = write_event(args.out, ev, compress=args.gzip)
        print(f"{prefix}: {len(ev.hits.hit_id)} hits, {len(ev.particles.particle_id)} "
              "particles", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
