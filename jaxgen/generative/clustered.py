"""Clustered-latent generation of data on discontinuous supports.

Drozdova, Kinakh, Quetant, Golling, Voloshynovskiy, "Generation of data on discontinuous
manifolds via continuous stochastic non-invertible networks", arXiv:2112.09646.

A continuous generator fed with a connected (Gaussian) latent has a connected image, so
on a distribution with disjoint components it must put mass on "bridges" between them.
Here the components are found first and each gets its own generator:

1. a contrastive (SimCLR) encoder is trained on the data (``contrastive.train_encoder``);
2. k-means on the unit-normalised encoder features gives ``K`` clusters and their
   empirical fractions ``pi_k``;
3. one small stochastic generator ``G_k: N(0, I) -> x`` per cluster is trained
   adversarially on that cluster's points, standardised by the cluster's mean ``m_k``
   and per-feature std ``s_k`` (so every GAN solves a problem of unit scale); the ``K``
   GANs train together in one ``vmap`` of the ``lax.scan`` GAN loop
   (``gan.make_trainer``), on padded per-cluster data;
4. sampling draws ``k ~ Cat(pi)`` and returns ``m_k + s_k * G_k(eps)``.

The paper's generators also carry a reconstruction term through the encoder; this
implementation trains each ``G_k`` with the adversarial loss only (the clusters are the
part that removes the bridges).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.generative.augment import Augment
from jaxgen.generative.augment import vector_augment
from jaxgen.generative.contrastive import ContrastiveEncoder
from jaxgen.generative.contrastive import ContrastiveModel
from jaxgen.generative.contrastive import embed
from jaxgen.generative.contrastive import train_encoder
from jaxgen.generative.gan import GANConfig
from jaxgen.generative.gan import GANSpec
from jaxgen.generative.gan import compiled_trainer
from jaxgen.generative.gan import init_state
from jaxgen.generative.gan import mlp_gan
from jaxgen.generative.kmeans import kmeans
from jaxgen.train import FitConfig


class ClusteredGenerator(NamedTuple):
    """A fitted clustered-latent generator.

    Attributes:
      encoder: the contrastive encoder.
      centroids: ``(K, f)`` k-means centres of the normalised features.
      weights: ``(K,)`` empirical cluster fractions ``pi_k``.
      labels: ``(n,)`` cluster of each training point.
      spec: the per-cluster ``GANSpec`` (shared functions).
      g_params: generator parameters stacked over clusters (leading axis ``K``), the EMA.
      loc: ``(K, d)`` per-cluster means ``m_k``.
      scale: ``(K, d)`` per-cluster standard deviations ``s_k``.
      history: per-cluster GAN losses, each ``(K, steps)``.
    """

    encoder: ContrastiveModel
    centroids: jax.Array
    weights: jax.Array
    labels: jax.Array
    spec: GANSpec
    g_params: Any
    loc: jax.Array
    scale: jax.Array
    history: dict


def pad_by_cluster(x: jax.typing.ArrayLike, labels: jax.typing.ArrayLike,
                   num_clusters: int) -> tuple[jax.Array, jax.Array]:
    """Groups the rows of ``x`` ``(n, d)`` by cluster into ``(K, n_max, d)``, zero-padded.

    Returns:
      ``(padded, counts)``; cluster ``k``'s points are ``padded[k, :counts[k]]``.
    """
    x = np.asarray(x)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_clusters)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_max = int(counts.max())
    rank = np.arange(len(labels)) - starts[labels[order]]
    padded = np.zeros((num_clusters, n_max) + x.shape[1:], x.dtype)
    padded[labels[order], rank] = x[order]
    return jnp.asarray(padded), jnp.asarray(counts, jnp.int32)


@dataclasses.dataclass(frozen=True)
class ClusteredConfig:
    """Settings of ``fit_clustered_generator``.

    Attributes:
      num_clusters: ``K``.
      latent_dim: dimension of each generator's Gaussian latent.
      g_hidden: hidden widths of each generator.
      d_hidden: hidden widths of each discriminator.
      encoder_features: backbone widths of the contrastive encoder.
      encoder_projection: projection-head widths.
      temperature: NT-Xent temperature.
      jitter: std of the Gaussian-jitter view augmentation.
      encoder_fit: ``FitConfig`` of the encoder.
      gan: ``GANConfig`` of every per-cluster GAN.
      kmeans_restarts: k-means++ restarts.
    """

    num_clusters: int = 4
    latent_dim: int = 2
    g_hidden: tuple[int, ...] = (64, 64)
    d_hidden: tuple[int, ...] = (64, 64)
    encoder_features: tuple[int, ...] = (64, 32)
    encoder_projection: tuple[int, ...] = (32, 16)
    temperature: float = 0.5
    jitter: float = 0.1
    encoder_fit: FitConfig = FitConfig(epochs=10, batch_size=256, learning_rate=3e-3,
                                       val_fraction=0.0, patience=None, progress=False)
    gan: GANConfig = GANConfig(steps=2000, batch_size=256, g_learning_rate=2e-3,
                               d_learning_rate=2e-3, ema_decay=0.99, schedule="cosine")
    kmeans_restarts: int = 10

    def __post_init__(self):
        for name in ("num_clusters", "latent_dim", "kmeans_restarts"):
            check_positive(name, getattr(self, name))
        check_positive("temperature", self.temperature)
        check_positive("jitter", self.jitter, allow_zero=True)


def fit_clustered_generator(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    config: ClusteredConfig | None = None,
    *,
    augment: Augment | None = None,
) -> ClusteredGenerator:
    """Fits encoder, clusters and one GAN per cluster to ``x`` ``(n, d)``.

    Args:
      key: PRNG key.
      x: ``(n, d)`` training data.
      config: ``ClusteredConfig`` (defaults if ``None``).
      augment: the encoder's view augmentation; Gaussian jitter of ``config.jitter`` by
        default.

    Returns:
      The ``ClusteredGenerator``.

    Raises:
      ValueError: for non-finite or non-2D ``x``, or fewer points than clusters.

    Example:
      Two well-separated blobs, two clusters, a few training steps each:

      >>> import dataclasses, jax, jax.numpy as jnp
      >>> from jaxgen.generative import ClusteredConfig, fit_clustered_generator, sample_clustered
      >>> from jaxgen.train import FitConfig
      >>> k0, k1 = jax.random.split(jax.random.key(0))
      >>> centres = jnp.where(jnp.arange(200)[:, None] < 100, -1.0, 1.0)
      >>> x = centres + 0.1 * jax.random.normal(k0, (200, 2))
      >>> base = ClusteredConfig()
      >>> cfg = ClusteredConfig(num_clusters=2, g_hidden=(8,), d_hidden=(8,),
      ...                       encoder_features=(8,), encoder_projection=(4,),
      ...                       encoder_fit=FitConfig(epochs=1, batch_size=100, progress=False),
      ...                       gan=dataclasses.replace(base.gan, steps=2, batch_size=50))
      >>> model = fit_clustered_generator(k1, x, cfg)
      >>> sample_clustered(model, jax.random.key(2), 10).shape
      (10, 2)
    """
    config = config or ClusteredConfig()
    x = jnp.asarray(x, jnp.float32)
    check_array("x", x, ndim=2)
    k = config.num_clusters
    if x.shape[0] < k:
        raise ValueError(f"`x` has {x.shape[0]} rows, fewer than num_clusters={k}.")
    k_enc, k_km, k_init, k_gan = jax.random.split(key, 4)
    augment = augment or vector_augment(jitter=config.jitter)
    module = ContrastiveEncoder(config.encoder_features, config.encoder_projection)
    encoder = train_encoder(k_enc, x, augment=augment, module=module,
                            temperature=config.temperature, config=config.encoder_fit)
    feats = embed(encoder, x, normalize=True)
    km = kmeans(k_km, feats, k, num_restarts=config.kmeans_restarts)
    padded, counts = pad_by_cluster(x, km.labels, k)
    padded, loc, scale = _standardise(padded, counts)

    def build(kk):
        return mlp_gan(kk, dim=x.shape[1], latent_dim=config.latent_dim,
                       g_hidden=config.g_hidden, d_hidden=config.d_hidden)

    spec = build(k_init)[0]
    g_params, d_params = jax.jit(jax.vmap(lambda kk: build(kk)[1:]))(
        jax.random.split(k_init, k))
    states = jax.vmap(lambda g, d: init_state(config.gan, g, d))(g_params, d_params)
    train = compiled_trainer(spec, config.gan, vmapped=True)
    states, history = train(states, padded, counts, jax.random.split(k_gan, k))
    weights = counts.astype(jnp.float32) / x.shape[0]
    return ClusteredGenerator(encoder, km.centroids, weights, km.labels, spec,
                              states.ema_params, loc, scale, history)


@jax.jit
def _standardise(padded, counts):
    """Per-cluster mean and std of padded data ``(K, n_max, d)``; the data standardised."""
    valid = (jnp.arange(padded.shape[1])[None, :] < counts[:, None])[..., None]
    n_k = jnp.maximum(counts, 1)[:, None].astype(jnp.float32)
    loc = jnp.sum(jnp.where(valid, padded, 0.0), 1) / n_k
    var = jnp.sum(jnp.where(valid, (padded - loc[:, None]) ** 2, 0.0), 1) / n_k
    # A single-point (or constant) cluster has zero spread: keep its scale at 1.
    scale = jnp.where(var > 0, jnp.sqrt(var), 1.0)
    return jnp.where(valid, (padded - loc[:, None]) / scale[:, None], 0.0), loc, scale


def sample_clustered(model: ClusteredGenerator, key: jax.Array, n: int) -> jax.Array:
    """Draws ``n`` samples ``(n, d)``: ``k ~ Cat(pi)``, then ``x = G_k(eps)``.

    Every generator maps the same latent batch and the cluster picks one output per row,
    which keeps the shapes static (jit-able) at ``K`` times the cost of one generator.
    """
    check_positive("n", n)
    return _sample(model.spec, model.g_params, model.weights, model.loc, model.scale, key,
                   int(n))


def _sample(spec, g_params, weights, loc, scale, key, n):
    k_cat, k_lat = jax.random.split(key)
    which = jax.random.categorical(k_cat, jnp.log(weights), shape=(n,))
    latent = spec.sample_latent(k_lat, n)
    outs = jax.vmap(lambda p: spec.generate(p, latent))(g_params)
    return loc[which] + scale[which] * outs[which, jnp.arange(n)]
