r"""InfoSCC-GAN: stochastic contrastive conditional GAN with an EigenGAN-style generator.

Kinakh, Drozdova, Quetant, Golling, Voloshynovskiy, "Information-theoretic stochastic
contrastive conditional GAN: InfoSCC-GAN", arXiv:2112.09653. The generator follows
EigenGAN (He, Kan, Shan, arXiv:2104.12476).

Three stages, trained one after the other:

1. a contrastive encoder ``E`` (SimCLR, NT-Xent, ``tau = 0.5``) maximises ``I(X; E)``
   (``jaxgen.generative.contrastive``);
2. a linear attribute classifier on the frozen features minimises ``H(Y|E)``; the
   attributes are external labels or "internal" ones from k-means on the embeddings;
3. a conditional generator ``G(y, eps, z_1..z_L)`` is trained adversarially against an
   unconditional discriminator, plus, every ``cls_reg_every``-th step, a separate
   generator update on the classification loss ``CE(C(E(G(y))), y)`` through the
   frozen encoder and classifier.

The generator's input is ``concat(FC(y), eps)``; each of its ``L`` layers adds a
*subspace* term (EigenGAN)

.. math::
   \phi_i = (L_i \odot z_i)\, U_i + \mu_i, \qquad z_i \sim N(0, I_q),

to its hidden state, with ``U_i`` (``q x dim``) orthogonally initialised and kept near
orthonormal rows by the penalty ``mean((U_i U_i^T - I)^2)`` (weight 100), and ``L_i``
initialised to ``[3q, 3(q-1), ..., 3]``. Moving ``z_i`` along one coordinate moves the
image along one learned, interpretable direction.

Images are handled as flattened vectors by MLPs (the paper's convolutional blocks per
resolution are replaced by dense layers, which suit 8x8 images). The discriminator sees
DiffAugment views (brightness, translation, cutout, each with p = 0.6) of real and
generated images, with an R1 penalty every 16 steps and an EMA of the generator.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.generative.augment import Augment
from jaxgen.generative.augment import diff_augment
from jaxgen.generative.augment import image_augment
from jaxgen.generative.contrastive import ContrastiveEncoder
from jaxgen.generative.contrastive import ContrastiveModel
from jaxgen.generative.contrastive import embed
from jaxgen.generative.contrastive import train_encoder
from jaxgen.generative.gan import GANConfig
from jaxgen.generative.gan import GANSpec
from jaxgen.generative.gan import train_gan_ablation
from jaxgen.generative.kmeans import kmeans
from jaxgen.generative.probe import LinearProbe
from jaxgen.generative.probe import probe_logits
from jaxgen.generative.probe import train_linear_probe
from jaxgen.metrics.frechet import frechet_distance
from jaxgen.nn import MLP
from jaxgen.train import FitConfig


def orthogonality_penalty(u: jax.Array) -> jax.Array:
    """EigenGAN's regulariser ``mean((U U^T - I)^2)`` for a basis ``U`` of shape ``(q, dim)``.

    Zero exactly when the ``q`` rows of ``U`` are orthonormal.
    """
    check_array("u", u, ndim=2, finite=False)
    gram = u @ u.T
    return jnp.mean((gram - jnp.eye(u.shape[0], dtype=u.dtype)) ** 2)


def _orthogonal_rows(key, shape, dtype=jnp.float32):
    # (q, dim) with orthonormal rows: the transpose of an orthogonal (dim, q) init.
    return nn.initializers.orthogonal()(key, shape[::-1], dtype).T


class SubspaceLayer(nn.Module):
    """``phi = (L * z) U + mu`` for ``z`` ``(n, q)``; returns ``(n, dim)``.

    Attributes:
      dim: output width.
      q: subspace dimension (6 in InfoSCC-GAN).
    """

    dim: int
    q: int = 6

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        """Maps ``z`` ``(n, q)`` to ``(n, dim)``."""
        u = self.param("U", _orthogonal_rows, (self.q, self.dim))
        scale = self.param("L", lambda k, s: 3.0 * jnp.arange(s[0], 0, -1, dtype=jnp.float32),
                           (self.q,))
        mu = self.param("mu", nn.initializers.zeros_init(), (self.dim,))
        return (scale * z) @ u + mu


class EigenGenerator(nn.Module):
    """Conditional EigenGAN-style generator on flattened images.

    Attributes:
      num_classes: number of attribute values ``y``.
      image_shape: output image shape, e.g. ``(8, 8)``.
      widths: hidden widths; one subspace layer per hidden layer.
      embed_dim: size of the label embedding ``FC(y)``.
      q: subspace dimension of each layer.
    """

    num_classes: int
    image_shape: Sequence[int] = (8, 8)
    widths: Sequence[int] = (128, 256)
    embed_dim: int = 16
    q: int = 6

    @nn.compact
    def __call__(self, noise: jax.Array, y: jax.Array, eig: jax.Array) -> jax.Array:
        """Generates images.

        Args:
          noise: ``(n, noise_dim)`` Gaussian noise ``eps``.
          y: ``(n,)`` integer labels.
          eig: ``(n, len(widths), q)`` subspace coordinates ``z_i``.

        Returns:
          ``(n, *image_shape)`` images in ``[-1, 1]``.
        """
        emb = nn.Dense(self.embed_dim, name="label_fc")(jax.nn.one_hot(y, self.num_classes))
        h = nn.Dense(self.widths[0], name="input_fc")(jnp.concatenate([emb, noise], -1))
        for i, width in enumerate(self.widths):
            h = h + SubspaceLayer(h.shape[-1], self.q, name=f"subspace_{i}")(eig[:, i])
            h = nn.leaky_relu(nn.Dense(width, name=f"dense_{i}")(h), 0.2)
        size = int(np.prod(self.image_shape))
        out = jnp.tanh(nn.Dense(size, name="output_fc")(h))
        return out.reshape((-1, *self.image_shape))


def generator_orthogonality(g_params: Any) -> jax.Array:
    """Sum of ``orthogonality_penalty`` over every subspace layer in ``g_params``."""
    p = g_params["params"]
    return sum(orthogonality_penalty(p[k]["U"]) for k in sorted(p) if k.startswith("subspace_"))


DIGITS_AUGMENT: Augment = image_augment(max_shift=1, flip=False, noise=0.2, cutout_size=3)
"""Stage 1's views of 8x8 digits: +-1-pixel shifts, a 3x3 cutout and pixel noise 0.2;
no flips (a flip changes the digit)."""


@dataclasses.dataclass(frozen=True)
class InfoSCCConfig:
    """Settings of ``train_infoscc``.

    Attributes:
      num_classes: number of attribute values (external labels) or k-means clusters.
      encoder_features: encoder backbone widths (the classifier reads the last).
      encoder_projection: projection-head widths.
      temperature: NT-Xent temperature (0.5).
      encoder_fit: ``FitConfig`` of the encoder (paper: Adam 3e-4, weight decay 1e-4).
      probe_fit: ``FitConfig`` of the linear classifier (paper: 3e-4, decay 1e-6).
      noise_dim: size of ``eps``.
      widths: generator hidden widths (one subspace layer each).
      q: subspace dimension (6).
      d_hidden: discriminator hidden widths.
      orth_weight: weight of the orthogonality penalty (100).
      cls_weight: weight of the classification loss in its generator update.
      gan: ``GANConfig``: loss, steps, learning rates, ``aux_every`` = ``cls_reg_every``
        (2), R1 (weight 10 every 16 steps), EMA.
      diff_augment_p: DiffAugment probability (0.6; 0 disables DiffAugment, as vector
        data needs).
      augment: the SimCLR view generator ``augment(key, x) -> x`` of stage 1; ``None``
        is ``DIGITS_AUGMENT`` (for 8x8 digits). Data of another kind needs its own.
    """

    num_classes: int = 10
    encoder_features: tuple[int, ...] = (256, 128)
    encoder_projection: tuple[int, ...] = (128, 64)
    temperature: float = 0.5
    encoder_fit: FitConfig = FitConfig(epochs=100, batch_size=256, learning_rate=1e-3,
                                       weight_decay=1e-4, val_fraction=0.0, patience=None,
                                       progress=False)
    probe_fit: FitConfig = FitConfig(epochs=200, batch_size=256, learning_rate=3e-3,
                                     weight_decay=1e-6, val_fraction=0.1, patience=20,
                                     progress=False)
    noise_dim: int = 32
    widths: tuple[int, ...] = (128, 256)
    q: int = 6
    d_hidden: tuple[int, ...] = (256, 128)
    orth_weight: float = 100.0
    cls_weight: float = 1.0
    cls_confidence: float = 0.9
    gan: GANConfig = GANConfig(loss="least_squares", steps=10000, batch_size=64,
                               g_learning_rate=1e-3, d_learning_rate=1e-3, b1=0.5, b2=0.99,
                               r1_weight=10.0, r1_every=16, aux_every=2, ema_decay=0.995,
                               schedule="cosine")
    diff_augment_p: float = 0.6
    augment: Augment | None = None

    def __post_init__(self):
        for name in ("num_classes", "noise_dim", "q"):
            check_positive(name, getattr(self, name))
        if self.num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2; got {self.num_classes}.")
        check_positive("temperature", self.temperature)
        check_positive("orth_weight", self.orth_weight, allow_zero=True)
        check_positive("cls_weight", self.cls_weight, allow_zero=True)
        if not 0.0 < self.cls_confidence <= 1.0:
            raise ValueError(f"`cls_confidence` must be in (0, 1]; got {self.cls_confidence}.")
        if not 0.0 <= self.diff_augment_p <= 1.0:
            raise ValueError(f"`diff_augment_p` must be in [0, 1]; got {self.diff_augment_p}.")
        if not self.widths:
            raise ValueError("`widths` must name at least one generator layer.")
        if self.augment is not None and not callable(self.augment):
            raise ValueError("`augment` must be a function `(key, x) -> x` or None.")


class InfoSCCModel(NamedTuple):
    """A trained InfoSCC-GAN.

    Attributes:
      encoder: the frozen contrastive encoder.
      probe: the attribute classifier on its features.
      labels: ``(n,)`` the attribute labels used (external or from k-means).
      label_weights: ``(num_classes,)`` label frequencies (the generator's ``p(y)``).
      generator: the ``EigenGenerator`` module.
      spec: the ``GANSpec``.
      g_params: the generator's EMA parameters.
      history: per-step ``d_loss``, ``g_loss`` and ``aux_loss`` (the classification loss).
    """

    encoder: ContrastiveModel
    probe: LinearProbe
    labels: jax.Array
    label_weights: jax.Array
    generator: EigenGenerator
    spec: GANSpec
    g_params: Any
    history: dict


def fit_encoder_and_classifier(
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array | None,
    config: InfoSCCConfig,
) -> tuple[ContrastiveModel, LinearProbe, jax.Array]:
    """Stages 1 and 2: SimCLR encoder, then a linear classifier on frozen features.

    Args:
      key: PRNG key.
      images: ``(n, h, w)`` images in ``[-1, 1]``.
      labels: ``(n,)`` external labels, or ``None`` for k-means labels on the embeddings.
      config: ``InfoSCCConfig``.

    Returns:
      ``(encoder, probe, labels)``.
    """
    k_enc, k_km, k_probe = jax.random.split(key, 3)
    module = ContrastiveEncoder(config.encoder_features, config.encoder_projection)
    augment = DIGITS_AUGMENT if config.augment is None else config.augment
    encoder = train_encoder(k_enc, images, augment=augment, module=module,
                            temperature=config.temperature, config=config.encoder_fit)
    feats = embed(encoder, images)
    if labels is None:
        labels = kmeans(k_km, embed(encoder, images, normalize=True), config.num_classes).labels
    probe = train_linear_probe(k_probe, feats, labels, config.num_classes,
                               config=config.probe_fit)
    return encoder, probe, jnp.asarray(labels, jnp.int32)


def build_gan(
    key: jax.Array,
    encoder: ContrastiveModel,
    probe: LinearProbe,
    label_weights: jax.Array,
    image_shape: Sequence[int],
    config: InfoSCCConfig,
) -> tuple[EigenGenerator, GANSpec, Any, Any]:
    """Stage 3's pieces: generator, discriminator and the ``GANSpec`` with both regularisers.

    Returns:
      ``(generator, spec, g_params, d_params)``.
    """
    gen = EigenGenerator(config.num_classes, tuple(image_shape), config.widths, q=config.q)
    disc = MLP((*config.d_hidden, 1), activation=lambda h: nn.leaky_relu(h, 0.2))
    n_layers = len(config.widths)
    log_w = jnp.log(label_weights)
    enc_module, enc_params = encoder.module, encoder.params

    def sample_latent(k, n):
        k1, k2, k3 = jax.random.split(k, 3)
        return {"noise": jax.random.normal(k1, (n, config.noise_dim)),
                "y": jax.random.categorical(k2, log_w, shape=(n,)),
                "eig": jax.random.normal(k3, (n, n_layers, config.q))}

    def generate(p, latent):
        return gen.apply(p, latent["noise"], latent["y"], latent["eig"])

    def discriminate(p, x):
        return disc.apply(p, x.reshape(x.shape[0], -1))[:, 0]

    cls_margin = -float(np.log(config.cls_confidence))

    def classification_loss(p, k):
        latent = sample_latent(k, config.gan.batch_size)
        feats = enc_module.apply(enc_params, generate(p, latent), method="embed")
        logits = probe_logits(probe.params, feats)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, latent["y"])
        return config.cls_weight * jnp.mean(jax.nn.relu(ce - cls_margin))

    def regulariser(p):
        return config.orth_weight * generator_orthogonality(p)

    augment = None
    if config.diff_augment_p > 0:
        augment = functools.partial(diff_augment, p=config.diff_augment_p)
    spec = GANSpec(generate, discriminate, sample_latent, regulariser,
                   classification_loss if config.cls_weight > 0 else None, augment)
    kg, kd = jax.random.split(key)
    g_params = jax.jit(gen.init)(kg, jnp.zeros((1, config.noise_dim)), jnp.zeros(1, jnp.int32),
                                 jnp.zeros((1, n_layers, config.q)))
    d_params = jax.jit(disc.init)(kd, jnp.zeros((1, int(np.prod(image_shape)))))
    return gen, spec, g_params, d_params


def train_infoscc(
    key: jax.Array,
    images: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None = None,
    config: InfoSCCConfig | None = None,
    *,
    stages: tuple[ContrastiveModel, LinearProbe, jax.Array] | None = None,
) -> InfoSCCModel:
    """Trains InfoSCC-GAN on ``images``.

    Args:
      key: PRNG key.
      images: ``(n, h, w)`` images scaled to ``[-1, 1]``.
      labels: ``(n,)`` external attribute labels in ``[0, num_classes)``; ``None`` uses
        internal labels from k-means on the encoder embeddings.
      config: ``InfoSCCConfig`` (defaults if ``None``).
      stages: the result of ``fit_encoder_and_classifier`` to reuse (ablations share the
        frozen encoder and classifier).

    Returns:
      The ``InfoSCCModel``.

    Raises:
      ValueError: for images that are not ``(n, h, w)``, non-finite or outside
        ``[-1, 1]``, or labels of the wrong shape or range.

    Example:
      A tiny run on 8x8 random images with 3 external labels (all stages a few steps):

      >>> import dataclasses, jax
      >>> from jaxgen.methods import infoscc
      >>> from jaxgen.train import FitConfig
      >>> images = jax.random.uniform(jax.random.key(0), (60, 8, 8), minval=-1.0, maxval=1.0)
      >>> labels = jax.numpy.arange(60) % 3
      >>> short = FitConfig(epochs=1, batch_size=30, progress=False)
      >>> base = infoscc.InfoSCCConfig()
      >>> cfg = infoscc.InfoSCCConfig(num_classes=3, encoder_features=(16, 8),
      ...                             encoder_projection=(8, 4), widths=(16, 32), d_hidden=(16,),
      ...                             noise_dim=4, encoder_fit=short, probe_fit=short,
      ...                             diff_augment_p=0.0,
      ...                             gan=dataclasses.replace(base.gan, steps=2, batch_size=30))
      >>> model = infoscc.train_infoscc(jax.random.key(1), images, labels, cfg)
      >>> infoscc.generate(model, jax.random.key(2), jax.numpy.array([0, 2])).shape
      (2, 8, 8)
    """
    config = config or InfoSCCConfig()
    return train_infoscc_ablation(key, images, labels, config, (config.gan.loss,),
                                  stages=stages)[config.gan.loss]


def train_infoscc_ablation(
    key: jax.Array,
    images: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike | None,
    config: InfoSCCConfig,
    losses: Sequence[str],
    *,
    stages: tuple[ContrastiveModel, LinearProbe, jax.Array] | None = None,
) -> dict[str, InfoSCCModel]:
    """Trains InfoSCC-GAN once per adversarial loss, all in one vmapped program.

    The encoder and classifier are shared (trained once); the generators start from the
    same parameters and see the same batches, so the ablation is a paired comparison.
    Arguments are those of ``train_infoscc`` plus ``losses`` (names from
    ``jaxgen.generative.LOSSES``; ``config.gan.loss`` is ignored).

    Returns:
      ``{loss: InfoSCCModel}``.
    """
    images = jnp.asarray(images, jnp.float32)
    check_array("images", images, ndim=(2, 3))
    if bool(jnp.any(jnp.abs(images) > 1.0 + 1e-6)):
        raise ValueError("`images` must be scaled to [-1, 1] (the generator's tanh range).")
    if images.ndim == 2 and config.diff_augment_p > 0:
        raise ValueError("`diff_augment_p` must be 0 for vector data (DiffAugment acts on "
                         "images).")
    if labels is not None:
        labels = jnp.asarray(labels)
        check_array("labels", labels, ndim=1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"`labels` must have {images.shape[0]} entries; got "
                             f"{labels.shape[0]}.")
    k_stage, k_init, k_gan = jax.random.split(key, 3)
    if stages is None:
        stages = fit_encoder_and_classifier(k_stage, images, labels, config)
    encoder, probe, used_labels = stages
    counts = jnp.bincount(used_labels, length=config.num_classes).astype(jnp.float32)
    label_weights = counts / jnp.sum(counts)
    if bool(jnp.any(counts == 0)):
        raise ValueError("every class in [0, num_classes) needs at least one example.")
    gen, spec, g_params, d_params = build_gan(k_init, encoder, probe, label_weights,
                                              images.shape[1:], config)
    results = train_gan_ablation(k_gan, spec, g_params, d_params, images, config.gan,
                                 tuple(losses))
    return {name: InfoSCCModel(encoder, probe, used_labels, label_weights, gen, spec,
                               res.state.ema_params, res.history)
            for name, res in results.items()}


def generate(model: InfoSCCModel, key: jax.Array, labels: jax.typing.ArrayLike,
             eig: jax.typing.ArrayLike | None = None) -> jax.Array:
    """Generates one image per requested label.

    Args:
      model: a trained ``InfoSCCModel``.
      key: PRNG key.
      labels: ``(n,)`` requested labels.
      eig: optional ``(n, L, q)`` subspace coordinates (random ``N(0, 1)`` otherwise).

    Returns:
      ``(n, h, w)`` images in ``[-1, 1]``.
    """
    labels = jnp.asarray(labels, jnp.int32)
    check_array("labels", labels, ndim=1)
    n = labels.shape[0]
    if bool(jnp.any((labels < 0) | (labels >= model.generator.num_classes))):
        raise ValueError(f"`labels` must lie in [0, {model.generator.num_classes}).")
    want = (n, len(model.generator.widths), model.generator.q)
    if eig is not None:
        eig = jnp.asarray(eig, jnp.float32)
        check_array("eig", eig, ndim=3)
        if eig.shape != want:
            raise ValueError(f"`eig` must have shape {want}; got {eig.shape}.")
    return _generate(model.spec, model.g_params, key, labels, eig)


@functools.partial(jax.jit, static_argnums=0)
def _generate(spec, g_params, key, labels, eig):
    latent = spec.sample_latent(key, labels.shape[0])
    latent["y"] = labels
    if eig is not None:
        latent["eig"] = eig
    return spec.generate(g_params, latent)


def classify(model: InfoSCCModel, images: jax.typing.ArrayLike) -> jax.Array:
    """Predicted attribute ``(n,)`` of images ``(n, h, w)`` by the frozen encoder + classifier."""
    feats = embed(model.encoder, images)
    return jnp.argmax(jax.jit(probe_logits)(model.probe.params, feats), -1)


def attribute_control_accuracy(model: InfoSCCModel, key: jax.Array,
                               n_per_class: int = 100) -> tuple[float, np.ndarray]:
    """Accuracy of the frozen classifier on images generated for each requested label.

    Returns:
      ``(mean accuracy, per-class accuracies (num_classes,))``.
    """
    check_positive("n_per_class", n_per_class)
    k = model.generator.num_classes
    labels = jnp.repeat(jnp.arange(k), n_per_class)
    pred = classify(model, generate(model, key, labels))
    per_class = np.asarray(jnp.mean((pred == labels).reshape(k, n_per_class), axis=1))
    return float(per_class.mean()), per_class


def feature_frechet_distance(model: InfoSCCModel, real: jax.typing.ArrayLike,
                             generated: jax.typing.ArrayLike) -> float:
    """Frechet distance between real and generated images in the encoder's feature space."""
    return float(frechet_distance(embed(model.encoder, real), embed(model.encoder, generated)))
