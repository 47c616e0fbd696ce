"""SRGN's minimiser (coarse + zoomed lattice scans with quadratic surrogates) off the grid."""

import jax
import numpy as np
import pytest

from jaxgen.methods import srgn
from jaxgen.methods.srgn import _zoom_minimise

LO, HI = np.array([-2.0, 0.5]), np.array([2.0, 1.5])
TRUTH = np.array([-0.62, 0.88])  # on none of the lattices below


def _objective(f):
    calls = []

    def scan(thetas):
        calls.append(len(thetas))
        values = np.array([f(t) for t in thetas])
        return values, values

    return scan, calls


def test_exact_quadratic_vertex_off_grid():
    a = np.array([[1.0, 0.3], [0.3, 4.0]])
    scan, calls = _objective(lambda t: (t - TRUTH) @ a @ (t - TRUTH))
    scans, est = _zoom_minimise(scan, LO, HI, 5, 2, 0.35)
    # A quadratic is fitted exactly (least squares on an exact model), so only rounding
    # remains, although the coarse grid does not contain the truth.
    np.testing.assert_allclose(est, TRUTH, atol=1e-9)
    assert calls == [25, 25, 25]
    assert np.min(np.max(np.abs(scans[0][0] - TRUTH), -1)) > 0.1


@pytest.mark.parametrize("truth", [(-1.0, 0.75), (-0.62, 0.88), (1.3, 0.6)])
def test_gaussian_jensen_shannon_objective(truth):
    # What the classifier divergence estimates: JS(N(truth), N(theta)) (quadrature). It
    # saturates far away and is symmetric in log(sigma), not sigma; the coarse grid
    # (spacing 1, 0.25) alone is up to 0.38 off in mu.
    x = np.linspace(-8.0, 8.0, 4001)

    def pdf(m, s):
        return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))

    p = pdf(*truth)

    def f(t):
        q = pdf(*t)
        mix = 0.5 * (p + q)
        return 0.5 * np.sum(p * np.log(p / mix + 1e-300) + q * np.log(q / mix + 1e-300))

    scan, _ = _objective(f)
    _, est = _zoom_minimise(scan, LO, HI, 5, 2, 0.35)
    # The surrogate's own (deterministic) bias is what the zoomed scans leave of the
    # cubic term; it must stay below one statistical sd of the experiment's quick fits
    # (sd(sigma_hat) >= 0.0135 at 1e4 events, gen level, same lattices and 2 zooms), so
    # their 4 sd tolerance keeps at least 3 sd of room.
    np.testing.assert_allclose(est, truth, atol=0.0135)


def test_minimum_at_a_bound_stays_inside():
    scan, _ = _objective(lambda t: float(np.sum((t - np.array([3.0, 1.2])) ** 2)))
    _, est = _zoom_minimise(scan, LO, HI, 5, 2, 0.35)
    assert np.all(est >= LO) and np.all(est <= HI)
    np.testing.assert_allclose(est, [2.0, 1.2], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grid_size": 4}, "grid_size"),
        ({"objective": "loss"}, "objective"),
        ({"shrink": 0.0}, "shrink"),
    ],
)
def test_fit_errors(kwargs, match):
    from tests.methods.test_dctr_srgn import EXACT

    x = np.zeros((10, 1))
    with pytest.raises(ValueError, match=match):
        srgn.fit(
            jax.random.PRNGKey(0),
            EXACT,
            gen_ref=x,
            sim_ref=x,
            data=x,
            theta_low=[-1.0],
            theta_high=[1.0],
            **kwargs,
        )
