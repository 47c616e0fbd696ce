r"""Dense autoencoder for unsupervised anomaly detection: score = reconstruction error.

Collins, Martín-Ramiro, Nachman, Shih, "Comparing weak- and unsupervised methods for
resonant anomaly detection", EPJC 81 (2021) 617, arXiv:2104.02092: an autoencoder
trained on (mostly background) events reconstructs typical events well and rare ones
badly, so the per-event reconstruction error

.. math::
   s(x) = \frac{1}{d} \sum_{j=1}^{d} \big(\hat x_j - D(E(\hat x))_j\big)^2,
   \qquad \hat x = (x - \mu) / \sigma,

is an anomaly score. Unlike CWoLa hunting it does not depend on how much signal is
injected (for small injections), and it is usable through the same selections and bump
hunt (``jaxgen.methods.cwola.select_at_efficiencies``). Features are standardised with
the training sample's mean and standard deviation; training is ``jaxgen.train.fit``.
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
from jaxgen.nn import MLP
from jaxgen.train import FitConfig
from jaxgen.train import FitResult
from jaxgen.train import fit

#: Adam 1e-3 with cosine decay, batch 256, 100 epochs, early stopping on a 20 % split.
AE_FIT_CONFIG = FitConfig(epochs=100, batch_size=256, patience=10, progress=False)


class DenseAutoencoder(nn.Module):
    """``x -> encoder MLP -> latent -> decoder MLP -> x'`` (ELU, linear output).

    Attributes:
      features: input width ``d``.
      hidden: encoder hidden widths (the decoder mirrors them).
      latent_dim: bottleneck width.
    """

    features: int
    hidden: Sequence[int] = (64, 32)
    latent_dim: int = 2

    def setup(self):
        """Builds the encoder and decoder MLPs."""
        self.encoder = MLP((*self.hidden, self.latent_dim), activation=nn.elu)
        self.decoder = MLP((*reversed(self.hidden), self.features), activation=nn.elu)

    def encode(self, x: jax.Array) -> jax.Array:
        """``(..., d) -> (..., latent_dim)``."""
        return self.encoder(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Reconstructs ``(..., d)``."""
        return self.decoder(self.encoder(x))


class Autoencoder(NamedTuple):
    """A trained autoencoder with the standardisation of its training data.

    Attributes:
      model: the ``DenseAutoencoder``.
      params: its parameters.
      shift: ``(d,)`` feature means subtracted before the model.
      scale: ``(d,)`` feature standard deviations dividing them.
    """

    model: DenseAutoencoder
    params: Any
    shift: jax.Array
    scale: jax.Array


def _check_x(name: str, x: Any, d: int | None = None) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    check_array(name, x, ndim=2, last_dim=d)
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` holds no events.")
    return x


@functools.cache
def _mse_loss(model: DenseAutoencoder):
    def loss_fn(params, batch, key):
        del key
        return jnp.mean((model.apply(params, batch) - batch) ** 2, axis=-1)

    return loss_fn


def train_autoencoder(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    *,
    hidden: Sequence[int] = (64, 32),
    latent_dim: int = 2,
    weights: jax.typing.ArrayLike | None = None,
    config: FitConfig | None = None,
) -> tuple[Autoencoder, FitResult]:
    """Trains a dense autoencoder unsupervised on ``x`` by mean squared error.

    Args:
      key: PRNG key (initialisation, validation split, shuffling).
      x: ``(n, d)`` training events (e.g. all events, or the sidebands only).
      hidden: encoder widths; the decoder mirrors them.
      latent_dim: bottleneck width (must be below ``d`` to compress).
      weights: optional ``(n,)`` event weights.
      config: training settings (default ``AE_FIT_CONFIG``).

    Returns:
      ``(autoencoder, fit_result)``.

    Raises:
      ValueError: for ``x`` not ``(n, d)`` or not finite, or non-positive sizes.

    Example:
      >>> import jax
      >>> from jaxgen.train import FitConfig
      >>> x = jax.random.normal(jax.random.key(0), (512, 3))
      >>> ae, _ = train_autoencoder(jax.random.key(1), x, hidden=(8,), latent_dim=1,
      ...                           config=FitConfig(epochs=2, batch_size=128,
      ...                                            progress=False))
      >>> reconstruction_error(ae, x).shape
      (512,)
    """
    x = _check_x("x", x)
    hidden = tuple(int(h) for h in hidden)
    for h in hidden:
        check_positive("hidden", h)
    check_positive("latent_dim", latent_dim)
    config = AE_FIT_CONFIG if config is None else config
    shift = jnp.mean(x, axis=0)
    scale = jnp.std(x, axis=0)
    scale = jnp.where(scale > 0, scale, 1.0)
    xs = (x - shift) / scale
    model = DenseAutoencoder(x.shape[1], hidden, int(latent_dim))
    key_init, key_fit = jax.random.split(key)
    params = model.init(key_init, xs[:1])
    result = fit(_mse_loss(model), params, xs, key=key_fit, config=config, weights=weights)
    return Autoencoder(model, result.params, shift, scale), result


@functools.cache
def _error_fn(model: DenseAutoencoder):
    def err(params, shift, scale, x):
        xs = (x - shift) / scale
        return jnp.mean((model.apply(params, xs) - xs) ** 2, axis=-1)

    return jax.jit(err)


def reconstruction_error(ae: Autoencoder, x: jax.typing.ArrayLike) -> jax.Array:
    """Anomaly score of arXiv:2104.02092: per-event MSE in standardised units.

    Args:
      ae: a trained ``Autoencoder``.
      x: ``(n, d)`` events.

    Returns:
      ``(n,)`` reconstruction errors (larger = more anomalous).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = DenseAutoencoder(2, (4,), 1)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> ae = Autoencoder(model, params, jnp.zeros(2), jnp.ones(2))
      >>> reconstruction_error(ae, jnp.zeros((5, 2))).shape
      (5,)
    """
    x = _check_x("x", x, ae.shift.shape[0])
    return _error_fn(ae.model)(ae.params, ae.shift, ae.scale, x)
