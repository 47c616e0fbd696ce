"""Frechet distance against scipy's matrix square root and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxgen.metrics.frechet import frechet_distance
from jaxgen.metrics.frechet import gaussian_frechet_distance


def test_matches_scipy_sqrtm(x64):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    got = gaussian_frechet_distance(jnp.asarray(m1), jnp.asarray(c1), jnp.asarray(m2),
                                    jnp.asarray(c2))
    np.testing.assert_allclose(got, ref, rtol=1e-8)


def test_diagonal_closed_form(x64):
    """For diagonal covariances d^2 = |m1 - m2|^2 + sum (sqrt(s1) - sqrt(s2))^2."""
    s1, s2 = jnp.array([1.0, 4.0, 9.0]), jnp.array([4.0, 4.0, 1.0])
    got = gaussian_frechet_distance(jnp.zeros(3), jnp.diag(s1), jnp.ones(3), jnp.diag(s2))
    np.testing.assert_allclose(got, 3.0 + 1.0 + 0.0 + 4.0, rtol=1e-12)


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit])
def test_samples_identical_and_shifted(transform):
    x = jax.random.normal(jax.random.key(0), (500, 4))
    fd = transform(frechet_distance)
    assert float(fd(x, x)) < 1e-3
    np.testing.assert_allclose(fd(x, x + 2.0), 16.0, rtol=1e-3)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (jnp.ones((5, 3)), jnp.ones((5, 2)), "last dimension 3"),
        (jnp.ones((5,)), jnp.ones((5,)), "dimension"),
        (jnp.ones((1, 3)), jnp.ones((5, 3)), "at least 2"),
        (jnp.ones((5, 3)).at[0, 0].set(jnp.nan), jnp.ones((5, 3)), "NaN"),
    ],
)
def test_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(x, y)
