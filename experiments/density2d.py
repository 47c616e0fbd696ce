"""Flow density estimation on the standard 2D toys.

Claim (neural spline flows, arXiv:1906.04032; the 2D benchmarks of Flows for Flows,
arXiv:2211.02487, and Funnels, arXiv:2112.08069): an RQ-spline coupling flow fits
multimodal and discontinuous 2D densities; on the checkerboard, whose entropy is
log 32 = 3.4657 nats, its test NLL comes close to that bound.

Checks:
  * checkerboard test NLL - log 32 below ``max_entropy_gap`` nats (0.1 by default, the
    claim's "close to the bound"; the statistical error of the test NLL,
    std(log p) / sqrt(n_test) ~ 0.003 nats at 5e4 test points, is negligible beside it).
    The quick preset (``max_entropy_gap=None``, 6 epochs) leaves a training gap of
    0.16 nats, so there the claim is NOT CHECKED and the gap is only reported;
  * on every toy the flow beats a full-covariance Gaussian fitted to the same data by
    more than 3 standard errors of the paired test-NLL difference,
    std(log p_flow - log p_gauss) / sqrt(n_test).

Command::

    python -m experiments.density2d            # all toys, 1e5 events, 40 epochs (~15 min)
    python -m experiments.density2d --quick    # 4 toys, short training (~40 s)

Writes metrics.json (test NLL per toy, Gaussian baseline NLL, the checkerboard gap) and
samples_density.png (samples and log-density per toy).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import check_subset
from experiments import main
from experiments import not_checked
from jaxgen.data import toys
from jaxgen.flows import coupling_flow
from jaxgen.flows import fit_flow
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig


@dataclasses.dataclass(frozen=True)
class Config:
    """Density estimation on 2D toys."""

    toys: tuple[str, ...] = tuple(toys.TOYS_2D)
    n_train: int = 100_000
    n_test: int = 50_000
    num_layers: int = 8
    num_bins: int = 8
    tail_bound: float = 5.0
    hidden: tuple[int, ...] = (128, 128)
    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = 1e-3
    max_entropy_gap: float | None = 0.1  # None: the entropy claim is not checked
    seed: int = 0

    def __post_init__(self):
        check_subset("toys", self.toys, toys.TOYS_2D)
        check_positive_fields(self, ("n_train", "n_test", "num_layers", "num_bins", "epochs",
                                     "batch_size"))
        if self.learning_rate <= 0 or self.tail_bound <= 0:
            raise ValueError("`learning_rate` and `tail_bound` must be > 0.")
        if self.max_entropy_gap is not None and not self.max_entropy_gap > 0:
            raise ValueError("`max_entropy_gap` must be > 0 or None.")


QUICK = dict(
    toys=("checkerboard", "two_moons", "spirals", "ring_of_gaussians"),
    n_train=20_000,
    n_test=10_000,
    num_layers=6,
    hidden=(64, 64),
    epochs=6,
    batch_size=256,
    learning_rate=3e-3,
    max_entropy_gap=None,  # 6 epochs leave a 0.16-nat training gap: not checked
)


def gaussian_log_prob(train: jax.Array, test: jax.Array) -> jax.Array:
    """Per-point log-density of the maximum-likelihood full-covariance Gaussian of ``train``."""
    mean = jnp.mean(train, axis=0)
    cov = jnp.cov(train.T)
    d = test - mean
    maha = jnp.einsum("ni,ij,nj->n", d, jnp.linalg.inv(cov), d)
    return -0.5 * maha - 0.5 * jnp.linalg.slogdet(2 * math.pi * cov)[1]


def gaussian_nll(train: jax.Array, test: jax.Array) -> float:
    """Test NLL of the maximum-likelihood full-covariance Gaussian of ``train``."""
    return float(-jnp.mean(gaussian_log_prob(train, test)))


def run(config: Config, workdir=None) -> dict:
    """Fits one flow per toy; returns test NLLs and the checks."""
    key = jax.random.key(config.seed)
    fit_cfg = FitConfig(epochs=config.epochs, batch_size=config.batch_size,
                        learning_rate=config.learning_rate, val_fraction=0.1, patience=None,
                        progress=False)
    results, panels = {}, []
    for i, name in enumerate(config.toys):
        k_data, k_test, k_init, k_fit, k_sample = jax.random.split(jax.random.fold_in(key, i), 5)
        sampler = jax.jit(toys.TOYS_2D[name], static_argnums=1)
        train, test = sampler(k_data, config.n_train), sampler(k_test, config.n_test)
        flow, params = coupling_flow(k_init, dim=2, num_layers=config.num_layers,
                                     num_bins=config.num_bins, tail_bound=config.tail_bound,
                                     hidden=config.hidden)
        fitted = fit_flow(k_fit, flow, params, train, config=fit_cfg)
        log_prob = jax.jit(flow.log_prob)
        lp = log_prob(fitted.params, test)
        lp_gauss = gaussian_log_prob(train, test)
        diff = lp - lp_gauss
        results[name] = {"test_nll": float(-jnp.mean(lp)),
                         "gaussian_nll": float(-jnp.mean(lp_gauss)),
                         "test_nll_se": float(jnp.std(lp) / math.sqrt(config.n_test)),
                         "gain_over_gaussian_se": float(jnp.std(diff) / math.sqrt(config.n_test))}
        if workdir is not None:
            samples = flow.sample(fitted.params, k_sample, 20_000)
            g = jnp.linspace(-5.0, 5.0, 200)
            grid = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
            dens = np.asarray(log_prob(fitted.params, grid)).reshape(200, 200)
            panels.append((name, np.asarray(test[:20_000]), np.asarray(samples), dens))

    metrics: dict = {"toys": results}
    checks = []
    if "checkerboard" in results:
        gap = results["checkerboard"]["test_nll"] - toys.CHECKERBOARD_ENTROPY
        metrics["checkerboard_entropy"] = toys.CHECKERBOARD_ENTROPY
        metrics["checkerboard_entropy_gap"] = gap
        claim = "checkerboard test NLL close to its entropy log 32 = 3.466 nats"
        if config.max_entropy_gap is None:
            checks.append(not_checked(claim, "6 epochs leave a training gap (0.16 nats "
                                      "measured); the full preset (40 epochs) checks < 0.1",
                                      gap))
        else:
            checks.append(check(f"{claim} (gap < {config.max_entropy_gap})", gap,
                                gap < config.max_entropy_gap))
    # the flow's gain is tested on the same test points as the Gaussian's: paired SE
    better = {n: r["gaussian_nll"] - r["test_nll"] > 3 * r["gain_over_gaussian_se"]
              for n, r in results.items()}
    checks.append(check("flow beats a Gaussian fit on every toy (test NLL lower by > 3 "
                        "paired SE)", f"{sum(better.values())}/{len(better)}",
                        all(better.values())))
    metrics["checks"] = checks
    if workdir is not None:
        _plot(panels, workdir / "samples_density.png")
    return metrics


def _plot(panels, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, len(panels), figsize=(3 * len(panels), 9), squeeze=False)
    for j, (name, data, samples, dens) in enumerate(panels):
        for row, pts, title in ((0, data, f"{name}: data"), (1, samples, "flow samples")):
            axes[row, j].hist2d(pts[:, 0], pts[:, 1], bins=100, range=[[-5, 5], [-5, 5]],
                                cmap="viridis")
            axes[row, j].set_title(title)
        axes[2, j].imshow(np.exp(dens), origin="lower", extent=[-5, 5, -5, 5], cmap="viridis")
        axes[2, j].set_title("flow density")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
