r"""Bump hunt: dijet-function fit of the sidebands, SR background and local significance.

The last step of CWoLa hunting (arXiv:1805.02664, 2104.02092) and of every resonant
anomaly search on the LHC Olympics data (arXiv:2101.08320): after a selection, the binned
mjj spectrum outside the signal region is fitted with the standard dijet function

.. math:: f(m) = p_0 \, (1 - x)^{p_1} \, / \, x^{p_2 + p_3 \ln x}, \qquad x = m / \sqrt{s},

(events per TeV of mjj, ``sqrt_s`` = 13 TeV) by a binned Poisson likelihood
:math:`-\ln L = \sum_i [\mu_i - n_i \ln \mu_i]`, :math:`\mu_i = \int_{\text{bin } i} f`
(4-point Gauss-Legendre per bin), with scipy's ``trust-exact`` Newton minimiser and the
exact gradient and Hessian of the likelihood from JAX (float64). Internally the fit uses
:math:`\ln x` centred on the fit range, ``(a, p1, b, p3)`` with
:math:`\ln f = a + p_1 \ln(1-x) - b u - p_3 u^2`, :math:`u = \ln x - c`, a linear
reparametrisation that removes most of the p0-p2-p3 correlation; results are returned in
the standard ``(p0, p1, p2, p3)`` with the covariance propagated exactly. A weighted linear
fit of ``ln(n_i / width_i)`` gives the starting point. A fit that does not converge, or
whose Hessian is not positive definite, raises ``FitError`` instead of returning numbers.

The expected SR background ``B`` is the fitted function integrated over the SR bins; its
uncertainty ``sigma_B`` propagates the fit covariance (:math:`\sigma_B^2 = g^T C g`,
:math:`g = \partial B / \partial p`). The local significance of ``n`` observed SR events
is the profile-likelihood significance of a Poisson count with a background known to
``sigma_B`` (the on/off problem with the auxiliary measurement at its expectation; Cowan,
Cranmer, Gross, Vitells arXiv:1007.1727, and Cowan's "Discovery sensitivity for a counting
experiment with background uncertainty"):

.. math:: Z = \operatorname{sign}(n - B) \sqrt{2 \left[ n \ln \frac{n (B + \sigma^2)}
   {B^2 + n \sigma^2} - \frac{B^2}{\sigma^2} \ln\left(1 + \frac{\sigma^2 (n - B)}
   {B (B + \sigma^2)}\right) \right]}

which tends to :math:`\sqrt{2[n \ln(n/B) - (n - B)]}` as :math:`\sigma \to 0` and to
:math:`(n - B) / \sqrt{B + \sigma^2}` for small excesses. ``p_value`` is the one-sided
:math:`1 - \Phi(Z)`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize
from scipy.special import ndtr
from scipy.special import xlogy

from jaxgen._checks import check_array
from jaxgen.data.dijets.regions import Regions

SQRT_S = 13.0
"""LHC centre-of-mass energy (TeV) of the dijet function's x = mjj / sqrt(s)."""

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(4)


class FitError(RuntimeError):
    """The dijet fit did not converge (or its covariance is not positive definite)."""


class DijetFit(NamedTuple):
    """Result of ``fit_dijet``.

    Attributes:
      params: ``(4,)`` fitted ``(p0, p1, p2, p3)``; p0 in events / TeV.
      covariance: ``(4, 4)`` covariance of ``params`` (inverse Hessian of -ln L).
      edges: ``(n_bins + 1,)`` bin edges (TeV).
      counts: ``(n_bins,)`` the fitted histogram.
      fitted: ``(n_bins,)`` bool, the bins used (outside the SR, inside the fit range).
      expected: ``(n_bins,)`` fitted expectation ``mu_i`` in every bin.
      deviance: Poisson deviance ``2 sum[mu - n + n ln(n / mu)]`` over the fitted bins.
      ndf: fitted bins minus 4.
      iterations: Newton iterations used.
    """

    params: np.ndarray
    covariance: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    fitted: np.ndarray
    expected: np.ndarray
    deviance: float
    ndf: int
    iterations: int


class BumpHunt(NamedTuple):
    """Result of ``bump_hunt``.

    Attributes:
      fit: the ``DijetFit`` of the sidebands.
      observed: events in the SR.
      expected: fitted background in the SR.
      expected_error: its uncertainty from the fit.
      significance: local significance Z of the SR excess (signed; negative for a deficit).
      p_value: one-sided local p-value ``1 - Phi(Z)``.
    """

    fit: DijetFit
    observed: float
    expected: float
    expected_error: float
    significance: float
    p_value: float


def dijet_function(
    mjj: jax.typing.ArrayLike, params: jax.typing.ArrayLike, sqrt_s: float = SQRT_S
) -> jax.Array:
    """The dijet function ``p0 (1 - x)^p1 / x^(p2 + p3 ln x)``, ``x = mjj / sqrt_s`` (jit-able).

    Example:
      >>> float(dijet_function(6.5, jnp.array([1.0, 1.0, 1.0, 0.0])))  # 0.5 / 0.5
      1.0
    """
    x = jnp.asarray(mjj) / sqrt_s
    p = jnp.asarray(params)
    lx = jnp.log(x)
    return p[0] * jnp.exp(p[1] * jnp.log1p(-x) - (p[2] + p[3] * lx) * lx)


def _nodes(edges):
    lo, hi = edges[:-1], edges[1:]
    half = 0.5 * (hi - lo)
    m = 0.5 * (hi + lo)[:, None] + half[:, None] * _GL_NODES[None, :]
    return m, half[:, None] * _GL_WEIGHTS[None, :]


def expected_counts(
    edges: jax.typing.ArrayLike, params: jax.typing.ArrayLike, sqrt_s: float = SQRT_S
) -> np.ndarray:
    """Integral of ``dijet_function`` over every bin (4-point Gauss-Legendre), float64.

    Example:
      >>> # (1 - x) / x = (13 - m) / m, integral 13 ln(7.5 / 6.5) - 1
      >>> expected_counts(np.array([6.5, 7.5]), np.array([1.0, 1.0, 1.0, 0.0])).round(4)
      array([0.8603])
    """
    e = np.asarray(edges, np.float64)
    m, w = _nodes(e)
    with jax.enable_x64(True):
        f = dijet_function(jnp.asarray(m), jnp.asarray(params, jnp.float64), sqrt_s)
        return np.asarray(jnp.sum(f * w, axis=1))


def _to_standard(theta, c):
    """Internal (a, p1, b, p3) -> (p0, p1, p2, p3) for ln x centred at c."""
    a, p1, b, p3 = theta[0], theta[1], theta[2], theta[3]
    p2 = b - 2.0 * c * p3
    return jnp.stack([jnp.exp(a + p2 * c + p3 * c * c), p1, p2, p3])


def fit_bins(
    regions: Regions | None = None, fit_range: tuple[float, float] = (2.9, 6.0),
    width: float = 0.1,
) -> np.ndarray:
    """Bin edges of about ``width`` TeV on ``fit_range`` with the SR edges on bin edges.

    The default range starts above the trigger turn-on, which the dijet function does not
    describe: on 1M synthetic background events (turn-on at 2.6 +- 0.12 TeV) a fit from
    2.7 TeV predicts the SR background 8 sigma high, one from 2.9 TeV within 0.3 sigma.

    Example:
      >>> fit_bins(fit_range=(3.1, 3.9), width=0.2).round(2).tolist()
      [3.1, 3.3, 3.5, 3.7, 3.9]
    """
    r = Regions() if regions is None else regions
    lo, hi = fit_range
    if not (0 < lo < r.sr[0] and r.sr[1] < hi) or width <= 0:
        raise ValueError(f"`fit_range` {fit_range} must contain the signal region {r.sr} "
                         f"and `width` ({width}) must be > 0.")
    below = np.linspace(lo, r.sr[0], max(1, round((r.sr[0] - lo) / width)) + 1)
    inside = np.linspace(*r.sr, max(1, round((r.sr[1] - r.sr[0]) / width)) + 1)
    above = np.linspace(r.sr[1], hi, max(1, round((hi - r.sr[1]) / width)) + 1)
    return np.concatenate([below, inside[1:], above[1:]])


def fit_dijet(
    edges: jax.typing.ArrayLike,
    counts: jax.typing.ArrayLike,
    *,
    exclude: tuple[float, float] | None = (3.3, 3.7),
    sqrt_s: float = SQRT_S,
    max_iterations: int = 200,
) -> DijetFit:
    """Binned Poisson maximum-likelihood fit of ``dijet_function`` to a histogram.

    Args:
      edges: ``(n_bins + 1,)`` increasing bin edges, TeV (``0 < edges < sqrt_s``).
      counts: ``(n_bins,)`` event counts (non-negative; Asimov non-integers allowed).
      exclude: ``(lo, hi)`` interval left out of the fit (the SR; its edges must be bin
        edges), or ``None`` to fit every bin.
      sqrt_s: centre-of-mass energy of ``x = mjj / sqrt_s``.
      max_iterations: Newton iterations allowed.

    Returns:
      ``DijetFit``.

    Raises:
      ValueError: for bad ``edges``/``counts``, SR edges that are not bin edges, or
        fewer than 5 fitted bins with events.
      FitError: if the minimiser does not converge or the Hessian is not positive
        definite.

    Example:
      >>> e = fit_bins()
      >>> n = expected_counts(e, [3e4, 10.0, 5.0, 0.1])
      >>> fit = fit_dijet(e, n)
      >>> np.round(fit.params / [3e4, 10.0, 5.0, 0.1], 4).tolist()
      [1.0, 1.0, 1.0, 1.0]
    """
    e = np.asarray(edges, np.float64)
    n = np.asarray(counts, np.float64)
    check_array("edges", e, ndim=1)
    check_array("counts", n, ndim=1)
    if e.size < 2 or n.size != e.size - 1:
        raise ValueError(f"`counts` must have len(edges) - 1 = {e.size - 1} bins; got "
                         f"{n.size}.")
    if np.any(np.diff(e) <= 0) or e[0] <= 0 or e[-1] >= sqrt_s:
        raise ValueError(f"`edges` must increase strictly within (0, sqrt_s = {sqrt_s}); got "
                         f"[{e[0]}, ..., {e[-1]}].")
    if np.any(n < 0):
        raise ValueError("`counts` must be >= 0.")
    fitted = np.ones(n.size, bool)
    if exclude is not None:
        for v in exclude:
            if np.min(np.abs(e - v)) > 1e-9 * max(1.0, abs(v)):
                raise ValueError(f"the excluded interval {exclude} must have its edges on bin "
                                 f"edges; {v} is not in `edges`.")
        centre = 0.5 * (e[1:] + e[:-1])
        fitted = ~((centre > exclude[0]) & (centre < exclude[1]))
    if np.sum(fitted & (n > 0)) < 5:
        raise ValueError("need at least 5 fitted bins with events for the 4-parameter fit; "
                         f"got {int(np.sum(fitted & (n > 0)))}.")
    c = float(np.log(0.5 * (e[0] + e[-1]) / sqrt_s))
    m, w = _nodes(e)
    with jax.enable_x64(True):
        data = (jnp.asarray(m / sqrt_s), jnp.asarray(w), jnp.asarray(n),
                jnp.asarray(fitted, jnp.float64), jnp.float64(c))
        theta0 = _start(e, n, fitted, c, sqrt_s)
        scale = float(np.sum(n[fitted]))
        try:
            res = optimize.minimize(
                lambda t: float(_nll(t, *data)) / scale, theta0, method="trust-exact",
                jac=lambda t: np.asarray(_nll_grad(t, *data)) / scale,
                hess=lambda t: np.asarray(_nll_hess(t, *data)) / scale,
                options={"maxiter": max_iterations, "gtol": 1e-9},
            )
        except (np.linalg.LinAlgError, ValueError) as err:
            raise FitError(f"dijet fit failed: {err}") from None
        if not res.success or not np.all(np.isfinite(res.x)):
            raise FitError(f"dijet fit did not converge after {res.nit} iterations: "
                           f"{res.message}")
        h = np.asarray(_nll_hess(jnp.asarray(res.x), *data))
        try:
            cov_t = np.linalg.inv(np.linalg.cholesky(h))
            cov_t = cov_t.T @ cov_t
        except np.linalg.LinAlgError:
            raise FitError("dijet fit converged to a point where the Hessian is not "
                           "positive definite (no covariance).") from None
        expected = np.asarray(_mu(jnp.asarray(res.x), *data[:2], data[4]))
        jmat = np.asarray(_jac_standard(jnp.asarray(res.x), c))
        params = np.asarray(_to_standard(jnp.asarray(res.x), c))
    nf = n[fitted]
    dev = float(2.0 * np.sum(expected[fitted] - nf + xlogy(nf, nf) - xlogy(nf, expected[fitted])))
    return DijetFit(params, jmat @ cov_t @ jmat.T, e, n, fitted, expected, dev,
                    int(fitted.sum()) - 4, int(res.nit))


def _mu(theta, x, w, c):
    """Expected counts per bin of the internal parametrisation (x at the GL nodes)."""
    u = jnp.log(x) - c
    logf = theta[0] + theta[1] * jnp.log1p(-x) - theta[2] * u - theta[3] * u * u
    return jnp.sum(jnp.exp(logf) * w, axis=1)


def _nll_fn(theta, x, w, n, fitted, c):
    mu = _mu(theta, x, w, c)
    return jnp.sum(fitted * (mu - jnp.where(n > 0, n * jnp.log(mu), 0.0)))


# Jitted once per histogram shape (a scan of toys reuses the compiled programs).
_nll = jax.jit(_nll_fn)
_nll_grad = jax.jit(jax.grad(_nll_fn))
_nll_hess = jax.jit(jax.hessian(_nll_fn))
_jac_standard = jax.jit(jax.jacfwd(_to_standard))


def _start(e, n, fitted, c, sqrt_s):
    """Weighted linear least squares of ln(n / width) on the internal basis."""
    use = fitted & (n > 0)
    m = 0.5 * (e[1:] + e[:-1])[use]
    x = m / sqrt_s
    u = np.log(x) - c
    a = np.stack([np.ones_like(u), np.log1p(-x), -u, -u * u], axis=1)
    y = np.log(n[use] / np.diff(e)[use])
    sw = np.sqrt(n[use])  # var(ln n) ~ 1 / n
    theta, *_ = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)
    return theta


def significance(observed: float, expected: float, expected_error: float = 0.0) -> float:
    """Local significance Z of ``observed`` events over ``expected +- expected_error``.

    The profile-likelihood formula of the module docstring (arXiv:1007.1727); signed.

    Example:
      >>> round(significance(150.0, 100.0), 3)  # sqrt(2 [150 ln 1.5 - 50])
      4.652
    """
    n, b, s2 = float(observed), float(expected), float(expected_error) ** 2
    if not (n >= 0 and b > 0 and s2 >= 0) or not all(map(math.isfinite, (n, b, s2))):
        raise ValueError(f"need observed >= 0, expected > 0 and expected_error >= 0; got "
                         f"{observed}, {expected}, {expected_error}.")
    if s2 == 0.0:
        q = 2.0 * (xlogy(n, n / b) - (n - b))
    else:
        q = 2.0 * (xlogy(n, n * (b + s2) / (b * b + n * s2))
                   - (b * b / s2) * math.log1p(s2 * (n - b) / (b * (b + s2))))
    return math.copysign(math.sqrt(max(q, 0.0)), n - b)


def _sr_background(fit: DijetFit, sqrt_s: float) -> tuple[float, float]:
    """Fitted background in the excluded bins and its error ``sqrt(g^T C g)``."""
    idx = np.flatnonzero(~fit.fitted)
    mm, ww = _nodes(fit.edges[idx[0]: idx[-1] + 2])
    with jax.enable_x64(True):
        p = jnp.asarray(fit.params, jnp.float64)
        b, g = _b_and_grad(p, jnp.asarray(mm), jnp.asarray(ww), sqrt_s)
    g = np.asarray(g)
    with np.errstate(all="ignore"):  # a runaway fit gives inf/NaN; the caller rejects it
        var = g @ fit.covariance @ g
    return float(b), float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")


def _b_fn(p, m, w, sqrt_s):
    return jnp.sum(dijet_function(m, p, sqrt_s) * w)


_b_and_grad = jax.jit(jax.value_and_grad(_b_fn), static_argnums=3)


def bump_hunt(
    mjj: jax.typing.ArrayLike,
    *,
    selected: jax.typing.ArrayLike | None = None,
    regions: Regions | None = None,
    edges: jax.typing.ArrayLike | None = None,
    sqrt_s: float = SQRT_S,
) -> BumpHunt:
    """Fits the sidebands of the (selected) mjj spectrum and tests the SR for an excess.

    Args:
      mjj: ``(n,)`` dijet masses (TeV).
      selected: ``(n,)`` bool mask of the events passing the cut (e.g. the top 1 % of an
        anomaly score); ``None`` keeps every event.
      regions: the SR to test (default ``Regions()``: 3.3-3.7 TeV); the fit uses every
        bin outside it.
      edges: bin edges (default ``fit_bins(regions)``: 0.1 TeV bins on [2.9, 6.0]).
      sqrt_s: centre-of-mass energy of the dijet function.

    Returns:
      ``BumpHunt``.

    Raises:
      ValueError: for bad inputs or too few events; ``FitError`` if the fit fails.

    Example:
      >>> e = fit_bins()
      >>> counts = np.random.default_rng(0).poisson(expected_counts(e, [3e4, 10.0, 5.0, 0.1]))
      >>> mjj = np.repeat(0.5 * (e[1:] + e[:-1]), counts)  # a smooth spectrum, no signal
      >>> abs(bump_hunt(mjj).significance) < 4
      True
    """
    m = np.asarray(mjj, np.float64)
    check_array("mjj", m, ndim=1)
    if selected is not None:
        sel = np.asarray(selected)
        if sel.shape != m.shape:
            raise ValueError(f"`selected` must have the shape of `mjj` {m.shape}; got "
                             f"{sel.shape}.")
        m = m[sel.astype(bool)]
    r = Regions() if regions is None else regions
    e = fit_bins(r) if edges is None else np.asarray(edges, np.float64)
    counts, _ = np.histogram(m, bins=e)
    fit = fit_dijet(e, counts, exclude=r.sr, sqrt_s=sqrt_s)
    in_sr = ~fit.fitted
    obs = float(counts[in_sr].sum())
    b, err = _sr_background(fit, sqrt_s)
    if not (np.isfinite(b) and np.isfinite(err) and b > 0):
        raise FitError(f"the fit converged but its SR background is not a positive number "
                       f"(b = {b}, error {err}): the selected spectrum is not dijet-like.")
    z = significance(obs, b, err)
    return BumpHunt(fit, obs, b, err, z, float(ndtr(-z)))
