"""InfoSCC-GAN on the 8x8 handwritten digits of scikit-learn.

Claim (Kinakh et al., arXiv:2112.09653): a conditional EigenGAN-style generator trained
against a frozen contrastive encoder and a linear attribute classifier on its features
generates images whose attribute the classifier recovers (attribute-control accuracy
99-100 % for every loss / discriminator choice in the paper's ablation), at a Frechet
distance (FID) well below a vanilla baseline. Here, on the 1797 scikit-learn digits
(80 % train, 20 % held out), with the digit as the attribute:

  * attribute-control accuracy (the frozen classifier's accuracy on images generated
    for each requested digit) >= ``min_accuracy`` for the main loss and for every loss
    of the ablation (hinge, non-saturating, least squares);
  * the Frechet distance to held-out digits in the encoder's feature space is below
    that of independent per-pixel Gaussians fitted to the training digits. (A
    full-covariance Gaussian fitted to the pixels is also reported: FD compares only
    first and second moments, which that Gaussian matches by construction, so it scores
    close to the real-vs-real floor although its samples are blurry blobs.)
  * the subspace bases stay orthonormal (largest ``mean((U U^T - I)^2)`` < 1e-2).

The FD between the training and held-out real digits is reported as the noise floor.

Ring of 8 Gaussians (radius 0.8, std 0.04; the component is the attribute; vector data,
a jitter augmentation): control accuracy >= ``min_accuracy`` AND the mean per-component
sliced Wasserstein distance to real samples <= ``ring_max_sw_ratio`` x the real-vs-real
value at the same n (500). The paper's plain CE classifier term pushed samples off the
ring (26x, radius mean 0.92); the capped term (``cls_confidence`` 0.9) gives 6.2x, radius
mean 0.813 (quick, seed 0). The digit checks are smoke checks (fixed thresholds, not derived).

Command::

    python -m experiments.infoscc            # 100 encoder epochs, 10000 GAN steps (~3 min)
    python -m experiments.infoscc --quick    # 15 epochs, 1000 steps (~45 s)

Measured (2-core CPU, seed 0). Default: attribute-control accuracy 1.000 for least
squares, hinge and non-saturating alike; feature FD 1.81 / 1.51 / 1.91 against 10.7 for
independent pixels, 2.46 for the full-covariance Gaussian and a real-vs-real floor of
0.63; held-out accuracy of the linear classifier 0.95. Quick: accuracy 1.000 for every
loss, FD 4.5 / 2.6 / 4.2 (independent pixels 6.9, full Gaussian 1.8, floor 0.51).
Writes metrics.json, digits.png (a grid of generated digits per label) and
eigen_dimensions.png (moving along each subspace coordinate of each layer, the others
fixed).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from jaxgen.data.digits import load_digits
from jaxgen.generative import LOSSES
from jaxgen.generative import GANConfig
from jaxgen.generative import embed
from jaxgen.generative import probe_accuracy
from jaxgen.generative import vector_augment
from jaxgen.methods import infoscc
from jaxgen.metrics.distances import sliced_wasserstein
from jaxgen.metrics.frechet import frechet_distance
from jaxgen.plot import save_figure

LABEL_SOURCES = ("external", "internal")


@dataclasses.dataclass(frozen=True)
class Config:
    """InfoSCC-GAN on scikit-learn digits, with a loss ablation."""

    labels: str = "external"
    num_classes: int = 10
    test_fraction: float = 0.2
    encoder_epochs: int = 100
    gan_steps: int = 10_000
    batch_size: int = 64
    learning_rate: float = 1e-3
    loss: str = "least_squares"
    ablation_losses: tuple[str, ...] = ("hinge", "non_saturating", "least_squares")
    orth_weight: float = 100.0
    cls_reg_every: int = 2
    r1_weight: float = 10.0
    r1_every: int = 16
    diff_augment_p: float = 0.6
    n_per_class: int = 100
    min_accuracy: float = 0.9
    ring_steps: int = 2000
    ring_encoder_epochs: int = 30
    ring_n_per_class: int = 500
    ring_max_sw_ratio: float = 10.0
    seed: int = 0

    def __post_init__(self):
        if self.labels not in LABEL_SOURCES:
            raise ValueError(f"`labels` must be one of {list(LABEL_SOURCES)}; "
                             f"got {self.labels!r}.")
        check_positive_fields(self, ("encoder_epochs", "gan_steps", "batch_size", "cls_reg_every",
                                     "r1_every", "n_per_class"))
        if self.num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2; got {self.num_classes}.")
        if self.labels == "external" and self.num_classes != 10:
            raise ValueError("external digit labels need `num_classes`=10.")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"`test_fraction` must be in (0, 1); got {self.test_fraction}.")
        for name in (self.loss, *self.ablation_losses):
            if name not in LOSSES:
                raise ValueError(f"losses must be among {list(LOSSES)}; got {name!r}.")
        if self.learning_rate <= 0 or self.orth_weight < 0 or self.r1_weight < 0:
            raise ValueError("`learning_rate` must be > 0; `orth_weight`, `r1_weight` >= 0.")
        if not 0.0 < self.min_accuracy <= 1.0:
            raise ValueError(f"`min_accuracy` must be in (0, 1]; got {self.min_accuracy}.")


QUICK = dict(encoder_epochs=15, gan_steps=1000)

RING_MODES, RING_RADIUS, RING_STD = 8, 0.8, 0.04


def ring_of_8(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` points of 8 Gaussians (radius 0.8, std 0.04) and their component labels."""
    k1, k2 = jax.random.split(key)
    y = jax.random.randint(k1, (n,), 0, RING_MODES)
    angle = 2.0 * np.pi * y / RING_MODES
    centre = RING_RADIUS * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
    return centre + RING_STD * jax.random.normal(k2, (n, 2)), y


def _ring_config(config: Config) -> infoscc.InfoSCCConfig:
    base = infoscc.InfoSCCConfig()
    gan = GANConfig(loss="least_squares", steps=config.ring_steps, batch_size=128,
                    g_learning_rate=1e-3, d_learning_rate=1e-3, b1=0.5, b2=0.99,
                    r1_weight=1.0, r1_every=16, aux_every=config.cls_reg_every,
                    ema_decay=0.995, schedule="cosine")
    return dataclasses.replace(
        base, num_classes=RING_MODES, encoder_features=(64, 32), encoder_projection=(32, 16),
        noise_dim=4, widths=(64, 64), q=2, d_hidden=(128, 128), gan=gan, diff_augment_p=0.0,
        augment=vector_augment(jitter=0.05),
        encoder_fit=dataclasses.replace(base.encoder_fit, epochs=config.ring_encoder_epochs))


def _ring_case(config: Config, key: jax.Array) -> dict:
    """Control and per-component sample quality on the ring of 8 Gaussians."""
    k_data, k_stage, k_gan, k_eval, k_ref = jax.random.split(key, 5)
    x, y = ring_of_8(k_data, 4000)
    cfg = _ring_config(config)
    model = infoscc.train_infoscc(k_gan, x, y, cfg)
    n = config.ring_n_per_class
    acc, _ = infoscc.attribute_control_accuracy(model, k_eval, n)
    labels = jnp.repeat(jnp.arange(RING_MODES), n)
    gen = infoscc.generate(model, jax.random.fold_in(k_eval, 1), labels)
    radius = jnp.linalg.norm(gen, axis=-1)
    # Real samples per component: a reference and an independent second sample of the
    # same size n, whose distance to the reference is the real-vs-real floor.
    k1, k2, k_sw = jax.random.split(k_ref, 3)
    ref, yr = ring_of_8(k1, 4 * RING_MODES * n)
    ref2, yr2 = ring_of_8(k2, 4 * RING_MODES * n)
    sw, floor = [], []
    for j in range(RING_MODES):
        a = ref[yr == j][:n]
        sw.append(float(sliced_wasserstein(k_sw, gen[labels == j], a)))
        floor.append(float(sliced_wasserstein(k_sw, ref2[yr2 == j][:n], a)))
    return {"attribute_control_accuracy": acc, "radius_mean": float(jnp.mean(radius)),
            "radius_min": float(jnp.min(radius)), "radius_max": float(jnp.max(radius)),
            "sw_per_component": sw, "sw_floor_per_component": floor,
            "sw_ratio": float(np.mean(sw) / np.mean(floor))}


def load_digits_scaled() -> tuple[np.ndarray, np.ndarray]:
    """The packaged 8x8 digits as ``(1797, 8, 8)`` images in ``[-1, 1]`` and their labels."""
    images, labels = load_digits()
    return (images / 8.0 - 1.0).astype(np.float32), labels.astype(np.int32)


def _method_config(config: Config, loss: str) -> infoscc.InfoSCCConfig:
    base = infoscc.InfoSCCConfig()
    gan = GANConfig(loss=loss, steps=config.gan_steps, batch_size=config.batch_size,
                    g_learning_rate=config.learning_rate, d_learning_rate=config.learning_rate,
                    b1=0.5, b2=0.99, r1_weight=config.r1_weight, r1_every=config.r1_every,
                    aux_every=config.cls_reg_every, ema_decay=0.995, schedule="cosine")
    return dataclasses.replace(
        base, num_classes=config.num_classes, orth_weight=config.orth_weight, gan=gan,
        diff_augment_p=config.diff_augment_p, augment=infoscc.DIGITS_AUGMENT,
        encoder_fit=dataclasses.replace(base.encoder_fit, epochs=config.encoder_epochs))


def _gaussian_pixels(key, train, n, full_covariance):
    """Samples of a Gaussian fitted to the flattened training images, clipped to [-1, 1]."""
    flat = train.reshape(len(train), -1)
    mean = jnp.mean(flat, 0)
    if full_covariance:
        cov = jnp.cov(flat.T) + 1e-4 * jnp.eye(flat.shape[1])
        out = jax.random.multivariate_normal(key, mean, cov, (n,))
    else:
        out = mean + jnp.std(flat, 0) * jax.random.normal(key, (n, flat.shape[1]))
    return jnp.clip(out, -1.0, 1.0).reshape((n,) + train.shape[1:])


def run(config: Config, workdir=None) -> dict:
    """Trains encoder and classifier once, then one generator per ablation loss."""
    key = jax.random.key(config.seed)
    k_split, k_stage, k_gan, k_eval, k_base, k_plot = jax.random.split(key, 6)
    images, digits = load_digits_scaled()
    perm = np.asarray(jax.random.permutation(k_split, len(images)))
    n_test = int(round(config.test_fraction * len(images)))
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    x_train, x_test = jnp.asarray(images[train_idx]), jnp.asarray(images[test_idx])
    y_train, y_test = jnp.asarray(digits[train_idx]), jnp.asarray(digits[test_idx])

    main_cfg = _method_config(config, config.loss)
    external = y_train if config.labels == "external" else None
    stages = infoscc.fit_encoder_and_classifier(k_stage, x_train, external, main_cfg)
    encoder, probe, used_labels = stages
    metrics: dict = {}
    if config.labels == "external":
        metrics["classifier_test_accuracy"] = probe_accuracy(probe, embed(encoder, x_test),
                                                             y_test)
    metrics["classifier_train_accuracy"] = probe_accuracy(probe, embed(encoder, x_train),
                                                          used_labels)
    feats_test = embed(encoder, x_test)
    fd = frechet_distance
    metrics["fd_real_train_vs_test"] = float(fd(embed(encoder, x_train), feats_test))
    for name, full in (("fd_independent_pixels", False), ("fd_full_gaussian_pixels", True)):
        baseline = _gaussian_pixels(k_base, x_train, len(x_train), full)
        metrics[name] = float(fd(embed(encoder, baseline), feats_test))

    losses = tuple(dict.fromkeys((config.loss, *config.ablation_losses)))
    ablation = {}
    n_gen = config.n_per_class * config.num_classes
    gen_labels = jnp.repeat(jnp.arange(config.num_classes), config.n_per_class)
    models = infoscc.train_infoscc_ablation(k_gan, x_train, external, main_cfg, losses,
                                            stages=stages)
    for loss, model in models.items():
        acc, per_class = infoscc.attribute_control_accuracy(model, k_eval, config.n_per_class)
        gen = infoscc.generate(model, k_eval, gen_labels)
        orth = [float(infoscc.orthogonality_penalty(p["U"]))
                for k, p in model.g_params["params"].items() if k.startswith("subspace_")]
        ablation[loss] = {
            "attribute_control_accuracy": acc,
            "per_class_accuracy": per_class,
            "frechet_distance": float(fd(embed(encoder, gen), feats_test)),
            "max_orthogonality_penalty": max(orth),
            "final_d_loss": float(model.history["d_loss"][-1]),
            "final_g_loss": float(model.history["g_loss"][-1]),
        }
    main_res = ablation[config.loss]
    metrics.update(
        attribute_control_accuracy=main_res["attribute_control_accuracy"],
        frechet_distance=main_res["frechet_distance"],
        ablation=ablation,
        n_generated=n_gen,
    )
    accs = {k: v["attribute_control_accuracy"] for k, v in ablation.items()}
    checks = [
        check(f"attribute-control accuracy >= {config.min_accuracy} ({config.loss})",
              main_res["attribute_control_accuracy"],
              main_res["attribute_control_accuracy"] >= config.min_accuracy),
        check(f"accuracy >= {config.min_accuracy} for every ablation loss",
              ", ".join(f"{k} {v:.3f}" for k, v in accs.items()),
              min(accs.values()) >= config.min_accuracy),
        check("feature-space FD below independent per-pixel Gaussians",
              f"{main_res['frechet_distance']:.3f} vs {metrics['fd_independent_pixels']:.3f}",
              main_res["frechet_distance"] < metrics["fd_independent_pixels"]),
        check("subspace bases stay orthonormal (max mean((UU^T-I)^2) < 1e-2)",
              main_res["max_orthogonality_penalty"],
              main_res["max_orthogonality_penalty"] < 1e-2),
    ]
    if config.ring_steps > 0:
        ring = _ring_case(config, jax.random.fold_in(key, 7))
        metrics["ring"] = ring
        checks += [
            check(f"ring of 8: attribute-control accuracy >= {config.min_accuracy}",
                  ring["attribute_control_accuracy"],
                  ring["attribute_control_accuracy"] >= config.min_accuracy),
            # A stated multiple, not a statistical bound: at n = 500 per component the
            # real-vs-real SW floor is ~0.003 (sampling noise of a std-0.04 Gaussian);
            # the plain-CE classifier term gave 26x (radius mean 0.92), no classifier
            # term 200x (components mixed), the capped term 6.3x.
            check(f"ring of 8: per-component SW(gen, real) <= {config.ring_max_sw_ratio}x "
                  "the real-vs-real floor",
                  f"{ring['sw_ratio']:.1f}x (radius mean {ring['radius_mean']:.3f}, "
                  f"min {ring['radius_min']:.3f})",
                  ring["sw_ratio"] <= config.ring_max_sw_ratio),
        ]
    metrics["checks"] = checks
    if workdir is not None:
        _plot_digits(models[config.loss], k_plot, config.num_classes, workdir / "digits.png")
        _plot_eigen(models[config.loss], k_plot, workdir / "eigen_dimensions.png")
    return metrics


def _plot_digits(model, key, num_classes, path, per_row=10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = jnp.repeat(jnp.arange(num_classes), per_row)
    imgs = np.asarray(infoscc.generate(model, key, labels))
    fig, axes = plt.subplots(num_classes, per_row, figsize=(per_row * 0.8, num_classes * 0.8))
    for i, ax in enumerate(axes.ravel()):
        ax.imshow(imgs[i], cmap="gray_r", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if i % per_row == 0:
            ax.set_ylabel(str(i // per_row))
    fig.suptitle("generated digits, one row per requested label")
    save_figure(fig, path, dpi=80)


def _plot_eigen(model, key, path, label=3, steps=7) -> None:
    """Rows: (layer, coordinate); columns: that coordinate from -3 to 3, the rest 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers, q = len(model.generator.widths), model.generator.q
    values = np.linspace(-3.0, 3.0, steps)
    rows = n_layers * q
    eig = np.zeros((rows, steps, n_layers, q), np.float32)
    for r in range(rows):
        eig[r, :, r // q, r % q] = values
    eig = jnp.asarray(eig.reshape(rows * steps, n_layers, q))
    # The same noise for every image, so only the subspace coordinate changes.
    labels = jnp.full((rows * steps,), label)
    latent = model.spec.sample_latent(jax.random.fold_in(key, 1), 1)
    latent = {"noise": jnp.repeat(latent["noise"], rows * steps, 0), "y": labels, "eig": eig}
    imgs = np.asarray(jax.jit(model.spec.generate)(model.g_params, latent))
    imgs = imgs.reshape((rows, steps) + imgs.shape[1:])
    fig, axes = plt.subplots(rows, steps, figsize=(steps * 0.8, rows * 0.8))
    for r in range(rows):
        for c in range(steps):
            axes[r, c].imshow(imgs[r, c], cmap="gray_r", vmin=-1, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(f"L{r // q} z{r % q}", fontsize=7)
    fig.suptitle(f"moving along each eigen-dimension (label {label}, z from -3 to 3)")
    save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
