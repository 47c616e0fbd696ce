r"""Contrastive (SimCLR) encoders trained with the NT-Xent / InfoNCE loss.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv:2002.05709; used as stage 1 of InfoSCC-GAN (Kinakh et al.,
arXiv:2112.09653) and for the clustered latent of Drozdova et al. (arXiv:2112.09646).

Two augmented views of each of ``N`` examples give ``2N`` projections ``z``. With cosine
similarity ``sim(a, b) = a.b / (|a||b|)`` and temperature ``tau``, the loss of view ``i``
whose partner is ``j`` is

.. math::
   \ell_i = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}
                       {\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)},

and the batch loss is the mean over the ``2N`` views. Minimising it maximises a lower
bound on the mutual information ``I(X; E)`` between inputs and embeddings. The encoder is
a backbone MLP (whose output ``h`` are the *features* used downstream) followed by a
projection head (whose output ``z`` enters the loss).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.generative.augment import Augment
from jaxgen.nn import MLP
from jaxgen.train import FitConfig
from jaxgen.train import FitResult
from jaxgen.train import fit


def nt_xent_loss(z1: jax.Array, z2: jax.Array, temperature: float = 0.5) -> jax.Array:
    """NT-Xent (normalised-temperature cross entropy) over ``2N`` views.

    Numerically stable: the similarities are bounded by ``1/temperature`` and the
    denominator is a ``logsumexp`` with the self-similarity masked out.

    Args:
      z1: ``(N, d)`` projections of the first views.
      z2: ``(N, d)`` projections of the second views (row ``i`` is the partner of
        ``z1[i]``).
      temperature: ``tau > 0`` (0.5 in InfoSCC-GAN).

    Returns:
      ``(N,)`` per-example losses ``(l_i + l_{i+N}) / 2``, whose mean is the loss
      averaged over the ``2N`` views.

    Raises:
      ValueError: if the shapes differ, ``N < 2``, ``temperature <= 0`` or (outside
        ``jit``, where values are known) an input holds NaN or inf.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.generative import nt_xent_loss
      >>> z = jnp.eye(4)                                   # 4 orthogonal views
      >>> loss = nt_xent_loss(z, z, temperature=1.0)       # partner sim 1, negatives 0
      >>> bool(jnp.allclose(loss, jnp.log(jnp.e + 6.0) - 1.0))
      True
    """
    check_array("z1", z1, ndim=2)
    check_array("z2", z2, ndim=2)
    if z1.shape != z2.shape:
        raise ValueError(f"`z1` and `z2` must have the same shape; got {z1.shape} and {z2.shape}.")
    if z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs at least 2 examples (negatives); got {z1.shape[0]}.")
    check_positive("temperature", temperature)
    n = z1.shape[0]
    z = jnp.concatenate([z1, z2], axis=0)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    sim = (z @ z.T) / temperature
    eye = jnp.eye(2 * n, dtype=bool)
    logits = jnp.where(eye, -jnp.inf, sim)
    partner = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    positive = sim[jnp.arange(2 * n), partner]
    per_view = jax.nn.logsumexp(logits, axis=-1) - positive
    return 0.5 * (per_view[:n] + per_view[n:])


class ContrastiveEncoder(nn.Module):
    """Backbone MLP plus projection head; inputs of any shape are flattened per example.

    Attributes:
      features: backbone layer sizes; the last is the feature dimension.
      projection: projection-head layer sizes; the last is the projection dimension.
      activation: nonlinearity of both MLPs.
    """

    features: Sequence[int] = (128, 64)
    projection: Sequence[int] = (64, 32)
    activation: Any = nn.relu

    def setup(self):  # noqa: D102
        self.backbone = MLP(tuple(self.features), activation=self.activation)
        self.head = MLP(tuple(self.projection), activation=self.activation)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Maps ``x`` ``(n, ...)`` to ``(features (n, f), projections (n, p))``."""
        h = self.embed(x)
        return h, self.head(nn.relu(h))

    def embed(self, x: jax.Array) -> jax.Array:
        """The backbone features ``(n, f)`` of ``x`` ``(n, ...)``."""
        return self.backbone(x.reshape(x.shape[0], -1))


class ContrastiveModel(NamedTuple):
    """A trained contrastive encoder.

    Attributes:
      module: the ``ContrastiveEncoder``.
      params: its parameters.
      result: the ``FitResult`` of training (history, stop reason).
    """

    module: ContrastiveEncoder
    params: Any
    result: FitResult


@functools.lru_cache(maxsize=64)
def simclr_loss(
    module: ContrastiveEncoder, augment: Augment, temperature: float = 0.5
):
    """The per-example SimCLR loss ``loss_fn(params, x, key) -> (n,)`` for ``jaxgen.train.fit``.

    Two views of the batch are drawn with ``augment`` and independent keys; the loss is
    ``nt_xent_loss`` of their projections. Cached per arguments, so repeated ``fit``
    calls with the same encoder and augmentation reuse the compiled epoch.
    """
    check_positive("temperature", temperature)

    def loss_fn(params, x, key):
        k1, k2 = jax.random.split(key)
        _, z1 = module.apply(params, augment(k1, x))
        _, z2 = module.apply(params, augment(k2, x))
        return nt_xent_loss(z1, z2, temperature)

    return loss_fn


def train_encoder(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    *,
    augment: Augment,
    module: ContrastiveEncoder | None = None,
    temperature: float = 0.5,
    config: FitConfig | None = None,
) -> ContrastiveModel:
    """Trains a SimCLR encoder on ``x`` with the engine's ``fit``.

    Args:
      key: PRNG key (initialisation, shuffling, views).
      x: ``(n, ...)`` training inputs (vectors or images).
      augment: view generator ``augment(key, batch) -> batch``.
      module: the encoder; ``ContrastiveEncoder()`` by default.
      temperature: NT-Xent temperature.
      config: ``FitConfig``; by default 50 epochs, batch 256, lr 3e-4 (the paper's),
        weight decay 1e-4, no validation split.

    Returns:
      The trained ``ContrastiveModel``.

    Raises:
      ValueError: for a non-finite ``x`` or fewer than two examples.

    Example:
      >>> import jax
      >>> from jaxgen.generative import ContrastiveEncoder, embed, train_encoder
      >>> from jaxgen.generative import vector_augment
      >>> from jaxgen.train import FitConfig
      >>> x = jax.random.normal(jax.random.key(0), (256, 4))
      >>> model = train_encoder(jax.random.key(1), x, augment=vector_augment(jitter=0.1),
      ...                       module=ContrastiveEncoder(features=(16, 8),
      ...                                                 projection=(8,)),
      ...                       config=FitConfig(epochs=1, batch_size=64, progress=False))
      >>> embed(model, x).shape
      (256, 8)
    """
    x = jnp.asarray(x, jnp.float32)
    check_array("x", x, ndim=(2, 3, 4))
    if x.shape[0] < 2:
        raise ValueError(f"`x` needs at least 2 examples; got {x.shape[0]}.")
    module = ContrastiveEncoder() if module is None else module
    config = config or FitConfig(epochs=50, batch_size=256, learning_rate=3e-4,
                                 weight_decay=1e-4, val_fraction=0.0, patience=None,
                                 progress=False)
    k_init, k_fit = jax.random.split(key)
    params = jax.jit(module.init)(k_init, x[:2])  # one compile, not one per eager op
    result = fit(simclr_loss(module, augment, temperature), params, x, key=k_fit, config=config)
    return ContrastiveModel(module, result.params, result)


def embed(model: ContrastiveModel, x: jax.typing.ArrayLike, *, projection: bool = False,
          normalize: bool = False) -> jax.Array:
    """Features (or projections) of ``x`` ``(n, ...)`` under a trained encoder.

    Args:
      model: a ``ContrastiveModel``.
      x: inputs ``(n, ...)``.
      projection: return the projection-head outputs instead of the backbone features.
      normalize: scale each row to unit norm (the geometry of the NT-Xent loss).

    Returns:
      ``(n, f)`` features or ``(n, p)`` projections.
    """
    x = jnp.asarray(x, jnp.float32)
    check_array("x", x, ndim=(2, 3, 4))
    out = _embed(model.module, model.params, x, projection)
    if normalize:
        out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out


@functools.partial(jax.jit, static_argnums=(0, 3))
def _embed(module, params, x, projection):
    h, z = module.apply(params, x)
    return z if projection else h
