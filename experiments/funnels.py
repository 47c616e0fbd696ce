"""Funnels: exact maximum likelihood with a reduced latent space.

Claim (Klein, Raine, Pina-Otey, Voloshynovskiy, Golling, arXiv:2112.08069): funnel
flows, which drop coordinates inside the flow and model them with a learned
conditional density, "improve upon or match the performance of existing flows while
having a reduced latent space", and their likelihood stays exact. Here:

  (a) 2D checkerboard (entropy log 32 = 3.466 nats): RQ-spline coupling flow with a
      final coupling funnel 2 -> 1 (conditional spline-flow decoder, as the paper's
      SurNSF) against the same flow with one more bijective layer;
  (b) a d-dimensional hyper-checkerboard (entropy log(8^d / 2)) and a correlated
      Gaussian (entropy 1/2 log det(2 pi e Sigma)): test NLL minus the exact entropy;
  (c) the 8x8 handwritten digits of scikit-learn (17 grey levels, dequantised, logit):
      bits/dim and latent size of a funnel flow (coupling layers, a 2x2 funnel
      convolution 64 -> 16, coupling layers) against a bijective flow with the same
      number of coupling layers, and a grid of samples.

Checks: on each task the funnel's test NLL (or bits/dim) is within 3 standard errors of
the bijective flow's or better, with a smaller latent space. Both are evaluated on the
same test events, so the error is that of the paired difference,
std(log p_funnel - log p_bijective) / sqrt(n_test) (divided by 64 ln 2 for bits/dim); it
covers the test sample, not the seed-to-seed training spread. The checkerboard gap to
its entropy is below ``max_entropy_gap`` (0.15 nats, the claim's "close to the bound";
the test NLL's own error, std(log p) / sqrt(5e4), is ~0.003); the quick preset, seconds
of affine-coupling training, cannot approach the bound (gap ~1 nat), so there it is NOT
CHECKED (``max_entropy_gap=None``).
The hyper-checkerboard and Gaussian gaps to the exact entropy are reported.

Command::

    python -m experiments.funnels            # full sizes (~6 min on 2 CPU cores)
    python -m experiments.funnels --quick    # seconds of training per model (~60-90 s)

Measured (full preset, each part run separately on a contended 2-core CPU): checkerboard
NLL 3.568 (funnel, latent 1, 43k params) vs 3.602 (bijective, 31k), entropy 3.466, 40 s;
hyper-checkerboard d=4 gap 0.695 vs 0.710 nats; Gaussian d=8 gap 0.944 vs 1.079 (both
flows are far from this near-degenerate Gaussian's entropy after 1000 steps; 170 s for
both); digits 2.139 (latent 16, 630k params) vs 2.173 bits/dim (latent 64, 925k), 150 s.
Quick preset (affine couplings and a Gaussian decoder on the toys, seconds of training,
far from converged; 58 s CPU): checkerboard 4.49 vs 4.52; hyper-checkerboard d=3 gap
1.22 vs 1.23; Gaussian d=4 gap 0.32 vs 0.45; digits 2.65 vs 2.68 bits/dim.
Writes metrics.json, checkerboard.png and digits_samples.png.
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
from jaxgen.data.digits import load_digits
from jaxgen.flows import AffineTransformer
from jaxgen.flows import CouplingLayer
from jaxgen.flows import FunnelConv2d
from jaxgen.flows import Logit
from jaxgen.flows import SplineTransformer
from jaxgen.flows import Stack
from jaxgen.flows import SurjectiveFlow
from jaxgen.flows import UniformDequantization
from jaxgen.flows import bits_per_dim
from jaxgen.flows import funnel_flow
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig
from jaxgen.train import fit

DIGIT_LEVELS = 17  # scikit-learn's digits take the values 0..16


PARTS = ("checkerboard", "hyper_checkerboard", "gaussian", "digits")


@dataclasses.dataclass(frozen=True)
class Config:
    """Funnel flows against bijective flows on toy, Gaussian and image data."""

    parts: tuple[str, ...] = PARTS

    # (a) checkerboard, paper: 1e5 points, batch 1000, 10 epochs, lr 1e-3, 10 bins, tail 4
    n_train: int = 100_000
    n_test: int = 50_000
    num_layers: int = 4
    hidden: tuple[int, ...] = (64, 64)
    num_bins: int = 10
    tail_bound: float = 4.0
    transformer: str = "rqs"
    decoder: str = "flow"
    val_fraction: float = 0.1
    epochs: int = 10
    batch_size: int = 1000
    learning_rate: float = 1e-3
    # (b) hyper-checkerboard and correlated Gaussian
    hyper_dim: int = 4
    hyper_latent: int = 2
    gauss_dim: int = 8
    gauss_rank: int = 2
    gauss_latent: int = 4
    # (c) digits
    digits_layers: int = 4
    digits_hidden: tuple[int, ...] = (128, 128)
    digits_epochs: int = 200
    digits_batch_size: int = 128
    digits_learning_rate: float = 1e-3
    digits_eval_draws: int = 8
    # checks
    max_entropy_gap: float | None = 0.15  # None: the entropy claim is not checked
    seed: int = 0

    def __post_init__(self):
        check_subset("parts", self.parts, PARTS)
        check_positive_fields(self, ("n_train", "n_test", "num_layers", "num_bins", "epochs",
                                     "batch_size", "hyper_dim", "hyper_latent", "gauss_dim",
                                     "gauss_rank", "gauss_latent", "digits_layers", "digits_epochs",
                                     "digits_batch_size", "digits_eval_draws", "learning_rate",
                                     "digits_learning_rate", "tail_bound"))
        if self.max_entropy_gap is not None and not self.max_entropy_gap > 0:
            raise ValueError("`max_entropy_gap` must be > 0 or None.")
        if not 1 <= self.hyper_latent < self.hyper_dim or self.hyper_dim < 2:
            raise ValueError(f"`hyper_latent` must be in [1, hyper_dim) with hyper_dim >= 2; "
                             f"got {self.hyper_latent}, {self.hyper_dim}.")
        if not self.gauss_rank <= self.gauss_latent < self.gauss_dim:
            raise ValueError("`gauss_latent` must be in [gauss_rank, gauss_dim); got "
                             f"{self.gauss_latent} (rank {self.gauss_rank}, dim {self.gauss_dim}).")
        if self.transformer not in ("rqs", "affine"):
            raise ValueError(f"`transformer` must be 'rqs' or 'affine'; got {self.transformer!r}.")
        if self.decoder not in ("flow", "gaussian"):
            raise ValueError(f"`decoder` must be 'flow' or 'gaussian'; got {self.decoder!r}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in [0, 1); got {self.val_fraction}.")
        if not self.hidden or not self.digits_hidden:
            raise ValueError("`hidden` and `digits_hidden` must be non-empty.")


QUICK = dict(
    transformer="affine",
    decoder="gaussian",
    val_fraction=0.0,
    n_train=20_000,
    n_test=10_000,
    num_layers=2,
    hidden=(32, 32),
    epochs=3,
    batch_size=500,
    learning_rate=3e-3,
    hyper_dim=3,
    hyper_latent=2,
    gauss_dim=4,
    gauss_rank=1,
    gauss_latent=2,
    digits_layers=2,
    digits_hidden=(64,),
    digits_epochs=6,
    digits_learning_rate=3e-3,
    digits_eval_draws=2,
    max_entropy_gap=None,  # seconds of affine-coupling training: the bound is out of reach
)


def hyper_checkerboard(key: jax.Array, n: int, dim: int) -> jax.Array:
    """Uniform on the 'black' cells of a ``4^dim`` board on ``[-4, 4]^dim``.

    Black cells have indices summing to an even number; the entropy is
    ``log(8^dim / 2)``. For ``dim=2`` it is the 2D checkerboard up to a reflection.
    """
    k_cells, k_last, k_u = jax.random.split(key, 3)
    cells = jax.random.randint(k_cells, (n, dim - 1), 0, 4)
    last = 2 * jax.random.randint(k_last, (n, 1), 0, 2) + jnp.sum(cells, -1, keepdims=True) % 2
    idx = jnp.concatenate([cells, last], axis=-1)
    return -4.0 + 2.0 * (idx + jax.random.uniform(k_u, (n, dim)))


def hyper_checkerboard_entropy(dim: int) -> float:
    """``log(8^dim / 2)`` nats."""
    return dim * math.log(8.0) - math.log(2.0)


def _gaussian_covariance(dim: int, rank: int, seed: int) -> np.ndarray:
    """Low-rank plus isotropic noise: ``A A^T + 0.1^2 I`` (strongly correlated)."""
    a = np.random.default_rng(seed).normal(size=(dim, rank))
    return a @ a.T + 0.01 * np.eye(dim)


def _num_params(params) -> int:
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))


def _coupling_stack(dim, num, hidden, num_bins, tail_bound, transformer="rqs"):
    trans = (SplineTransformer(num_bins, tail_bound) if transformer == "rqs"
             else AffineTransformer())
    perms = np.arange(dim)[::-1][None].repeat(num, axis=0)
    return Stack(CouplingLayer(dim, trans, tuple(hidden)), num, perms)


def _train(flow, params, data, key, *, epochs, batch_size, learning_rate, val_fraction,
           patience=None):
    config = FitConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       val_fraction=val_fraction, patience=patience, progress=False)
    return fit(flow.nll, params, data, key=key, config=config).params


Z_MATCH = 3.0  # "matches": within 3 standard errors of the paired test difference
PAPER_MATCH = "funnels 'improve upon or match' bijective flows (abstract)"


def _log_probs(flow, params, x, key, draws=1) -> np.ndarray:
    """Per-event log-likelihood (averaged over ``draws`` noise draws if stochastic)."""
    lp = jax.jit(flow.log_prob)
    keys = jax.random.split(key, draws)
    return np.mean([np.asarray(lp(params, x, k), np.float64) for k in keys], axis=0)


def _mean_log_prob(flow, params, x, key, draws=1):
    """Mean log-likelihood over events (averaged over ``draws`` noise draws if stochastic)."""
    return float(np.mean(_log_probs(flow, params, x, key, draws)))


def _paired_se(lp_a: np.ndarray, lp_b: np.ndarray) -> float:
    """Standard error of mean(lp_a) - mean(lp_b) on the same events."""
    return float(np.std(lp_a - lp_b) / math.sqrt(len(lp_a)))


def _pair(config, key, dim, latent, train, test, *, funnel_kwargs):
    """Trains a funnel flow and a bijective flow with one more layer; returns test NLLs."""
    k_f, k_b, k_fit_f, k_fit_b = jax.random.split(key, 4)
    common = dict(hidden=config.hidden, num_bins=config.num_bins, tail_bound=config.tail_bound,
                  transformer=config.transformer)
    funnel, p_funnel = funnel_flow(k_f, dim=dim, latent_dims=(latent,),
                                   layers_per_level=config.num_layers, final_layers=0,
                                   **funnel_kwargs, **common)
    bijective = SurjectiveFlow(dim, [_coupling_stack(dim, config.num_layers + 1,
                                                     config.hidden, config.num_bins,
                                                     config.tail_bound, config.transformer)])
    p_bij = bijective.init(k_b)
    train_kw = dict(epochs=config.epochs, batch_size=config.batch_size,
                    learning_rate=config.learning_rate, val_fraction=config.val_fraction)
    p_funnel = _train(funnel, p_funnel, train, k_fit_f, **train_kw)
    p_bij = _train(bijective, p_bij, train, k_fit_b, **train_kw)
    lp_f = _log_probs(funnel, p_funnel, test, key)
    lp_b = _log_probs(bijective, p_bij, test, key)
    return {
        "funnel_nll": float(-lp_f.mean()),
        "bijective_nll": float(-lp_b.mean()),
        "difference_se": _paired_se(lp_f, lp_b),
        "funnel_latent_dim": funnel.latent_dim,
        "bijective_latent_dim": dim,
        "funnel_params": _num_params(p_funnel),
        "bijective_params": _num_params(p_bij),
    }, (funnel, p_funnel, bijective, p_bij)


def _digits_flows(config, key):
    """Funnel and bijective flows for the digits.

    Dequantise, logit, coupling layers at 64 dimensions, then either a 2x2 funnel
    convolution 64 -> 16 and coupling layers at 16, or the same number of coupling
    layers at 64.
    """
    k_f, k_b = jax.random.split(key)
    stack = lambda d, n: _coupling_stack(d, n, config.digits_hidden, 8, 5.0,  # noqa: E731
                                         config.transformer)
    pre = [UniformDequantization(64, DIGIT_LEVELS), Logit(64)]
    half = config.digits_layers
    funnel = SurjectiveFlow(64, pre + [stack(64, half), FunnelConv2d(8, 8, 1),
                                       stack(16, half)])
    bijective = SurjectiveFlow(64, pre + [stack(64, 2 * half)])
    return funnel, funnel.init(k_f), bijective, bijective.init(k_b)


def _load_digits():
    return load_digits()[0].reshape(-1, 64).astype(np.float32)  # (1797, 64), values 0..16


def run(config: Config, workdir=None) -> dict:
    """Runs (a) checkerboard, (b) hyper-checkerboard and Gaussian, (c) digits."""
    key = jax.random.key(config.seed)
    k_a, k_b, k_g, k_c = jax.random.split(key, 4)
    metrics: dict = {}
    checks = []
    funnel_kwargs = dict(funnel="coupling", decoder=config.decoder, decoder_hidden=config.hidden)

    models = None
    if "checkerboard" in config.parts:
        models = _checkerboard(config, k_a, funnel_kwargs, metrics, checks)
    if "hyper_checkerboard" in config.parts:
        _hyper(config, k_b, funnel_kwargs, metrics, checks)
    if "gaussian" in config.parts:
        _gaussian(config, k_g, metrics, checks)
    digits_models = _digits(config, k_c, metrics, checks) if "digits" in config.parts else None
    metrics["checks"] = checks
    if workdir is not None:
        k_sample = jax.random.fold_in(key, 7)
        if models is not None:
            _plot_checkerboard(*models, k_sample, workdir / "checkerboard.png")
        if digits_models is not None:
            _plot_digits(*digits_models, k_sample, workdir / "digits_samples.png")
    return metrics


def _checkerboard(config, key, funnel_kwargs, metrics, checks):
    k_data, k_test, k_models = jax.random.split(key, 3)
    train = toys.checkerboard(k_data, config.n_train)
    test = toys.checkerboard(k_test, config.n_test)
    res, models = _pair(config, k_models, 2, 1, train, test, funnel_kwargs=funnel_kwargs)
    res["entropy"] = toys.CHECKERBOARD_ENTROPY
    metrics["checkerboard"] = res
    tol = Z_MATCH * res["difference_se"]
    checks.append(check(f"checkerboard: funnel (latent 1) NLL within 3 paired SE ({tol:.3f} "
                        "nats) of the bijective flow (latent 2) or better",
                        res["funnel_nll"] - res["bijective_nll"],
                        res["funnel_nll"] - res["bijective_nll"] < tol, paper=PAPER_MATCH))
    gap = res["funnel_nll"] - res["entropy"]
    claim = "checkerboard: funnel NLL close to the entropy log 32 = 3.466 nats"
    if config.max_entropy_gap is None:
        checks.append(not_checked(claim, "seconds of affine-coupling training cannot approach "
                                  "the bound; the full preset checks a gap < 0.15 nats", gap))
    else:
        checks.append(check(f"{claim} (gap < {config.max_entropy_gap})", gap,
                            gap < config.max_entropy_gap))
    return models


def _hyper(config, key, funnel_kwargs, metrics, checks):
    d = config.hyper_dim
    k_data, k_test, k_models = jax.random.split(key, 3)
    train = hyper_checkerboard(k_data, config.n_train, d)
    test = hyper_checkerboard(k_test, config.n_test, d)
    hyper, _ = _pair(config, k_models, d, config.hyper_latent, train, test,
                     funnel_kwargs=funnel_kwargs)
    hyper["entropy"] = hyper_checkerboard_entropy(d)
    hyper["funnel_gap"] = hyper["funnel_nll"] - hyper["entropy"]
    hyper["bijective_gap"] = hyper["bijective_nll"] - hyper["entropy"]
    metrics["hyper_checkerboard"] = hyper
    tol = Z_MATCH * hyper["difference_se"]  # the entropy cancels in the difference
    checks.append(check(f"hyper-checkerboard d={d}: funnel (latent {config.hyper_latent}) "
                        f"NLL gap within 3 paired SE ({tol:.3f} nats) of the bijective "
                        "flow's or better", hyper["funnel_gap"] - hyper["bijective_gap"],
                        hyper["funnel_gap"] - hyper["bijective_gap"] < tol, paper=PAPER_MATCH))


def _gaussian(config, key, metrics, checks):
    d = config.gauss_dim
    sigma = _gaussian_covariance(d, config.gauss_rank, config.seed)
    chol = jnp.asarray(np.linalg.cholesky(sigma), jnp.float32)
    k_data, k_test, k_models = jax.random.split(key, 3)
    train = jax.random.normal(k_data, (config.n_train, d)) @ chol.T
    test = jax.random.normal(k_test, (config.n_test, d)) @ chol.T
    gauss, _ = _pair(config, k_models, d, config.gauss_latent, train, test,
                     funnel_kwargs=dict(funnel="coupling", decoder="gaussian",
                                        decoder_hidden=config.hidden))
    gauss["entropy"] = 0.5 * float(np.linalg.slogdet(2 * math.pi * math.e * sigma)[1])
    gauss["funnel_gap"] = gauss["funnel_nll"] - gauss["entropy"]
    gauss["bijective_gap"] = gauss["bijective_nll"] - gauss["entropy"]
    metrics["gaussian"] = gauss
    tol = Z_MATCH * gauss["difference_se"]  # the entropy cancels in the difference
    checks.append(check(f"Gaussian d={d} (rank {config.gauss_rank} + noise): funnel (latent "
                        f"{config.gauss_latent}) NLL gap to the exact entropy within 3 paired "
                        f"SE ({tol:.3f} nats) of the bijective flow's or better",
                        gauss["funnel_gap"] - gauss["bijective_gap"],
                        gauss["funnel_gap"] - gauss["bijective_gap"] < tol, paper=PAPER_MATCH))


def _digits(config, key, metrics, checks):
    images = _load_digits()
    perm = np.random.default_rng(config.seed).permutation(images.shape[0])
    n_test = images.shape[0] // 5
    test_img, train_img = jnp.asarray(images[perm[:n_test]]), jnp.asarray(images[perm[n_test:]])
    k_init, k_fit_f, k_fit_b, k_eval = jax.random.split(key, 4)
    funnel, p_f, bijective, p_b = _digits_flows(config, k_init)
    train_kw = dict(epochs=config.digits_epochs, batch_size=config.digits_batch_size,
                    learning_rate=config.digits_learning_rate,
                    val_fraction=config.val_fraction, patience=20)
    p_f = _train(funnel, p_f, train_img, k_fit_f, **train_kw)
    p_b = _train(bijective, p_b, train_img, k_fit_b, **train_kw)
    draws = config.digits_eval_draws
    lp_f = _log_probs(funnel, p_f, test_img, k_eval, draws)
    lp_b = _log_probs(bijective, p_b, test_img, k_eval, draws)
    to_bpd = 1.0 / (64 * math.log(2))
    digits = {
        "funnel_bpd": float(bits_per_dim(lp_f.mean(), 64)),
        "bijective_bpd": float(bits_per_dim(lp_b.mean(), 64)),
        "difference_se_bpd": _paired_se(lp_f, lp_b) * to_bpd,
        "bpd_se": float(max(np.std(lp_f), np.std(lp_b)) / math.sqrt(len(lp_f)) * to_bpd),
        "funnel_latent_dim": funnel.latent_dim,
        "bijective_latent_dim": bijective.latent_dim,
        "funnel_params": _num_params(p_f),
        "bijective_params": _num_params(p_b),
        "uniform_bpd": math.log2(DIGIT_LEVELS),
        "log_likelihood_is_bound": not funnel.exact,
    }
    metrics["digits"] = digits
    diff = digits["funnel_bpd"] - digits["bijective_bpd"]
    tol = Z_MATCH * digits["difference_se_bpd"]
    checks.append(check(f"digits: funnel (latent {funnel.latent_dim}) bits/dim within 3 paired "
                        f"SE ({tol:.3f}) of the bijective flow (latent 64) or better", diff,
                        diff < tol, paper=PAPER_MATCH))
    worst = max(digits["funnel_bpd"], digits["bijective_bpd"])
    checks.append(check("digits: both flows beat the uniform model (log2 17 = 4.09 bits/dim) "
                        "by > 3 SE of the test bits/dim", worst,
                        worst + 3 * digits["bpd_se"] < digits["uniform_bpd"]))
    return funnel, p_f, bijective, p_b, np.asarray(test_img)


def _plot_checkerboard(funnel, pf, bijective, pb, key, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k1, k2 = jax.random.split(key)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, (name, flow, p, k) in zip(axes, [("funnel (latent 1)", funnel, pf, k1),
                                             ("bijective (latent 2)", bijective, pb, k2)],
                                      strict=True):
        s = np.asarray(jax.jit(flow.sample, static_argnums=2)(p, k, 20_000))
        ax.hist2d(s[:, 0], s[:, 1], bins=100, range=[[-5, 5], [-5, 5]], cmap="viridis")
        ax.set_title(name)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def _plot_digits(funnel, pf, bijective, pb, test_img, key, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k1, k2 = jax.random.split(key)
    rows = [("data", test_img[:10]),
            ("funnel", np.asarray(jax.jit(funnel.sample, static_argnums=2)(pf, k1, 10))),
            ("bijective", np.asarray(jax.jit(bijective.sample, static_argnums=2)(pb, k2, 10)))]
    fig, axes = plt.subplots(3, 10, figsize=(10, 3.3))
    for r, (name, imgs) in enumerate(rows):
        for c in range(10):
            axes[r, c].imshow(imgs[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
            axes[r, c].axis("off")
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
