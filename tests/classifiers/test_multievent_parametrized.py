import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.classifiers import Classifier
from jaxgen.classifiers import LogitSum
from jaxgen.classifiers import classifier_logits
from jaxgen.classifiers import deep_sets_classifier
from jaxgen.classifiers import instance_logits_from_logit_sum
from jaxgen.classifiers import make_sets
from jaxgen.classifiers import maximum_likelihood_theta
from jaxgen.classifiers import mlp_classifier
from jaxgen.classifiers import parametrized_inputs
from jaxgen.classifiers import parametrized_logits
from jaxgen.classifiers import reweight
from jaxgen.classifiers import set_logits_from_instance
from jaxgen.classifiers import train_classifier
from jaxgen.methods.multievent import analytic_auc
from jaxgen.methods.multievent import gaussian_sets
from jaxgen.metrics.classification import auc
from jaxgen.train import FitConfig


class GaussianShiftLogit(nn.Module):
    """Exact log-ratio N(theta, 1) / N(0, 1) = theta x - theta^2 / 2 on inputs (x, theta)."""

    @nn.compact
    def __call__(self, z):
        x, theta = z[..., :1], z[..., 1:]
        return theta * x - 0.5 * theta**2


def _exact_clf():
    model = GaussianShiftLogit()
    return Classifier(model, {}, jnp.zeros(2), jnp.ones(2))


def _init(model, x):
    params = model.init(jax.random.PRNGKey(0), x)
    return Classifier(model, params, jnp.zeros(x.shape[-1]), jnp.ones(x.shape[-1]))


def test_set_logits_are_sums_of_instance_logits():
    x = jax.random.normal(jax.random.PRNGKey(0), (60, 2))
    clf = _init(mlp_classifier((8,)), x)
    sets = make_sets(x, 6)
    assert sets.shape == (10, 6, 2)
    per = classifier_logits(clf, x).reshape(10, 6)
    np.testing.assert_allclose(
        np.asarray(set_logits_from_instance(clf, sets)),
        np.asarray(per.sum(-1)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_deep_sets_and_logit_sum_are_permutation_invariant():
    sets = jax.random.normal(jax.random.PRNGKey(1), (4, 5, 2))
    perm = sets[:, ::-1]
    for model in (deep_sets_classifier((8,), (8,)), LogitSum((8,))):
        clf = _init(model, sets)
        np.testing.assert_allclose(
            np.asarray(classifier_logits(clf, sets)),
            np.asarray(classifier_logits(clf, perm)),
            rtol=1e-5,
            atol=1e-5,
        )
    # The per-instance network read off a LogitSum sums to the set logit.
    clf = _init(LogitSum((8,)), sets)
    g = instance_logits_from_logit_sum(clf, sets.reshape(-1, 2)).reshape(4, 5)
    np.testing.assert_allclose(
        np.asarray(g.sum(-1)), np.asarray(classifier_logits(clf, sets)), rtol=1e-5, atol=1e-5
    )


def test_multi_event_auc_reaches_analytic_optimum():
    mu, size, n_sets = 0.2, 10, 4000
    xb, xs = gaussian_sets(jax.random.PRNGKey(3), mu, 20_000, 1)
    cfg = FitConfig(epochs=8, batch_size=500, schedule="cosine", clip_norm=None, progress=False)
    clf, _ = train_classifier(jax.random.PRNGKey(4), xb[:, 0], xs[:, 0], config=cfg)
    tb, ts = gaussian_sets(jax.random.PRNGKey(5), mu, n_sets, size)
    labels = jnp.concatenate([jnp.zeros(n_sets), jnp.ones(n_sets)])
    test = jnp.concatenate([tb, ts])
    opt = float(analytic_auc(mu, size))  # Phi(0.2 sqrt(20)) = 0.8143
    # The AUC estimate from n_sets per class has sd ~ sqrt(A(1-A)/n_sets) ~ 0.006 (the
    # Hanley-McNeil bound); the optimal statistic sum(x) itself must agree within 4 sd,
    # and the learned logit sum (monotone in sum(x) if the logit is linear) as well,
    # with 0.01 for the classifier's residual non-linearity.
    sd = np.sqrt(opt * (1 - opt) / n_sets)
    assert abs(float(auc(test[..., 0].sum(-1), labels)) - opt) < 4 * sd
    assert abs(float(auc(set_logits_from_instance(clf, test), labels)) - opt) < 4 * sd + 0.01


def test_parametrized_reweighting_with_exact_ratio():
    clf = _exact_clf()
    x = jax.random.normal(jax.random.PRNGKey(6), (50_000, 1))
    w = reweight(clf, x, jnp.array([0.7]))
    # Weighted mean of N(0,1) reweighted to N(0.7,1): sd sqrt(1/ESS), ESS = n e^{-0.49}.
    m = float(jnp.sum(w * x[:, 0]) / jnp.sum(w))
    assert abs(m - 0.7) < 5 * np.sqrt(np.exp(0.49) / 50_000)
    assert parametrized_inputs(x[:3], jnp.array([1.0, 2.0])).shape == (3, 3)
    assert parametrized_logits(clf, x[:3], jnp.array([0.5])).shape == (3,)


def test_maximum_likelihood_theta_equals_sample_mean_for_exact_ratio():
    # With the exact ratio, sum_i (theta x_i - theta^2/2) is maximised at mean(x):
    # the MLE must reproduce the optimal estimator to optimisation precision.
    clf = _exact_clf()
    sets = 0.3 + jax.random.normal(jax.random.PRNGKey(7), (50, 20, 1))
    est = maximum_likelihood_theta(clf, sets, theta_low=[-2.0], theta_high=[2.0])
    np.testing.assert_allclose(np.asarray(est[:, 0]), np.asarray(sets[..., 0].mean(-1)), atol=2e-3)
    ref = jax.random.normal(jax.random.PRNGKey(8), (2000, 1))
    est_n = maximum_likelihood_theta(clf, sets[0], theta_low=[-2.0], theta_high=[2.0], x_ref=ref)
    assert est_n.shape == (1,)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: make_sets(jnp.zeros((3, 1)), 5), "fewer than"),
        (lambda: parametrized_inputs(jnp.zeros((3, 1)), jnp.zeros((2, 1))), "theta"),
        (
            lambda: maximum_likelihood_theta(
                _exact_clf(), jnp.zeros((4, 1)), theta_low=[1.0], theta_high=[0.0]
            ),
            "theta_low",
        ),
        (
            lambda: maximum_likelihood_theta(
                _exact_clf(), jnp.zeros((4, 3)), theta_low=[0.0], theta_high=[1.0]
            ),
            "features",
        ),
        (lambda: instance_logits_from_logit_sum(_exact_clf(), jnp.zeros((2, 1))), "LogitSum"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
