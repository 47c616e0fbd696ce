"""Smoke tests: each experiment runs end to end on its quick preset shrunk further (the
test budget of the whole directory is 180 s on 2 cores) and reports its metrics."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import make_config
from experiments import run_experiment
from jaxgen.methods.multievent import analytic_auc

TINY = {
    "dctr_gaussian": {
        "n_train": 5000,
        "epochs": 2,
        "n_eval": 2000,
        "n_data": 2000,
        "fit_epochs": 3,
        "scan_points": 5,
    },
    "srgn_gaussian": {
        "n_reweighter": 4000,
        "reweighter_epochs": 2,
        "n_ref": 4000,
        "n_data": 4000,
        "grid_1d": 3,
        "fit_epochs": 1,
        "max_evaluations": 0,
        "run_2d": False,
    },
    "omnifold_gaussian": {"n": 4000, "iterations": 1, "epochs": 1, "batch_size": 1000},
    "omnifold_multidim": {"n": 4000, "iterations": 1, "epochs": 1, "batch_size": 1000},
    "multievent_gaussian": {
        "set_sizes": (1, 4),
        "n_train_events": 2000,
        "n_test_sets": 200,
        "epochs": 1,
        "reg_n_train": 2000,
        "reg_test_sets": 20,
    },
}
KEYS = {
    "dctr_gaussian": ["mu_fit", "reweighting", "loss_scan"],
    "srgn_gaussian": ["fit_1d"],
    "omnifold_gaussian": ["unfolded_mean", "unfolded_std", "ibu_mean", "ibu_std", "variant"],
    "omnifold_multidim": ["triangular_x1e3"],
    "multievent_gaussian": ["auc_vs_n", "regression"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_experiment_runs(name, tmp_path):
    module = importlib.import_module(f"experiments.{name}")
    config = make_config(module.Config, module.QUICK, **TINY[name])
    metrics, workdir = run_experiment(module, config, tmp_path)
    for key in KEYS[name] + ["checks", "seconds"]:
        assert key in metrics
    assert json.loads((workdir / "metrics.json").read_text())["checks"]
    assert list(workdir.glob("*.png"))
    if name == "omnifold_gaussian":
        assert len(metrics["unfolded_mean"]) == len(metrics["unfolded_std"]) == 1


def test_quick_presets_are_valid_configs():
    for name in TINY:
        module = importlib.import_module(f"experiments.{name}")
        make_config(module.Config, module.QUICK)
        with pytest.raises(ValueError, match="unknown config key"):
            make_config(module.Config, module.QUICK, not_a_field=1)


def test_analytic_multi_event_auc_table():
    # Phi(mu sqrt(2N)) values from the notes (arXiv:2101.07263 toy).
    got = [float(analytic_auc(0.1, n)) for n in (1, 2, 5, 10, 20, 50, 100)]
    np.testing.assert_allclose(
        got, [0.5562, 0.5793, 0.6241, 0.6726, 0.7365, 0.8413, 0.9214], atol=1e-4
    )


def test_dctr_moment_standard_errors_match_simulation():
    """The delta-method standard errors used by the dctr_gaussian checks match a simulation.

    Each of the 400 replicas computes the exactly weighted mean and std of 20,000 N(0,1)
    events reweighted to N(mu,1); the spread of 400 replicas estimates a standard error to
    a relative precision of 1/sqrt(2 * 399) = 3.5%, so 15% is a 4-sigma band (plus the
    O(1/n) delta-method error, negligible here).
    """
    from experiments.dctr_gaussian import moment_standard_errors

    n = 20_000
    for mu in (-1.5, 1.0):

        def moments(key, mu=mu):
            x = jax.random.normal(key, (n,))
            w = jnp.exp(mu * x - mu**2 / 2)
            m = jnp.sum(w * x) / jnp.sum(w)
            return m, jnp.sqrt(jnp.sum(w * (x - m) ** 2) / jnp.sum(w))

        m, s = jax.jit(jax.vmap(moments))(jax.random.split(jax.random.key(3), 400))
        se_mean, se_std = moment_standard_errors(mu, n)
        np.testing.assert_allclose(float(jnp.std(m)), se_mean, rtol=0.15)
        np.testing.assert_allclose(float(jnp.std(s)), se_std, rtol=0.15)
