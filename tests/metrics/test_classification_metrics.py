import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxgen.metrics.classification import auc
from jaxgen.metrics.classification import effective_sample_size
from jaxgen.metrics.classification import roc_curve
from jaxgen.metrics.classification import sic
from jaxgen.metrics.histograms import triangular_discriminator
from jaxgen.metrics.histograms import weighted_histogram


@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn_weighted(ties):
    rng = np.random.default_rng(0)
    s = rng.normal(size=500)
    if ties:
        s = np.round(s, 1)  # many tied scores
    y = (rng.uniform(size=500) < 0.4).astype(float)
    w = rng.uniform(0.1, 2.0, size=500)
    ref = roc_auc_score(y, s, sample_weight=w)
    assert float(auc(s, y, w)) == pytest.approx(ref, abs=1e-5)
    assert float(auc(s, y)) == pytest.approx(roc_auc_score(y, s), abs=1e-5)


def test_roc_endpoints_and_jit():
    s = jnp.array([0.1, 0.4, 0.35, 0.8])
    y = jnp.array([0.0, 0.0, 1.0, 1.0])
    fpr, tpr = roc_curve(s, y)
    assert float(fpr[0]) == 0 and float(tpr[0]) == 0
    assert float(fpr[-1]) == 1 and float(tpr[-1]) == 1
    assert float(auc(s, y)) == pytest.approx(0.75)
    assert np.all(np.asarray(sic(fpr, tpr)) >= 0)


def test_effective_sample_size():
    assert float(effective_sample_size(jnp.ones(100))) == pytest.approx(100.0)
    # One weight 2, the rest 1: (n+1)^2 / (n+3).
    w = jnp.ones(10).at[0].set(2.0)
    assert float(effective_sample_size(w)) == pytest.approx(121 / 13, rel=1e-6)
    w2 = jax.random.uniform(jax.random.PRNGKey(0), (3, 50))
    assert effective_sample_size(w2).shape == (3,)


def test_triangular_discriminator():
    p = jnp.array([1.0, 2.0, 3.0])
    assert float(triangular_discriminator(p, 2 * p)) == pytest.approx(0.0, abs=1e-7)
    assert float(triangular_discriminator(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]))) == 1.0
    # Hand value: p=(.5,.5), q=(.25,.75): 0.5*(0.0625/0.75 + 0.0625/1.25) = 0.0666...
    val = triangular_discriminator(jnp.array([1.0, 1.0]), jnp.array([1.0, 3.0]))
    assert float(val) == pytest.approx(0.5 * (0.0625 / 0.75 + 0.0625 / 1.25), rel=1e-6)


def test_weighted_histogram():
    h = weighted_histogram(
        jnp.array([0.1, 0.6, 0.7]), jnp.array([0.0, 0.5, 1.0]), jnp.array([1.0, 2.0, -0.5])
    )
    np.testing.assert_allclose(np.asarray(h), [1.0, 1.5])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: auc(jnp.ones(3), jnp.ones(4)), "labels"),
        (lambda: auc(jnp.ones(3), jnp.array([0.0, 2.0, 1.0])), "only 0 and 1"),
        (lambda: auc(jnp.array([0.0, jnp.nan]), jnp.array([0.0, 1.0])), "NaN"),
        (lambda: auc(jnp.ones(2), jnp.array([0.0, 1.0]), jnp.ones(3)), "weights"),
        (lambda: triangular_discriminator(jnp.ones(2), jnp.ones(3)), "shape"),
        (lambda: triangular_discriminator(-jnp.ones(2), jnp.ones(2)), "non-negative"),
        (lambda: weighted_histogram(jnp.ones(2), jnp.array([1.0, 0.0])), "increasing"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
