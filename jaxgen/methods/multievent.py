"""Per-instance vs per-ensemble learning on Gaussians.

Nachman & Thaler, "E Pluribus Unum Ex Machina: Learning from Many Collider Events at
Once", PRD 103 (2021) 116013, arXiv:2101.07263.

Signal events are ``N(+mu, 1)``, background ``N(-mu, 1)``. For sets of ``N``
independent events the optimal statistic is ``sum_i x_i``, so the optimal AUC is
``Phi(mu sqrt(2 N))``. The study compares (a) a per-instance classifier turned into a
set classifier by summing logits and (b) a deep-sets classifier trained on sets, at
equal total training events; and, for regression, a parametrised classifier's
maximum-likelihood estimate against the optimal estimator (the sample mean, variance
``1/N``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from jaxgen._checks import check_positive
from jaxgen.classifiers.classifier import DEFAULT_FIT_CONFIG
from jaxgen.classifiers.classifier import classifier_logits
from jaxgen.classifiers.classifier import train_classifier
from jaxgen.classifiers.multievent import deep_sets_classifier
from jaxgen.classifiers.multievent import set_logits_from_instance
from jaxgen.classifiers.parametrized import maximum_likelihood_theta
from jaxgen.classifiers.parametrized import parametrized_training_data
from jaxgen.metrics.classification import auc
from jaxgen.train import FitConfig


def analytic_auc(mu: float, set_size: int | jax.Array) -> jax.Array:
    """Optimal AUC ``Phi(mu sqrt(2 N))`` of ``N(+mu,1)`` vs ``N(-mu,1)`` sets of size N.

    Example:
      >>> from jaxgen.methods.multievent import analytic_auc
      >>> float(analytic_auc(0.0, 16)), bool(analytic_auc(0.1, 100) > analytic_auc(0.1, 1))
      (0.5, True)
    """
    return norm.cdf(mu * jnp.sqrt(2.0 * jnp.asarray(set_size, jnp.float32)))


def gaussian_sets(
    key: jax.Array, mu: float, n_sets: int, set_size: int
) -> tuple[jax.Array, jax.Array]:
    """Background and signal sets ``(n_sets, set_size, 1)`` from ``N(-mu,1)``, ``N(mu,1)``."""
    check_positive("n_sets", n_sets)
    check_positive("set_size", set_size)
    kb, ks = jax.random.split(key)
    shape = (n_sets, set_size, 1)
    return -mu + jax.random.normal(kb, shape), mu + jax.random.normal(ks, shape)


def auc_vs_set_size(
    key: jax.Array,
    *,
    mu: float,
    set_sizes: Sequence[int],
    n_train_events: int,
    n_test_sets: int,
    instance_config: FitConfig = DEFAULT_FIT_CONFIG,
    set_config: FitConfig = DEFAULT_FIT_CONFIG,
    phi_features: Sequence[int] = (32, 32),
    rho_features: Sequence[int] = (32,),
) -> dict[str, list[float]]:
    """AUC vs set size for summed per-instance logits, deep sets and the optimum.

    Both classifiers see ``n_train_events`` events per class: the per-instance one as
    single events, the deep-sets one as ``n_train_events // N`` sets of size ``N``.

    Returns:
      ``{"set_sizes", "analytic", "logit_sum", "deep_sets"}``, lists over set sizes.

    Example:
      >>> import jax
      >>> from jaxgen.methods.multievent import auc_vs_set_size
      >>> from jaxgen.train import FitConfig
      >>> short = FitConfig(epochs=1, batch_size=200, progress=False)
      >>> out = auc_vs_set_size(jax.random.key(0), mu=0.3, set_sizes=(1, 4), n_train_events=800,
      ...                       n_test_sets=100, instance_config=short, set_config=short,
      ...                       phi_features=(8,), rho_features=(8,))
      >>> [round(a, 3) for a in out["analytic"]]          # Phi(mu sqrt(2N))
      [0.664, 0.802]
      >>> len(out["logit_sum"]) == len(out["deep_sets"]) == 2
      True
    """
    check_positive("mu", mu)
    check_positive("n_train_events", n_train_events)
    check_positive("n_test_sets", n_test_sets)
    k_inst, k_sets, k_test = jax.random.split(key, 3)
    xb, xs = gaussian_sets(k_inst, mu, n_train_events, 1)
    inst, _ = train_classifier(k_inst, xb[:, 0], xs[:, 0], config=instance_config)
    out = {
        "set_sizes": [int(n) for n in set_sizes],
        "analytic": [],
        "logit_sum": [],
        "deep_sets": [],
    }
    for i, n in enumerate(set_sizes):
        tb, ts = gaussian_sets(jax.random.fold_in(k_test, i), mu, n_test_sets, n)
        labels = jnp.concatenate([jnp.zeros(n_test_sets), jnp.ones(n_test_sets)])
        test = jnp.concatenate([tb, ts])
        out["analytic"].append(float(analytic_auc(mu, n)))
        out["logit_sum"].append(float(auc(set_logits_from_instance(inst, test), labels)))
        n_sets = n_train_events // n
        sb, ss = gaussian_sets(jax.random.fold_in(k_sets, i), mu, n_sets, n)
        cfg = set_config
        if n_sets * (1 - cfg.val_fraction) * 2 < cfg.batch_size:
            cfg = FitConfig(**{**vars(cfg), "batch_size": max(int(n_sets * 2 * 0.5), 1)})
        ds, _ = train_classifier(
            jax.random.fold_in(k_sets, 1000 + i),
            sb,
            ss,
            model=deep_sets_classifier(phi_features, rho_features),
            config=cfg,
        )
        out["deep_sets"].append(float(auc(classifier_logits(ds, test), labels)))
    return out


def regression_study(
    key: jax.Array,
    *,
    mu_true: float,
    mu_low: float,
    mu_high: float,
    set_size: int,
    n_train: int,
    n_test_sets: int,
    config: FitConfig = DEFAULT_FIT_CONFIG,
    ref_events: int = 0,
) -> dict[str, float]:
    """Regression as parametrised classification vs the optimal estimator.

    A parametrised classifier ``f(x, mu)`` is trained between ``N(mu_ref, 1)`` and
    ``N(mu, 1)`` with ``mu ~ U[mu_low, mu_high]`` (``mu_ref`` the range's centre); the
    estimate of a test set of ``N`` events from ``N(mu_true, 1)`` maximises
    ``sum_i logit f(x_i, mu)`` (minus ``N`` times the log of the ratio's mean over
    ``ref_events`` reference events, if > 0). The optimal estimator is the sample mean.

    Returns:
      ``{"mle_mean", "mle_var", "mean_estimator_var", "optimal_var", "set_size"}``:
      the parametrised-classifier estimates' mean and variance, the sample mean's
      variance on the same sets and the Cramér-Rao value ``1/N``.
    """
    check_positive("set_size", set_size)
    check_positive("n_test_sets", n_test_sets)
    mu_ref = 0.5 * (mu_low + mu_high)
    k_data, k_fit, k_test = jax.random.split(key, 3)

    def simulator(k, theta):
        return theta + jax.random.normal(k, theta.shape)

    x0, x1, x_ref, _ = parametrized_training_data(
        k_data,
        simulator,
        theta_ref=[mu_ref],
        theta_low=[mu_low],
        theta_high=[mu_high],
        n=n_train,
    )
    clf, _ = train_classifier(k_fit, x0, x1, config=config)
    sets = mu_true + jax.random.normal(k_test, (n_test_sets, set_size, 1))
    ref = x_ref[:ref_events] if ref_events else None
    est = maximum_likelihood_theta(clf, sets, theta_low=[mu_low], theta_high=[mu_high], x_ref=ref)[
        :, 0
    ]
    means = jnp.mean(sets[..., 0], axis=-1)
    return {
        "set_size": int(set_size),
        "mle_mean": float(jnp.mean(est)),
        "mle_var": float(jnp.var(est, ddof=1)),
        "mean_estimator_var": float(jnp.var(means, ddof=1)),
        "optimal_var": 1.0 / set_size,
        "estimates": np.asarray(est).tolist(),
    }
