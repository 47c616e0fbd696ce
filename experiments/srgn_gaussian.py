r"""SRGN on Gaussians: 1D mu and 2D (mu, sigma) fits at generator and detector level.

Paper: Andreassen, Hsu, Nachman, Suaysom, Suresh, "Parameter estimation using neural
networks in the presence of detector effects", PRD 103 (2021) 036001, arXiv:2010.03569
(notebooks ``hep-lbdl/SRGN/Gaussian-Example/1D-Gaussian.ipynb``, ``2D-Gaussian.ipynb``).

Claim: a generator-level parametrised reweighter plus a detector-level classifier that
cannot tell reweighted simulation from data recovers the true parameters at both levels:
1D mu_true = 1 (paper: 1.000 at gen and sim level), 2D (mu, sigma) = (-1, 0.75) (paper:
gen (-1.010, 0.741), sim (-1.010, 0.738)); the AUC scan falls from ~0.98 at mu = -2 to
0.5 at mu_true, with a shallower slope at detector level. Smearing 0.5.

Every run fits two truths per problem: the paper's (points of the coarse scan grids) and
a second pair off every grid (``mu_off``, ``(mu2_off, sigma2_off)``), so a fit that
only returns grid points fails. The fit (``jaxgen.methods.srgn.fit``) minimises the
held-out classifier divergence with quadratic surrogates over a coarse scan and
zoomed scans. Tolerances are 4 standard deviations of the estimator, derived from the sample
sizes (see ``_estimator_sd``); the reweighter and both truth pairs share one nominal
sample.

Command: ``python -m experiments.srgn_gaussian [--quick]``.
Expected (quick, ~110 s on 2 shared cores; the old grid-only fit took ~90 s with one
truth per problem): every fit within its derived 4 sd (1D: 0.11 at gen and 0.12 at
sim level for mu = 1; 2D at (-0.62, 0.88): (0.077, 0.055) gen, (0.089, 0.072) sim);
measured (seed 0) 1D 0.989 / 0.992 (mu = 1) and 0.825 / 0.819 (mu = 0.83), 2D
(-0.982, 0.767) / (-0.993, 0.751) and (-0.596, 0.863) / (-0.617, 0.865); seed 1 gives
sigma = 0.800 at gen level for (-1, 0.75), 3.7 sd high (with exact weights too, so not
the reweighter): a possible small sigma bias of the divergence fit at low effective
sample size, unresolved. Fitted AUCs within their derived bounds of 1/2. The quick
preset narrows sigma to [0.5, 1.5] (the paper's [0.25, 4] with a 5-point grid wastes
the scan on weights of tiny effective sample size). The default preset has not been
run since the fit changed (CPU budget).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from jaxgen.methods import dctr
from jaxgen.methods import srgn
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig

#: Fraction of both samples ``srgn.fit`` holds out to score a candidate.
_TEST_FRACTION = 0.5
#: Standard deviations allowed between a fit and its truth.
_N_SD = 4.0


@dataclasses.dataclass(frozen=True)
class Config:
    """Notebook-like settings, scaled to CPU budgets (the paper trains on 1e7 pairs)."""

    seed: int = 0
    smearing: float = 0.5
    n_reweighter: int = 200_000  # events per class for the generator-level reweighter
    reweighter_epochs: int = 50
    reweighter_lr: float = 1e-3
    reweighter_batch: int = 1000
    n_ref: int = 100_000  # nominal (gen, sim) pairs
    n_data: int = 100_000
    mu_true: float = 1.0
    mu_off: float = 0.83  # second 1D truth, on no scan grid
    mu_low: float = -2.0
    mu_high: float = 2.0
    mu2_true: float = -1.0
    sigma2_true: float = 0.75
    mu2_off: float = -0.62  # second 2D truth, on no scan grid
    sigma2_off: float = 0.88
    sigma_low: float = 0.25
    sigma_high: float = 4.0
    grid_1d: int = 21
    grid_2d: int = 7
    fit_epochs: int = 20
    zoom_scans: int = 2  # zoomed scans after the coarse one
    max_evaluations: int = 10_000  # cap on candidates after the coarse scan (0: none)
    run_2d: bool = True

    def __post_init__(self):
        check_positive_fields(self, ("n_reweighter", "reweighter_epochs", "reweighter_lr",
                                     "reweighter_batch", "n_ref", "n_data", "grid_1d",
                                     "grid_2d", "fit_epochs"))
        if self.max_evaluations < 0 or self.zoom_scans < 0 or self.smearing <= 0:
            raise ValueError("`max_evaluations` and `zoom_scans` must be >= 0 and "
                             "`smearing` > 0.")
        for name in ("mu_true", "mu_off", "mu2_true", "mu2_off"):
            if not self.mu_low < getattr(self, name) < self.mu_high:
                raise ValueError(f"`{name}` must lie inside (mu_low, mu_high).")
        for name in ("sigma2_true", "sigma2_off"):
            # Weights N(mu, sigma) / N(0, 1) have a finite variance only for sigma^2 < 2.
            if not self.sigma_low < getattr(self, name) < min(self.sigma_high, math.sqrt(2)):
                raise ValueError(f"`{name}` must lie inside (sigma_low, min(sigma_high, "
                                 "sqrt 2)).")


QUICK = {
    "n_reweighter": 50_000,
    "reweighter_epochs": 15,
    # Measured on 1e5 events at (-0.62, 0.88): lr 1e-3 / batch 1000 gives reweighted
    # (mean, sd) (-0.787, 0.834); lr 3e-3 / batch 500 (-0.629, 0.896).
    "reweighter_lr": 3e-3,
    "reweighter_batch": 500,
    "n_ref": 10_000,
    "n_data": 10_000,
    "grid_1d": 9,
    "grid_2d": 5,
    "sigma_low": 0.5,  # narrower than the paper's [0.25, 4] to fit the quick budget
    "sigma_high": 1.5,
    # 6 epochs of 20 batches: fits measured within 0.007 of 10 epochs' (seed 0).
    "fit_epochs": 6,
    "zoom_scans": 2,
}


def _sim_1d(key, theta):
    return theta + jax.random.normal(key, theta.shape)


def _sim_2d(key, theta):
    return theta[:, :1] + theta[:, 1:] * jax.random.normal(key, (theta.shape[0], 1))


def _fit_cfg(config):
    return dataclasses.replace(srgn.SRGN_FIT_CONFIG, epochs=config.fit_epochs)


def _second_moment_of_weights(mu, sigma):
    """``E_0[w^2]`` of ``w = N(x; mu, sigma^2) / N(x; 0, 1)`` under ``N(0, 1)``."""
    a = 1.0 / sigma**2 - 0.5
    return math.sqrt(math.pi / a) / (sigma**2 * math.sqrt(2 * math.pi)) * math.exp(
        mu**2 / (sigma**4 * a) - mu**2 / sigma**2
    )


def _estimator_sd(config, mu, sigma, level):
    r"""Standard deviations of ``(mu_hat, sigma_hat)`` of a Gaussian-moment fit.

    The fit scores candidates on the held-out halves: ``n_d`` data events and ``n_s``
    nominal events reweighted to the truth, whose weighted means have the variance of
    ``n_s / E_0[w^2]`` unweighted events (Kish). At the truth the classifier matches
    the mean and width of the observed ``N(mu, s^2)``, ``s^2 = sigma^2 + eps^2`` at
    detector level (``eps^2 = 0`` at generator level), so with
    ``k = sqrt(1/n_d + E_0[w^2]/n_s)``: ``sd(mu_hat) = s k`` (in 1D, ``sigma = 1``:
    ``sqrt(1 + eps^2) k``, the issue's ``sqrt(1 + eps^2) / sqrt(N)`` for both samples
    and the halves) and, from ``sd(s_hat) = s k / sqrt 2`` and
    ``d sigma = (s / sigma) d s``, ``sd(sigma_hat) = s^2 k / (sqrt 2 sigma)``. Training
    noise and the reweighter's error add to this (see the tolerance comment in ``run``).
    """
    eps2 = config.smearing**2 if level == "sim" else 0.0
    s2 = sigma**2 + eps2
    n_d = config.n_data * _TEST_FRACTION
    n_s = config.n_ref * _TEST_FRACTION
    k = math.sqrt(1.0 / n_d + _second_moment_of_weights(mu, sigma) / n_s)
    return math.sqrt(s2) * k, s2 * k / (math.sqrt(2) * sigma), k


def _auc_bound(config, mu, sigma, level):
    r"""Bound on the AUC at the fit: ``1/2 + 4 sd``.

    With the candidate at the truth, a classifier trained on the other half is
    independent of the held-out events, so its AUC is 1/2 with variance
    ``(1/n_s_eff + 1/n_d) / 12`` (Mann-Whitney, no signal; ``n_s_eff = n_s/E_0[w^2]``).
    A fit off by ``d`` in mu adds ``|d| / (2 sqrt(pi) s)`` (AUC of two Gaussians of width
    ``s``, linearised); with ``d`` of one ``sd(mu_hat)`` this adds in quadrature.
    """
    sd_mu, _, k = _estimator_sd(config, mu, sigma, level)
    s = sd_mu / k
    var = k**2 / 12 + (sd_mu / (2 * math.sqrt(math.pi) * s)) ** 2
    return 0.5 + _N_SD * math.sqrt(var)


def _reweighter(key, config, simulator, theta_ref, low, high):
    rw_cfg = FitConfig(
        epochs=config.reweighter_epochs,
        batch_size=config.reweighter_batch,
        learning_rate=config.reweighter_lr,
        schedule="cosine",
        clip_norm=None,
        patience=10,
        progress=False,
    )
    return dctr.train(
        key,
        simulator,
        theta_ref=theta_ref,
        theta_low=low,
        theta_high=high,
        n=config.n_reweighter,
        config=rw_cfg,
    )


def _one_problem(key, config, simulator, theta_ref, low, high, truths, grid):
    """Fits every truth in ``truths`` at both levels with one reweighter and nominal sample."""
    k_rw, k_ref, k_sm, k_data, k_fit = jax.random.split(key, 5)
    rw = _reweighter(k_rw, config, simulator, theta_ref, low, high)
    p = len(theta_ref)
    gen = simulator(k_ref, jnp.broadcast_to(jnp.asarray(theta_ref), (config.n_ref, p)))
    sim = gen + config.smearing * jax.random.normal(k_sm, gen.shape)
    budget = min(config.max_evaluations, config.zoom_scans * grid**p)
    results = []
    for k_truth, truth in zip(jax.random.split(k_data, len(truths)), truths, strict=True):
        k_gd, k_dsm = jax.random.split(k_truth)
        gen_d = simulator(k_gd, jnp.broadcast_to(jnp.asarray(truth), (config.n_data, p)))
        sim_d = gen_d + config.smearing * jax.random.normal(k_dsm, gen_d.shape)
        out = {"truth": list(truth)}
        for level, ref, data in (("gen", gen, gen_d), ("sim", sim, sim_d)):
            r = srgn.fit(
                k_fit,
                rw,
                gen_ref=gen,
                sim_ref=ref,
                data=data,
                theta_low=low,
                theta_high=high,
                grid_size=grid,
                max_evaluations=budget,
                config=_fit_cfg(config),
            )
            out[level] = {
                "theta": np.asarray(r.theta).tolist(),
                "auc": r.auc,
                "scan_thetas": np.asarray(r.scan_thetas).tolist(),
                "scan_aucs": np.asarray(r.scan_aucs).tolist(),
                "scan_divergences": np.asarray(r.scan_values).tolist(),
                "evaluations": r.evaluations,
            }
        results.append(out)
    return results


def _grid_label(values, lows, highs, size):
    """Whether a truth is a point of the coarse scan grid."""
    u = [(v - lo) / ((hi - lo) / (size - 1)) for v, lo, hi in zip(values, lows, highs,
                                                                  strict=True)]
    on = all(abs(x - round(x)) < 1e-6 for x in u)
    return "a coarse-grid point" if on else "off the coarse grid"


def run(config: Config, workdir=None) -> dict:
    """Runs the 1D (and 2D) SRGN fits at two truths each; returns fits and AUC scans."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(config.seed))
    fits_1d = _one_problem(
        k1,
        config,
        _sim_1d,
        [0.0],
        [config.mu_low],
        [config.mu_high],
        [[config.mu_true], [config.mu_off]],
        config.grid_1d,
    )
    # Tolerances: 4 sd of the estimator (``_estimator_sd``). Training noise is small
    # next to it: with common random numbers the scanned divergence is smooth in theta,
    # the least-squares vertex averages the scan noise over the lattice, and 6 instead
    # of 10 training epochs move the quick fits by <= 0.007 (< 0.3 sd). The quick
    # reweighter's own error (reweighted moments off by <= 0.02 at the truths, see
    # QUICK) is a bias of up to ~1 sd that the 4 sd leave room for.
    checks = []
    for fit in fits_1d:
        mu_t = fit["truth"][0]
        label = _grid_label([mu_t], [config.mu_low], [config.mu_high], config.grid_1d)
        for level in ("gen", "sim"):
            mu = fit[level]["theta"][0]
            sd, _, _ = _estimator_sd(config, mu_t, 1.0, level)
            checks.append(
                check(
                    f"1D SRGN fit at {level} level recovers mu={mu_t} ({label}; paper 1.000 "
                    f"at mu=1) within {_N_SD:g} sd = {_N_SD * sd:.3f}",
                    round(mu, 4),
                    abs(mu - mu_t) < _N_SD * sd,
                    sd=sd,
                )
            )
            bound = _auc_bound(config, mu_t, 1.0, level)
            checks.append(
                check(
                    f"1D {level}-level AUC at the fit (mu={mu_t}) close to 0.5 "
                    f"(< {bound:.3f}, 1/2 + 4 sd)",
                    round(fit[level]["auc"], 4),
                    fit[level]["auc"] < bound,
                )
            )
    metrics = {"fit_1d": fits_1d[0], "fit_1d_off_grid": fits_1d[1]}
    if config.run_2d:
        fits_2d = _one_problem(
            k2,
            config,
            _sim_2d,
            [0.0, 1.0],
            [config.mu_low, config.sigma_low],
            [config.mu_high, config.sigma_high],
            [[config.mu2_true, config.sigma2_true], [config.mu2_off, config.sigma2_off]],
            config.grid_2d,
        )
        for fit in fits_2d:
            mu_t, sigma_t = fit["truth"]
            label = _grid_label([mu_t, sigma_t], [config.mu_low, config.sigma_low],
                                [config.mu_high, config.sigma_high], config.grid_2d)
            for level in ("gen", "sim"):
                th = fit[level]["theta"]
                sd_mu, sd_sigma, _ = _estimator_sd(config, mu_t, sigma_t, level)
                ok = (abs(th[0] - mu_t) < _N_SD * sd_mu
                      and abs(th[1] - sigma_t) < _N_SD * sd_sigma)
                checks.append(
                    check(
                        f"2D SRGN fit at {level} level recovers (mu, sigma)=({mu_t}, "
                        f"{sigma_t}) ({label}) within {_N_SD:g} sd = "
                        f"({_N_SD * sd_mu:.3f}, {_N_SD * sd_sigma:.3f}) (paper gen "
                        "(-1.010, 0.741), sim (-1.010, 0.738) at (-1, 0.75))",
                        f"({th[0]:.3f}, {th[1]:.3f})",
                        ok,
                        sd=[sd_mu, sd_sigma],
                    )
                )
        metrics["fit_2d"] = fits_2d[0]
        metrics["fit_2d_off_grid"] = fits_2d[1]
    metrics["checks"] = checks
    if workdir is not None:
        _plot(workdir, fits_1d, config)
    return metrics


def _plot(workdir, fits, config):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for fit, style in zip(fits, ("o-", "s--"), strict=True):
        for level in ("gen", "sim"):
            t = np.asarray(fit[level]["scan_thetas"])[:, 0]
            ax.plot(t, fit[level]["scan_aucs"], style,
                    label=f"{level} level, mu_true={fit['truth'][0]}")
        ax.axvline(fit["truth"][0], color="k", ls=":", lw=1)
    ax.set_xlabel("mu")
    ax.set_ylabel("AUC (data vs reweighted simulation)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, workdir / "srgn_gaussian.png", dpi=100)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
