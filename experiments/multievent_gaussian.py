"""Multi-event vs per-instance classifiers, and regression as parametrised classification.

Paper: Nachman & Thaler, "E Pluribus Unum Ex Machina: Learning from Many Collider Events
at Once", PRD 103 (2021) 116013, arXiv:2101.07263.

Claims: (1) for independent events the optimal set classifier is the sum of per-event
logits, so a per-instance classifier reaches the analytic optimum AUC = Phi(mu sqrt(2N))
for signal N(+mu,1) vs background N(-mu,1) at every set size N, and a deep-sets
classifier trained on sets (same total events) does no better; (2) a parametrised
classifier's maximum-likelihood estimate of mu from N events reaches the optimal
estimator's variance 1/N.

Command: ``python -m experiments.multievent_gaussian [--quick]``.
Expected (quick, 2 cores, ~30 s): logit-sum AUC within 0.02 of Phi(mu sqrt(2N)) for
N in (1, 5, 20); deep sets not above the optimum by more than 0.02; MLE variance within
30% of 1/N.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from jaxgen.methods import multievent as me
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig


@dataclasses.dataclass(frozen=True)
class Config:
    """Gaussian multi-event study (mu and sizes are this implementation's choices)."""

    seed: int = 0
    mu: float = 0.1
    set_sizes: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    n_train_events: int = 100_000
    n_test_sets: int = 20_000
    epochs: int = 30
    batch_size: int = 1000
    set_batch_size: int = 100
    reg_mu_true: float = 0.3
    reg_mu_low: float = -1.0
    reg_mu_high: float = 1.0
    reg_set_size: int = 20
    reg_n_train: int = 100_000
    reg_test_sets: int = 2000
    auc_tolerance: float = 0.02
    var_tolerance: float = 0.3

    def __post_init__(self):
        check_positive_fields(self, ("n_train_events", "n_test_sets", "epochs", "batch_size",
                                     "set_batch_size", "reg_set_size", "reg_n_train",
                                     "reg_test_sets"))
        if self.mu <= 0 or not self.set_sizes or min(self.set_sizes) < 1:
            raise ValueError("`mu` must be > 0 and `set_sizes` positive integers.")
        if not self.reg_mu_low < self.reg_mu_true < self.reg_mu_high:
            raise ValueError("`reg_mu_true` must lie inside (reg_mu_low, reg_mu_high).")


QUICK = {
    "set_sizes": (1, 5, 20),
    "n_train_events": 20_000,
    "n_test_sets": 4000,
    "epochs": 10,
    "batch_size": 500,
    "reg_n_train": 20_000,
    "reg_test_sets": 500,
}


def run(config: Config, workdir=None) -> dict:
    """Runs the AUC-vs-N study and the regression study."""
    k_auc, k_reg = jax.random.split(jax.random.PRNGKey(config.seed))
    inst_cfg = FitConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        schedule="constant",
        clip_norm=None,
        progress=False,
    )
    set_cfg = dataclasses.replace(inst_cfg, batch_size=config.set_batch_size)
    study = me.auc_vs_set_size(
        k_auc,
        mu=config.mu,
        set_sizes=config.set_sizes,
        n_train_events=config.n_train_events,
        n_test_sets=config.n_test_sets,
        instance_config=inst_cfg,
        set_config=set_cfg,
    )
    reg = me.regression_study(
        k_reg,
        mu_true=config.reg_mu_true,
        mu_low=config.reg_mu_low,
        mu_high=config.reg_mu_high,
        set_size=config.reg_set_size,
        n_train=config.reg_n_train,
        n_test_sets=config.reg_test_sets,
        config=inst_cfg,
    )
    est = reg.pop("estimates")
    an, ls, ds = (np.array(study[k]) for k in ("analytic", "logit_sum", "deep_sets"))
    tol = config.auc_tolerance
    checks = [
        check(
            f"summed per-instance logits reach Phi(mu sqrt(2N)) (max |dAUC| < {tol})",
            float(np.abs(ls - an).max()),
            bool(np.abs(ls - an).max() < tol),
        ),
        check(
            f"deep sets trained on sets do not beat the optimum (max excess < {tol})",
            float((ds - an).max()),
            bool((ds - an).max() < tol),
        ),
        check(
            f"parametrised-classifier MLE variance within {config.var_tolerance:.0%} of 1/N",
            reg["mle_var"] / reg["optimal_var"],
            abs(reg["mle_var"] / reg["optimal_var"] - 1) < config.var_tolerance,
        ),
    ]
    if workdir is not None:
        _plot(workdir, study, est, reg, config)
    return {"auc_vs_n": study, "regression": reg, "checks": checks}


def _plot(workdir, study, est, reg, config):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    n = study["set_sizes"]
    ax[0].plot(n, study["analytic"], "k-", label="optimal Phi(mu sqrt(2N))")
    ax[0].plot(n, study["logit_sum"], "o", label="sum of per-instance logits")
    ax[0].plot(n, study["deep_sets"], "s", label="deep sets on sets")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("set size N")
    ax[0].set_ylabel("AUC")
    ax[0].legend()
    ax[1].hist(est, 30, histtype="step", density=True, label="parametrised-classifier MLE")
    t = np.linspace(min(est), max(est), 200)
    s = np.sqrt(reg["optimal_var"])
    ax[1].plot(
        t,
        np.exp(-0.5 * ((t - config.reg_mu_true) / s) ** 2) / (s * np.sqrt(2 * np.pi)),
        "k:",
        label="optimal N(mu, 1/N)",
    )
    ax[1].set_xlabel("mu estimate")
    ax[1].legend()
    fig.tight_layout()
    save_figure(fig, workdir / "multievent_gaussian.png", dpi=100)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
