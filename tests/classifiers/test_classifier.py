import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.classifiers import class_balance_weights
from jaxgen.classifiers import classifier_logits
from jaxgen.classifiers import effective_sample_size
from jaxgen.classifiers import ensemble_weights
from jaxgen.classifiers import likelihood_ratio_weights
from jaxgen.classifiers import train_classifier
from jaxgen.train import FitConfig
from jaxgen.train import poisson_bootstrap_weights

CFG = FitConfig(epochs=10, batch_size=500, schedule="cosine", clip_norm=None, progress=False)
N = 20_000


def _weighted_mean(w, x):
    return float(jnp.sum(w * x) / jnp.sum(w))


def test_learned_weights_match_analytic_gaussian_ratio():
    k0, k1, kf = jax.random.split(jax.random.PRNGKey(0), 3)
    x0 = jax.random.normal(k0, (N, 1))
    x1 = 0.5 + jax.random.normal(k1, (N, 1))
    clf, _ = train_classifier(kf, x0, x1, config=CFG)
    w = likelihood_ratio_weights(classifier_logits(clf, x0))
    # Statistics: the reweighted source mean estimates the target mean 0.5 with
    # variance 1/ESS (source, ESS ~ N e^{-0.25}) plus 1/N (the finite target sample the
    # classifier learned from): sigma = sqrt(1/ESS + 1/N) ~ 0.011; 5 sigma allowed.
    ess = float(effective_sample_size(w))
    sigma = np.sqrt(1 / ess + 1 / N)
    assert abs(_weighted_mean(w, x0[:, 0]) - 0.5) < 5 * sigma
    # Pointwise log-ratio against 0.5 x - 0.125 in the bulk (|x| < 1.5): a network fit
    # from N events has a logit error of order sqrt(2 / (N p(x) dx)) ~ 0.02-0.05 over
    # dx ~ 0.2 bins; 0.1 is ~3 times that at the bulk's edges.
    grid = jnp.linspace(-1.5, 1.5, 13)[:, None]
    np.testing.assert_allclose(
        np.asarray(classifier_logits(clf, grid)), np.asarray(0.5 * grid[:, 0] - 0.125), atol=0.1
    )


def test_negative_weights_background_subtraction():
    # Target = signal N(1,1) + background N(-1,1); the background sample enters the
    # target class with weight -1, so the classifier learns signal / source.
    k = jax.random.split(jax.random.PRNGKey(1), 5)
    x0 = jax.random.normal(k[0], (N, 1))
    sig = 1.0 + jax.random.normal(k[1], (N, 1))
    bkg_in_data = -1.0 + jax.random.normal(k[2], (N // 4, 1))
    bkg_mc = -1.0 + jax.random.normal(k[3], (N // 4, 1))
    x1 = jnp.concatenate([sig, bkg_in_data, bkg_mc])
    w1 = jnp.concatenate([jnp.ones(N + N // 4), -jnp.ones(N // 4)])
    clf, res = train_classifier(k[4], x0, x1, w1=w1, config=CFG)
    w = likelihood_ratio_weights(classifier_logits(clf, x0))
    assert np.all(np.isfinite(np.asarray(w)))
    # sigma: 1/ESS (ESS ~ N e^{-1}) plus the target's variance: signal (1/N) and the two
    # background samples (2 * 1.25^2... bounded by 2 * (N/4) * 4 / N^2 = 2/N) -> ~0.02.
    ess = float(effective_sample_size(w))
    sigma = np.sqrt(1 / ess + 3 / N)
    assert abs(_weighted_mean(w, x0[:, 0]) - 1.0) < 5 * sigma


def test_ensemble_bootstrap_and_weights_finite():
    k = jax.random.split(jax.random.PRNGKey(2), 4)
    x0 = jax.random.normal(k[0], (4000, 2))
    x1 = 0.3 + jax.random.normal(k[1], (4000, 2))
    boot = poisson_bootstrap_weights(k[2], 3, 8000)
    cfg = FitConfig(epochs=2, batch_size=500, progress=False)
    clf, res = train_classifier(k[3], x0, x1, config=cfg, ensemble_size=3, member_weights=boot)
    assert clf.num_members == 3
    logits = classifier_logits(clf, x0)
    assert logits.shape == (3, 4000)
    mean, std = ensemble_weights(logits)
    assert mean.shape == std.shape == (4000,)
    assert np.all(np.isfinite(np.asarray(mean))) and float(jnp.max(std)) > 0
    # jit and vmap agree with the direct call.
    direct = classifier_logits(clf, x0[:5])
    np.testing.assert_allclose(np.asarray(direct), np.asarray(logits[:, :5]), rtol=1e-5, atol=1e-6)


def test_weights_finite_for_extreme_logits_and_clip():
    w = likelihood_ratio_weights(jnp.array([-1e4, 0.0, 1e4]), normalize=False)
    assert np.all(np.isfinite(np.asarray(w)))
    wc = likelihood_ratio_weights(jnp.array([-3.0, 0.0, 3.0]), normalize=False, clip=(0.1, 10.0))
    np.testing.assert_allclose(np.asarray(wc), [0.1, 1.0, 10.0], rtol=1e-6)
    wn = likelihood_ratio_weights(jnp.array([[0.0, 1.0], [2.0, 2.0]]))
    np.testing.assert_allclose(np.asarray(jnp.mean(wn, -1)), [1.0, 1.0], rtol=1e-6)


def test_class_balance_weights():
    w0, w1 = class_balance_weights(jnp.ones(10), jnp.array([2.0, 3.0, -1.0]))
    assert float(jnp.sum(w1)) == pytest.approx(float(jnp.sum(w0)))


X = jnp.zeros((10, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x0": X, "x1": jnp.zeros((10, 3))}, "same per-event shape"),
        ({"x0": X, "x1": X, "w0": jnp.ones(9)}, "w0"),
        ({"x0": X, "x1": X, "w1": -jnp.ones(10)}, "class-1 weights"),
        ({"x0": X.at[0, 0].set(jnp.inf), "x1": X}, "x0"),
        ({"x0": X, "x1": X, "member_weights": jnp.ones((2, 20))}, "ensemble_size"),
        (
            {"x0": X, "x1": X, "ensemble_size": 2, "member_weights": jnp.ones((2, 5))},
            "member_weights",
        ),
    ],
)
def test_train_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_classifier(jax.random.PRNGKey(0), **kwargs)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: likelihood_ratio_weights(jnp.array([jnp.nan])), "logits"),
        (lambda: likelihood_ratio_weights(jnp.zeros(2), clip=(2.0, 1.0)), "clip"),
        (lambda: ensemble_weights(jnp.zeros(3)), "logits"),
    ],
)
def test_weight_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
