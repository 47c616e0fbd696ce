r"""A fast synthetic stand-in for the LHC Olympics 2020 R&D dijet data (arXiv:2101.08320).

QCD dijet background and the R&D signal W' -> X Y -> (qq)(qq) (m_W' = 3.5 TeV,
m_X = 500 GeV, m_Y = 100 GeV), each event reduced to the dijet mass ``mjj`` and the
standard features of CATHODE (arXiv:2109.00546) and CURTAINs (arXiv:2203.09470):

``FEATURES = (m_J1, Delta m_J, tau21_J1, tau21_J2, Delta R_jj)``

with J1 the lighter jet, ``Delta m_J = m_J2 - m_J1 >= 0`` (TeV). No published
parametrisation exists; this follows the calibrated recipe of the project's algorithm
notes (``classifier_methods.md`` section 10a), which is a calibration, not a paper result:

- background mjj: :math:`p(m) \propto \tfrac12[1 + \mathrm{erf}((m - 2.6)/(\sqrt2\,0.12))]
  \, m^{-6.48}` on [1.5, 9] TeV (trigger turn-on times a power law), sampled by inverse
  CDF from a float64 table; P(SR 3.3-3.7) = 0.1215, peak 2.72 TeV;
- background jet masses: two log-normal draws, median ``0.07 (mjj / 3.5)^gamma`` TeV
  (jet masses scale with p_T; ``gamma = mass_exponent``, 1 by default), log-width 0.7;
  m_J1 and m_J2 are their order statistics; tau21 ~ Beta(6, 3) times
  ``1 - 0.065 m / (m + 0.1)`` (mean 0.650, falling mildly with the jet mass);
- signal mjj: 90 % Gaussian core N(3.52, 0.15) and a 10 % low-side (FSR) exponential tail of
  scale 0.4 TeV (truncated at 1.5 TeV); 77.5 % of the signal lies in the SR (section 10a:
  77 %; the R&D file: 76.3 %);
- signal jets: N(0.100, 0.012) and N(0.500, 0.040) TeV, each with a 10 % low tail (mass
  times U(0.1, 1)); tau21 ~ Beta(4, 8) (two-prong, mean 0.33);
- the "Beta(a, b)" tau21 laws are drawn as Kumaraswamy laws with the same mean and
  variance (one uniform per value by inverse CDF; ``jax.random.beta``'s Gamma
  rejection sampler made the generator ~3x slower on CPU);
- Delta R_jj = sqrt(Delta phi^2 + Delta eta^2) with Delta phi = pi - 0.4 |z1| and
  |Delta eta| = s(mjj) |z2|, s = max(1.9 + 1.7 ln(mjj / 3.5), 0.1) for the background
  (fitted here to the mean Delta R_jj per mjj bin of the first 100k R&D events, within
  0.02) and 0.8 s for the more central s-channel signal.

Measured against the real R&D events (``lhco.load_full_mjj``), this stand-in is cruder
than the data: the real background jet masses are about twice as heavy (median m_J1
0.10 TeV) and scale much more weakly with mjj (gamma ~ 0.2), and the real P(SR) in the
first 100k events is 0.142. Pass ``mass_exponent`` to change the mjj dependence.

Two stress tests of the papers are built in:

- ``distortion``: a "simulation" background whose features differ from the "data"
  (SALAD's Pythia vs Herwig, arXiv:2009.02205): jet-mass scale and width, a tau21 shift
  and an mjj-dependent mass scale (``Distortion``; ``SIMULATION`` is the default one);
- ``shift``: the correlation test of SALAD and CATHODE's ``--datashift``: m_J1 and
  Delta m_J both increased by ``s mjj`` (``STRESS_SHIFT = 0.1``), see ``apply_shift``.

Every sampler is a pure function of its key, jit-compiled with the event counts static.
All variates are transforms of one ``(k, n)`` block of uniforms in ``[eps, 1 - eps]``
(float32 eps), so Gaussian draws are truncated at about 5.3 sigma.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erf
from scipy.special import ndtr

from jaxgen._checks import check_array
from jaxgen.data.dijets.regions import Regions

FEATURES = ("m_j1", "delta_m_j", "tau21_j1", "tau21_j2", "delta_r_jj")
"""Column names of ``DijetEvents.features`` (the first four are CATHODE's)."""

STRESS_SHIFT = 0.1
"""The s of the s * mjj correlation stress test (SALAD, arXiv:2009.02205; CATHODE)."""

MJJ_RANGE = (1.5, 9.0)
"""Support of the synthetic background mjj (TeV)."""

# Signal mjj: Gaussian core and a low-side exponential tail (see the module docstring).
_SIG_MU, _SIG_SIGMA, _SIG_TAIL_FRAC, _SIG_TAIL_SCALE = 3.52, 0.15, 0.10, 0.40
# The tail is truncated at the lower end of the background support.
_SIG_TAIL_MAX = _SIG_MU - MJJ_RANGE[0]
# Background jets.
_BKG_MASS_MEDIAN, _BKG_MASS_LOGWIDTH, _MJJ_REF = 0.07, 0.7, 3.5


class DijetEvents(NamedTuple):
    """A sample of dijet events (a pytree: jit, vmap and ``regions.select`` apply).

    Attributes:
      mjj: ``(n,)`` dijet invariant mass, TeV.
      features: ``(n, d)`` features in the order of ``FEATURES`` (``d = 5``; the CATHODE
        signal-region files have only the first four, ``d = 4``).
      labels: ``(n,)`` int32, 1 for signal and 0 for background (truth; methods that
        are weakly supervised must not use it).
    """

    mjj: jax.Array
    features: jax.Array
    labels: jax.Array


class Distortion(NamedTuple):
    """How the "simulation" background's jets differ from the "data" ones.

    Attributes:
      mass_scale: factor on both jet masses at mjj = 3.5 TeV.
      mass_width: factor on the log-normal width of the jet masses.
      tau21_shift: added to both tau21 (then clipped to [0, 1]).
      mass_exponent: added to the exponent of the mass scale's mjj dependence, so the
        data/simulation ratio depends on mjj (what SALAD's parametrised reweighting has to
        interpolate from the sidebands into the SR).
    """

    mass_scale: float = 1.0
    mass_width: float = 1.0
    tau21_shift: float = 0.0
    mass_exponent: float = 0.0


NO_DISTORTION = Distortion()
"""The "data" background itself."""

SIMULATION = Distortion(mass_scale=1.1, mass_width=1.1, tau21_shift=0.03, mass_exponent=0.2)
"""The default "simulation" background (a Herwig-vs-Pythia sized difference, our choice)."""


# --- background mjj: inverse-CDF table --------------------------------------------------


def _mjj_density(m: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + erf((m - 2.6) / (math.sqrt(2.0) * 0.12))) * m ** (-6.48)


@functools.cache
def _mjj_table() -> tuple[np.ndarray, np.ndarray]:
    """(grid, cdf) of the background mjj, float64, 2^16 + 1 points (geometric grid)."""
    grid = np.geomspace(*MJJ_RANGE, 2**16 + 1)
    p = _mjj_density(grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
    return grid, cdf / cdf[-1]


def background_fraction(lo: float, hi: float) -> float:
    """Probability that a synthetic background event has ``lo <= mjj < hi`` (TeV).

    Example:
      >>> round(background_fraction(3.3, 3.7), 3)
      0.121
    """
    grid, cdf = _mjj_table()
    return float(np.interp(hi, grid, cdf) - np.interp(lo, grid, cdf))


def signal_fraction(lo: float, hi: float) -> float:
    """Probability that a synthetic signal event has ``lo <= mjj < hi`` (TeV), analytic.

    Example:
      >>> round(signal_fraction(3.3, 3.7), 3)
      0.775
    """
    core = ndtr((hi - _SIG_MU) / _SIG_SIGMA) - ndtr((lo - _SIG_MU) / _SIG_SIGMA)
    # Tail: mjj = mu - E, E ~ Exp(scale) truncated to [0, E_max];
    # P(lo <= mjj < hi) = F(mu - lo) - F(mu - hi), F the truncated CDF of E.
    def cdf(e):
        e = min(max(e, 0.0), _SIG_TAIL_MAX)
        return -math.expm1(-e / _SIG_TAIL_SCALE) / -math.expm1(-_SIG_TAIL_MAX / _SIG_TAIL_SCALE)
    tail = cdf(_SIG_MU - lo) - cdf(_SIG_MU - hi)
    return float((1.0 - _SIG_TAIL_FRAC) * core + _SIG_TAIL_FRAC * tail)


def signal_count(n_background: int, s_over_b: float, regions: Regions | None = None) -> int:
    """Signal events to inject into ``n_background`` so that S/B in the SR is ``s_over_b``.

    ``n_s = round(s_over_b * n_b * P_B(SR) / P_S(SR))``, the expectation; CATHODE's default
    injection (S/B = 6.36e-3 in the SR) is 1000 signal events per million background.

    Example:
      >>> signal_count(1_000_000, 6.36e-3)
      997
    """
    if s_over_b < 0 or not math.isfinite(s_over_b):
        raise ValueError(f"`s_over_b` must be >= 0; got {s_over_b!r}.")
    if n_background < 0:
        raise ValueError(f"`n_background` must be >= 0; got {n_background!r}.")
    r = Regions() if regions is None else regions
    return int(round(s_over_b * n_background * background_fraction(*r.sr)
                     / signal_fraction(*r.sr)))


# --- samplers ---------------------------------------------------------------------------


# Kumaraswamy (a, b) with the mean and variance of Beta(6, 3) and Beta(4, 8), solved
# from E[X^k] = b B(1 + k / a, b) with scipy.optimize.fsolve (moments match to 1e-12).
_KUMARASWAMY = {(6, 3): (4.57950744, 3.61285587), (4, 8): (2.63904508, 12.60624109)}


def _beta_like(u, a: int, b: int):
    """Kumaraswamy variate with Beta(a, b)'s mean and variance: x = (1 - (1-u)^(1/b'))^(1/a')."""
    ka, kb = _KUMARASWAMY[(a, b)]
    return (-jnp.expm1(jnp.log1p(-u) / kb)) ** (1.0 / ka)


def _uniforms(key, k, n):
    """``(k, n)`` uniforms in (0, 1) from one PRNG call.

    Every variate below is a transform of these (normals by ``ndtri``, exponentials by
    ``-log``): one threefry program instead of one per draw compiles ~3x faster on CPU.
    """
    # Open interval: erf_inv(-1) and log(0) would be infinite.
    eps = float(jnp.finfo(jnp.float32).eps)
    return jax.random.uniform(key, (k, n), minval=eps, maxval=1.0 - eps)


def ndtri(u):
    """Standard-normal quantile, as ``jax.random.normal`` computes it (faster than ndtri)."""
    return math.sqrt(2.0) * jax.lax.erf_inv(2.0 * u - 1.0)


def _delta_r(u1, u2, mjj, scale):
    s = scale * jnp.maximum(1.9 + 1.7 * jnp.log(mjj / _MJJ_REF), 0.1)
    dphi = jnp.pi - 0.4 * jnp.abs(ndtri(u1))
    deta = s * jnp.abs(ndtri(u2))
    return jnp.sqrt(dphi**2 + deta**2)


def _order(ma, mb, ta, tb):
    light = ma <= mb
    m1, m2 = jnp.minimum(ma, mb), jnp.maximum(ma, mb)
    t1, t2 = jnp.where(light, ta, tb), jnp.where(light, tb, ta)
    return [m1, m2 - m1, t1, t2]


def _background(key, n, mass_exponent, d: Distortion, table):
    u = _uniforms(key, 7, n)
    grid, cdf = table
    mjj = jnp.interp(u[0], cdf, grid)
    median = (_BKG_MASS_MEDIAN * d.mass_scale
              * (mjj / _MJJ_REF) ** (mass_exponent + d.mass_exponent))
    m = median * jnp.exp(_BKG_MASS_LOGWIDTH * d.mass_width * ndtri(u[1:3]))
    m = jnp.minimum(m, 0.5 * mjj)
    tau = _beta_like(u[3:5], 6, 3) * (1.0 - 0.065 * m / (m + 0.1))
    tau = jnp.clip(tau + d.tau21_shift, 0.0, 1.0)
    cols = _order(m[0], m[1], tau[0], tau[1]) + [_delta_r(u[5], u[6], mjj, 1.0)]
    return mjj, jnp.stack(cols, axis=-1)


def _signal(key, n):
    u = _uniforms(key, 11, n)
    core = _SIG_MU + _SIG_SIGMA * ndtri(u[0])
    # Inverse CDF of the truncated exponential: E = -scale log(1 - u (1 - e^{-E_max/scale})).
    e = -_SIG_TAIL_SCALE * jnp.log1p(-u[2] * -math.expm1(-_SIG_TAIL_MAX / _SIG_TAIL_SCALE))
    mjj = jnp.where(u[1] < _SIG_TAIL_FRAC, _SIG_MU - e, core)
    mean = jnp.array([0.100, 0.500])[:, None]
    width = jnp.array([0.012, 0.040])[:, None]
    m = mean + width * ndtri(u[3:5])
    # 10 % low tail: mass times U(0.1, 1); u[5:7] < 0.1 selects it, and u[5:7] / 0.1 is
    # then itself uniform on (0, 1).
    low = u[5:7] < 0.1
    m = jnp.where(low, m * (0.1 + 0.9 * u[5:7] / 0.1), m)
    m = jnp.maximum(m, 1e-3)
    tau = _beta_like(u[7:9], 4, 8)
    cols = _order(m[0], m[1], tau[0], tau[1]) + [_delta_r(u[9], u[10], mjj, 0.8)]
    return mjj, jnp.stack(cols, axis=-1)


def apply_shift(events: DijetEvents, s: float = STRESS_SHIFT) -> DijetEvents:
    """The correlation stress test: m_J1 and Delta m_J each increased by ``s * mjj`` (TeV).

    As SALAD (arXiv:2009.02205) and CATHODE's ``apply_shift_to_dataset`` do; applies to
    synthetic and real events alike. Jit-able.

    Example:
      >>> import jax.numpy as jnp
      >>> ev = DijetEvents(jnp.array([3.5]), jnp.zeros((1, 4)), jnp.zeros(1, jnp.int32))
      >>> [round(v, 4) for v in apply_shift(ev).features[0, :2].tolist()]
      [0.35, 0.35]
    """
    shift = s * events.mjj
    f = events.features.at[:, 0].add(shift).at[:, 1].add(shift)
    return events._replace(features=f)


@functools.partial(jax.jit, static_argnames=("n_background", "n_signal"))
def _generate(key, n_background, n_signal, shift, mass_exponent, distortion, table):
    kb, ks, kp = jax.random.split(key, 3)
    mb, fb = _background(kb, n_background, mass_exponent, distortion, table)
    ms, fs = _signal(ks, n_signal)
    ev = DijetEvents(
        jnp.concatenate([mb, ms]),
        jnp.concatenate([fb, fs]),
        jnp.concatenate([jnp.zeros(n_background, jnp.int32), jnp.ones(n_signal, jnp.int32)]),
    )
    # Shuffle so that the order of the events carries no label information (k-folds).
    # One sort of random bits (ties, ~n^2 / 2^33 pairs, keep their order): ~4x faster on
    # CPU than jax.random.permutation's several sorting rounds.
    perm = jnp.argsort(jax.random.bits(kp, (n_background + n_signal,)))
    ev = jax.tree_util.tree_map(lambda a: a[perm], ev)
    return apply_shift(ev, shift)


def generate(
    key: jax.Array,
    n_background: int,
    *,
    n_signal: int | None = None,
    s_over_b: float | None = None,
    shift: float = 0.0,
    mass_exponent: float = 1.0,
    distortion: Distortion = NO_DISTORTION,
) -> DijetEvents:
    """Synthetic LHCO-R&D-like events: background plus injected W' signal, shuffled.

    Args:
      key: PRNG key; the sample is a pure function of it and the arguments.
      n_background: background events (over the whole mjj range [1.5, 9] TeV).
      n_signal: signal events to inject (default 0). Give this or ``s_over_b``.
      s_over_b: inject the expected number of signal events that gives this S/B in the
        default SR 3.3-3.7 TeV (``signal_count``).
      shift: the s of the ``s * mjj`` correlation stress test (0 = off; the papers use
        ``STRESS_SHIFT`` = 0.1), applied to signal and background.
      mass_exponent: gamma of the background jet-mass scale ``(mjj / 3.5)^gamma``.
      distortion: ``Distortion`` of the background ("simulation" = ``SIMULATION``);
        the signal is never distorted.

    Returns:
      ``DijetEvents`` with ``n_background + n_signal`` events, ``features`` of shape
      ``(n, 5)`` in the order of ``FEATURES``.

    Raises:
      ValueError: for negative counts, both or an invalid ``n_signal``/``s_over_b``.

    Example:
      >>> ev = generate(jax.random.PRNGKey(0), 1000, n_signal=10)
      >>> ev.features.shape, int(ev.labels.sum())
      ((1010, 5), 10)
    """
    if n_signal is not None and s_over_b is not None:
        raise ValueError("give `n_signal` or `s_over_b`, not both.")
    if s_over_b is not None:
        n_signal = signal_count(n_background, s_over_b)
    n_signal = 0 if n_signal is None else n_signal
    for name, v in (("n_background", n_background), ("n_signal", n_signal)):
        if not isinstance(v, int | np.integer) or v < 0:
            raise ValueError(f"`{name}` must be an integer >= 0; got {v!r}.")
    if n_background + n_signal == 0:
        raise ValueError("`n_background` + `n_signal` must be > 0.")
    d = Distortion(*(float(v) for v in distortion))
    if d.mass_scale <= 0 or d.mass_width <= 0:
        raise ValueError(f"`distortion` needs mass_scale > 0 and mass_width > 0; got {d}.")
    # The table is an argument, not a constant: baked in, it tripled the compile time.
    table = tuple(jnp.asarray(a, jnp.float32) for a in _mjj_table())
    return _generate(key, int(n_background), int(n_signal), jnp.float32(shift),
                     jnp.float32(mass_exponent), d, table)


def simulation(key: jax.Array, n: int, *, distortion: Distortion = SIMULATION,
               shift: float = 0.0, mass_exponent: float = 1.0) -> DijetEvents:
    """A signal-free "simulation" background (SALAD, arXiv:2009.02205), distorted.

    Example:
      >>> int(simulation(jax.random.PRNGKey(1), 100).labels.sum())
      0
    """
    return generate(key, n, shift=shift, mass_exponent=mass_exponent, distortion=distortion)


def check_events(events: DijetEvents, *, name: str = "events", n_features: int | None = None
                 ) -> None:
    """Raises ``ValueError`` naming ``name`` for malformed ``DijetEvents`` (shapes, NaN, labels)."""
    if not isinstance(events, DijetEvents):
        raise ValueError(f"`{name}` must be DijetEvents; got {type(events).__name__}.")
    check_array(f"{name}.mjj", events.mjj, ndim=1)
    check_array(f"{name}.features", events.features, ndim=2, last_dim=n_features)
    check_array(f"{name}.labels", events.labels, ndim=1)
    n = events.mjj.shape[0]
    if events.features.shape[0] != n or events.labels.shape[0] != n:
        raise ValueError(
            f"`{name}` arrays must share the event count: mjj {events.mjj.shape}, features "
            f"{events.features.shape}, labels {events.labels.shape}."
        )
