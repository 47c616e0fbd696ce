import math

import numpy as np
import pytest
from scipy import optimize

from jaxgen.methods import bumphunt as bh

# True parameters, deliberately off any round grid; ~2.5e5 events on [2.9, 6.0] TeV.
TRUE = np.array([4.137e4, 9.31, 4.713, 0.137])
EDGES = bh.fit_bins()
MU = bh.expected_counts(EDGES, TRUE)
SR = (3.3, 3.7)
IN_SR = (0.5 * (EDGES[1:] + EDGES[:-1]) > SR[0]) & (0.5 * (EDGES[1:] + EDGES[:-1]) < SR[1])
B_TRUE = MU[IN_SR].sum()


def _internal(p):
    # ln p0 is linear in the fit's internal parameters (p0 itself is log-normal-like).
    return np.array([math.log(p[0]), p[1], p[2], p[3]])


def _sigmas(fit):
    s = np.sqrt(np.diag(fit.covariance))
    return np.array([s[0] / fit.params[0], s[1], s[2], s[3]])


def test_recovers_known_parameters():
    rng = np.random.default_rng(11)
    fit = bh.fit_dijet(EDGES, rng.poisson(MU), exclude=SR)
    pulls = (_internal(fit.params) - _internal(TRUE)) / _sigmas(fit)
    # One toy: each pull ~ N(0, 1); 4 sigma for 4 parameters fails with p ~ 2.5e-4.
    assert np.all(np.abs(pulls) < 4), pulls
    # Goodness of fit: deviance ~ chi2(ndf), mean ndf, sd sqrt(2 ndf); 4 sd.
    assert abs(fit.deviance - fit.ndf) < 4 * math.sqrt(2 * fit.ndf)
    # Asimov data: the fit returns the truth itself.
    exact = bh.fit_dijet(EDGES, MU, exclude=SR)
    np.testing.assert_allclose(exact.params, TRUE, rtol=1e-6)


def test_pulls_have_unit_width():
    rng = np.random.default_rng(12)
    n_rep = 100
    pulls, z = [], []
    for _ in range(n_rep):
        counts = rng.poisson(MU)
        res = bh.bump_hunt(np.repeat(0.5 * (EDGES[1:] + EDGES[:-1]), counts), edges=EDGES)
        fit = res.fit
        p = list((_internal(fit.params) - _internal(TRUE)) / _sigmas(fit))
        p.append((res.expected - B_TRUE) / res.expected_error)
        pulls.append(p)
        z.append(res.significance)
    pulls = np.array(pulls)
    # For R = 100 draws of N(0, 1): the sample mean has sd 1/sqrt(R) = 0.1 and the
    # sample sd has sd 1/sqrt(2(R-1)) = 0.071; 4 sd each -> |mean| < 0.4, |sd - 1| < 0.28.
    # (The SR background pull is the one a bump hunt relies on.)
    tol_mean, tol_sd = 4 / math.sqrt(n_rep), 4 / math.sqrt(2 * (n_rep - 1))
    assert np.all(np.abs(pulls.mean(0)) < tol_mean), pulls.mean(0)
    assert np.all(np.abs(pulls.std(0, ddof=1) - 1) < tol_sd), pulls.std(0, ddof=1)
    # With no signal the local significance is N(0, 1) (n_SR independent of the fit).
    z = np.array(z)
    assert abs(z.mean()) < tol_mean and abs(z.std(ddof=1) - 1) < tol_sd, (z.mean(), z.std())


def _on_off_z(n, b, sigma):
    """Profile-likelihood Z by direct maximisation: n ~ Pois(s + b), m ~ Pois(tau b),
    tau = b / sigma^2, m = tau b (the auxiliary measurement at its expectation)."""
    tau = b / sigma**2
    m = tau * b

    def nll(s, bb):
        return (s + bb) - n * math.log(s + bb) + tau * bb - m * math.log(tau * bb)

    s_hat, b_hat = n - b, b  # unconditional MLE
    b0 = optimize.minimize_scalar(lambda bb: nll(0.0, bb), bounds=(1e-9, 10 * n + 10),
                                  method="bounded", options={"xatol": 1e-10}).x
    return math.copysign(math.sqrt(max(2 * (nll(0.0, b0) - nll(s_hat, b_hat)), 0)), n - b)


@pytest.mark.parametrize("n, b, sigma", [(150, 100, 0), (150, 100, 10), (1200, 1000, 45),
                                         (80, 100, 5)])
def test_significance_formula(n, b, sigma):
    z = bh.significance(n, b, sigma)
    if sigma == 0:
        ref = math.sqrt(2 * (n * math.log(n / b) - (n - b)))
        assert z == pytest.approx(ref, rel=1e-12)
        assert bh.significance(n, b, 1e-6) == pytest.approx(ref, rel=1e-6)
    else:
        assert z == pytest.approx(_on_off_z(n, b, sigma), rel=1e-5)
    # Small excesses: Z ~ (n - b) / sqrt(b + sigma^2).
    if abs(n - b) < 0.2 * b:
        assert z == pytest.approx((n - b) / math.sqrt(b + sigma**2), rel=0.15)


def test_significance_of_a_known_excess():
    # Asimov background plus 600 signal events spread over the SR bins: the fit sees only
    # the sidebands, so it returns the true background, and Z is the formula's at
    # n = B + 600 with the fit's own sigma_B.
    sig = np.zeros_like(MU)
    sig[IN_SR] = 600 * np.array([0.15, 0.35, 0.35, 0.15])
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    counts = MU + sig
    fit = bh.fit_dijet(EDGES, counts, exclude=SR)
    np.testing.assert_allclose(fit.params, TRUE, rtol=1e-6)
    res = bh.bump_hunt(np.repeat(centres, np.round(counts).astype(int)), edges=EDGES)
    assert res.observed == pytest.approx(np.round(counts)[IN_SR].sum())
    assert res.expected == pytest.approx(B_TRUE, rel=2e-3)  # rounding to integers
    assert res.significance == pytest.approx(
        bh.significance(res.observed, res.expected, res.expected_error), rel=1e-9)
    z_approx = 600 / math.sqrt(B_TRUE + res.expected_error**2)
    assert res.significance == pytest.approx(z_approx, rel=0.1)
    assert res.p_value == pytest.approx(0.5 * math.erfc(res.significance / math.sqrt(2)))


def test_failures_say_so():
    counts = np.random.default_rng(5).poisson(MU)
    with pytest.raises(bh.FitError, match="did not converge"):
        bh.fit_dijet(EDGES, counts, exclude=SR, max_iterations=1)
    with pytest.raises(ValueError, match="bin edges"):
        bh.fit_dijet(EDGES, counts, exclude=(3.33, 3.7))
    with pytest.raises(ValueError, match="at least 5"):
        bh.fit_dijet(EDGES[:5], counts[:4], exclude=None)
    with pytest.raises(ValueError, match=">= 0"):
        bh.fit_dijet(EDGES, -counts, exclude=SR)
    with pytest.raises(ValueError, match="counts"):
        bh.fit_dijet(EDGES, np.where(np.arange(counts.size) == 3, np.nan, counts))
    with pytest.raises(ValueError, match="fit_range"):
        bh.fit_bins(fit_range=(3.4, 6.0))
    with pytest.raises(ValueError, match="mjj"):
        bh.bump_hunt(np.array([3.0, np.nan]))
    with pytest.raises(ValueError, match="expected"):
        bh.significance(10, 0.0)


def test_non_finite_sr_background_is_a_failed_fit(monkeypatch):
    """A fit that converges to a background the SR cannot take (NaN, inf, <= 0) raises
    ``FitError``, as a non-converged one does, instead of a ``ValueError`` from
    ``significance``."""
    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    mjj = np.repeat(centres, np.round(MU).astype(int))
    for bad in (float("nan"), float("inf"), 0.0):
        monkeypatch.setattr(bh, "_sr_background", lambda fit, sqrt_s, bad=bad: (bad, 1.0))
        with pytest.raises(bh.FitError, match="SR background"):
            bh.bump_hunt(mjj, edges=EDGES)
