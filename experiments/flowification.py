"""Flowification: ordinary MLPs and CNNs trained as normalizing flows.

Claim (Máté, Klein, Golling, Fleuret, "Flowification: Everything is a Normalizing
Flow", arXiv:2205.15209): linear and convolutional layers, parametrised as rotation x
scale x slice with a Gaussian model of the dropped coordinates (or noise padding when a
layer widens), together with invertible activations, are generalised flows with a
tractable likelihood; flowified MLPs and CNNs train by maximum likelihood on images,
with bits/dim worse than those of dedicated flows.

Here, on the 8x8 handwritten digits of scikit-learn (17 grey levels, dequantised with
uniform noise, so every likelihood is a bound on the discrete one; logit preprocessing
for all models):

  * a flowified MLP 64 -> 48 -> 32 -> 16 -> 8 with RQ-spline activations (10 bins, tail
    2), the paper's MNIST ``mlp`` shrunk to 64 inputs;
  * a flowified CNN with non-overlapping kernel = stride = 2 convolutions (the paper's
    ``conv2``): 8x8x1 -> 4x4x4 -> 2x2x8, then linear 32 -> 16 -> 8;
  * the same CNN with an overlapping first convolution, kernel 3 and stride 2 (the
    first layer of the paper's ``conv1``): one row and column of noise padding at the
    bottom and right (as in the reference code), then tiling into 16 3x3 patches, with
    each pixel in 1, 2 or 4 of them and its copies given noise orthogonal to their mean,
    then a shared flowified kernel 9 -> 4. The tile and padding noise scales start at
    ``overlap_noise_scale`` = 1.0, not the reference's 0.1: the reference's pixels lie in
    [0, 1], ours are logits spanning about [-3, 3]. Adam moves the log-scale by about
    the learning rate per step, so the initial value sticks. Started at 0.1, the quick
    model's training loss after 10 epochs is 4.4 bits/dim; started at 1.0, it is 3.2;
  * a standard RQ-spline coupling flow of similar parameter count.

Checks: every flowified model beats the uniform model (log2 17 = 4.09 bits/dim) by more
than 3 standard errors of its test bits/dim (std(log p) / sqrt(n_test) / (64 ln 2), with
n_test = 359 images), i.e. they train as density models; and the best of them does not
beat the coupling flow by more than 3 standard errors of the paired difference on the
same test images, std(log p_flowified - log p_coupling) / sqrt(n_test) / (64 ln 2) (the
paper's finding that flowified networks trail dedicated flows).

Command::

    python -m experiments.flowification            # 300 epochs each (~6-9 min)
    python -m experiments.flowification --quick    # a few epochs (~35-75 s)

Measured (full preset, 355 s on a shared 2-core CPU, load about 3): flowified MLP 2.336 bits/dim
(latent 8, 144k params), flowified CNN 2.269 (latent 8, 66k), overlapping CNN 2.782
(latent 8, 80k), coupling flow 2.124 (latent 64, 162k); uniform 4.09.

The overlapping CNN trails the k = s one. Its kernel models each patch's 5 dropped
coordinates from that patch's output alone, yet the overlap and the tile noise couple
neighbouring patches, so its bound is looser. The reference's ``FancyKernel`` predicts
them from a convolution over neighbouring outputs; that is not implemented here.

Quick preset: MLP 64-32-8; CNNs with one convolution to 4 channels, then linear 64 -> 8;
4 epochs. It gives 2.85 (92k params), 3.50 (7k) and 3.88 (21k) bits/dim for the
flowified models and 2.61 (53k) for the coupling flow. Runtime, contended, today's
three-model preset against this one, run alternately: 55.5/32.6 s and 62.5/33.8 s
(CPU 42/40 s and 49/43 s).
Writes metrics.json and samples.png.
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
from jaxgen.data.digits import load_digits
from jaxgen.flows import CouplingLayer
from jaxgen.flows import ElementwiseSpline
from jaxgen.flows import FlowifiedConv2d
from jaxgen.flows import FlowifiedLinear
from jaxgen.flows import Logit
from jaxgen.flows import SplineTransformer
from jaxgen.flows import Stack
from jaxgen.flows import SurjectiveFlow
from jaxgen.flows import UniformDequantization
from jaxgen.flows import bits_per_dim
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig
from jaxgen.train import fit

LEVELS = 17  # scikit-learn's digits take the values 0..16


MODELS = ("flowified_mlp", "flowified_cnn", "flowified_cnn_overlap", "coupling_flow")
FLOWIFIED = MODELS[:3]
SEEDS = {"flowified_mlp": 0, "flowified_cnn": 1, "coupling_flow": 2, "flowified_cnn_overlap": 3}


@dataclasses.dataclass(frozen=True)
class Config:
    """Flowified MLP and CNN against a coupling flow on the digits."""

    models: tuple[str, ...] = MODELS

    mlp_sizes: tuple[int, ...] = (64, 48, 32, 16, 8)
    cnn_channels: tuple[int, ...] = (4, 8)
    cnn_linear: tuple[int, ...] = (16, 8)
    # initial tile/padding noise scale of the overlapping convolution; the reference's 0.1
    # is for pixels in [0, 1], ours are logits spanning about [-3, 3]
    overlap_noise_scale: float = 1.0
    num_bins: int = 10
    tail_bound: float = 2.0
    coupling_layers: int = 3
    coupling_hidden: tuple[int, ...] = (64, 64)
    epochs: int = 300  # paper: Adam 5e-4, batch 128, 300 epochs, cosine annealing
    batch_size: int = 128
    learning_rate: float = 5e-4
    val_fraction: float = 0.1
    eval_draws: int = 8
    seed: int = 0

    def __post_init__(self):
        check_subset("models", self.models, MODELS)
        check_positive_fields(self, ("num_bins", "coupling_layers", "epochs", "batch_size",
                                     "eval_draws", "tail_bound", "learning_rate",
                                     "overlap_noise_scale"))
        if len(self.mlp_sizes) < 2 or self.mlp_sizes[0] != 64 or min(self.mlp_sizes) < 1:
            raise ValueError(f"`mlp_sizes` must start at 64 (8x8 images) and list >= 2 "
                             f"positive sizes; got {self.mlp_sizes}.")
        if len(self.cnn_channels) not in (1, 2, 3) or min(self.cnn_channels) < 1:
            raise ValueError("`cnn_channels` must hold 1 to 3 positive channel counts (each "
                             f"conv halves 8x8); got {self.cnn_channels}.")
        if min(self.cnn_linear, default=1) < 1 or not self.coupling_hidden:
            raise ValueError("`cnn_linear` sizes must be positive and `coupling_hidden` "
                             "non-empty.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in [0, 1); got {self.val_fraction}.")


# compile time dominates the quick preset: the CNNs get one conv and one linear layer
QUICK = dict(epochs=4, learning_rate=3e-3, val_fraction=0.0, eval_draws=2,
             mlp_sizes=(64, 32, 8), cnn_channels=(4,), cnn_linear=(8,), coupling_layers=2,
             coupling_hidden=(32, 32))


TO_BPD = 1.0 / (64 * math.log(2))  # nats per image -> bits per dimension


def _preprocess():
    return [UniformDequantization(64, LEVELS), Logit(64)]


def flowified_mlp(config: Config) -> SurjectiveFlow:
    """Dequantise, logit, then flowified linear layers with spline activations."""
    steps = _preprocess()
    sizes = config.mlp_sizes
    for i, (d1, d2) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        steps.append(FlowifiedLinear(d1, d2))
        if i < len(sizes) - 2:
            steps.append(ElementwiseSpline(d2, config.num_bins, config.tail_bound))
    return SurjectiveFlow(64, steps)


def flowified_cnn(config: Config, overlap: bool = False) -> SurjectiveFlow:
    """Dequantise, logit, flowified convolutions, then flowified linear layers.

    Every convolution halves the image with ``k = s = 2``; with ``overlap`` the first is
    ``k = 3, s = 2`` instead (the paper's ``conv1`` first layer), with one row and one
    column of noise padding at the bottom and right (as in the reference code) so that
    the 3x3 patches tile the 9x9 padded image: 16 patches, pixels in 1, 2 or 4 of them.
    """
    steps = _preprocess()
    size, channels = 8, 1
    for i, c_out in enumerate(config.cnn_channels):
        if overlap and i == 0:
            conv = FlowifiedConv2d(size, size, channels, c_out, kernel_size=3, stride=2,
                                   padding=((0, 1), (0, 1)),
                                   noise_scale=config.overlap_noise_scale)
        else:
            conv = FlowifiedConv2d(size, size, channels, c_out, kernel_size=2)
        steps += [conv, ElementwiseSpline(conv.out_dim, config.num_bins, config.tail_bound)]
        size, channels = size // 2, c_out
    d = size * size * channels
    for i, d2 in enumerate(config.cnn_linear):
        steps.append(FlowifiedLinear(d, d2))
        if i < len(config.cnn_linear) - 1:
            steps.append(ElementwiseSpline(d2, config.num_bins, config.tail_bound))
        d = d2
    return SurjectiveFlow(64, steps)


def coupling_baseline(config: Config) -> SurjectiveFlow:
    """Dequantise, logit, RQ-spline coupling layers (reverse permutations)."""
    layer = CouplingLayer(64, SplineTransformer(8, 5.0), tuple(config.coupling_hidden))
    perms = np.arange(64)[::-1][None].repeat(config.coupling_layers, axis=0)
    return SurjectiveFlow(64, _preprocess() + [Stack(layer, config.coupling_layers, perms)])


def _num_params(params) -> int:
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))


def run(config: Config, workdir=None) -> dict:
    """Trains the three models on the digits; returns test bits/dim and the checks."""
    images = load_digits()[0].reshape(-1, 64).astype(np.float32)  # values 0..16
    perm = np.random.default_rng(config.seed).permutation(images.shape[0])
    n_test = images.shape[0] // 5
    test, train = jnp.asarray(images[perm[:n_test]]), jnp.asarray(images[perm[n_test:]])
    fit_config = FitConfig(epochs=config.epochs, batch_size=config.batch_size,
                           learning_rate=config.learning_rate,
                           val_fraction=config.val_fraction, patience=None, progress=False)
    key = jax.random.key(config.seed)
    builders = {"flowified_mlp": flowified_mlp, "flowified_cnn": flowified_cnn,
                "flowified_cnn_overlap": lambda c: flowified_cnn(c, overlap=True),
                "coupling_flow": coupling_baseline}
    results, trained, lps = {}, {}, {}
    for name in config.models:
        flow = builders[name](config)
        k_init, k_fit, k_eval = jax.random.split(jax.random.fold_in(key, SEEDS[name]), 3)
        params = fit(flow.nll, flow.init(k_init), train, key=k_fit, config=fit_config).params
        log_prob = jax.jit(flow.log_prob)
        lp = np.mean([np.asarray(log_prob(params, test, k), np.float64)
                      for k in jax.random.split(k_eval, config.eval_draws)], axis=0)
        lps[name] = lp
        results[name] = {"bits_per_dim": float(bits_per_dim(lp.mean(), 64)),
                         "bits_per_dim_se": float(np.std(lp) / math.sqrt(n_test) * TO_BPD),
                         "latent_dim": flow.latent_dim, "params": _num_params(params),
                         "log_likelihood_is_bound": not flow.exact}
        trained[name] = (flow, params)
    uniform = math.log2(LEVELS)
    bpd = {n: r["bits_per_dim"] for n, r in results.items()}
    checks = [check(f"{name.replace('_', ' ')} trains as a density model: bits/dim below the "
                    f"uniform {uniform:.2f} by > 3 SE", bpd[name],
                    bpd[name] + 3 * results[name]["bits_per_dim_se"] < uniform)
              for name in FLOWIFIED if name in bpd]
    flowified = [n for n in FLOWIFIED if n in bpd]
    if flowified and "coupling_flow" in bpd:
        best = min(flowified, key=bpd.get)
        diff = bpd[best] - bpd["coupling_flow"]
        # paired: both models are evaluated on the same test images
        se = float(np.std(lps[best] - lps["coupling_flow"]) / math.sqrt(n_test) * TO_BPD)
        results[best]["minus_coupling_se"] = se
        checks.append(check(f"flowified networks trail (or match within 3 paired SE, "
                            f"{3 * se:.3f}) a coupling flow of similar size: best flowified "
                            "minus coupling bits/dim", diff, diff > -3 * se))
    metrics = {"models": results, "uniform_bpd": uniform, "checks": checks}
    if workdir is not None:
        _plot(trained, np.asarray(test[:10]), key, workdir / "samples.png")
    return metrics


def _plot(trained, data, key, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("data", data)]
    for i, (name, (flow, params)) in enumerate(trained.items()):
        sample = jax.jit(flow.sample, static_argnums=2)
        rows.append((name, np.asarray(sample(params, jax.random.fold_in(key, 100 + i), 10))))
    fig, axes = plt.subplots(len(rows), 10, figsize=(10, 1.1 * len(rows)))
    for r, (name, imgs) in enumerate(rows):
        for c in range(10):
            axes[r, c].imshow(imgs[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=LEVELS - 1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
