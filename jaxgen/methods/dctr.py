r"""DCTR: Deep neural network using Classification for Tuning and Reweighting.

Andreassen & Nachman, "Neural Networks for Full Phase-space Reweighting and Parameter
Tuning", PRD 101 (2020) 091901, arXiv:1907.08209.

1. **Reweighting.** A parametrised classifier ``f(x, theta)`` trained between
   ``(x ~ p(x|theta_0), theta)`` and ``(x ~ p(x|theta), theta)`` with
   ``theta ~ U[low, high]`` gives ``w(x, theta) = f/(1 - f)``, reweighting the nominal
   sample to any theta in the range.
2. **Fit ("tuning").** With the classifier frozen, theta becomes the only trainable
   weight. Minimising the BCE of {nominal sample, label 0} vs {data, label 1} with
   respect to theta,

   .. math::
      L(\theta) = -\sum_{\rm data} \log f(x, \theta)
                   - \sum_{\theta_0} \log(1 - f(x, \theta)),

   has its minimum at ``theta = theta_data``, since ``f(., theta_data)`` is then the
   optimal classifier of the two samples. The fit runs in the training engine
   (``jaxgen.train.fit``) with ``params = {"theta": ...}``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen._checks import check_array
from jaxgen.classifiers.classifier import DEFAULT_FIT_CONFIG
from jaxgen.classifiers.classifier import Classifier
from jaxgen.classifiers.classifier import as_events
from jaxgen.classifiers.classifier import bce_with_logits
from jaxgen.classifiers.classifier import class_balance_weights
from jaxgen.classifiers.classifier import train_classifier
from jaxgen.classifiers.parametrized import Simulator
from jaxgen.classifiers.parametrized import parametrized_training_data
from jaxgen.train import FitConfig
from jaxgen.train import fit

#: Settings of the DCTR fit: Adam on theta alone; the cosine decay lets theta settle.
FIT_THETA_CONFIG = dataclasses.replace(
    DEFAULT_FIT_CONFIG, epochs=30, learning_rate=5e-2, schedule="cosine"
)


class ThetaFit(NamedTuple):
    """Result of ``fit_theta``.

    Attributes:
      theta: ``(p,)`` the fitted parameters (best validation loss).
      train_loss: ``(epochs,)`` training BCE per epoch (NaN after an early stop).
      val_loss: ``(epochs,)`` validation BCE per epoch.
    """

    theta: jax.Array
    train_loss: np.ndarray
    val_loss: np.ndarray


def train(
    key: jax.Array,
    simulator: Simulator,
    *,
    theta_ref: jax.typing.ArrayLike,
    theta_low: jax.typing.ArrayLike,
    theta_high: jax.typing.ArrayLike,
    n: int,
    model: nn.Module | None = None,
    config: FitConfig = DEFAULT_FIT_CONFIG,
) -> Classifier:
    """Trains the parametrised DCTR classifier ``f(x, theta)`` (arXiv:1907.08209).

    Args:
      key: PRNG key.
      simulator: ``simulator(key, theta (n, p)) -> x (n, d)``.
      theta_ref: ``(p,)`` nominal parameters (the sample that gets reweighted).
      theta_low: ``(p,)`` lower edge of the training range.
      theta_high: ``(p,)`` upper edge.
      n: events per class.
      model: logit network on ``(d + p)`` inputs (default 3x50 ReLU MLP).
      config: training settings.

    Returns:
      The trained ``Classifier``; ``jaxgen.classifiers.reweight(clf, x, theta)`` gives
      the weights.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.classifiers import mlp_classifier, reweight
      >>> from jaxgen.methods import dctr
      >>> from jaxgen.train import FitConfig
      >>> simulator = lambda key, theta: theta + jax.random.normal(key, theta.shape)  # N(theta, 1)
      >>> clf = dctr.train(jax.random.key(0), simulator, theta_ref=[0.0], theta_low=[-1.0],
      ...                  theta_high=[1.0], n=5000, model=mlp_classifier((16, 16)),
      ...                  config=FitConfig(epochs=2, batch_size=500, progress=False))
      >>> x0 = simulator(jax.random.key(1), jnp.zeros((1000, 1)))
      >>> w = reweight(clf, x0, jnp.array([0.5]))        # weights taking N(0, 1) to N(0.5, 1)
      >>> w.shape
      (1000,)
    """
    k_data, k_fit = jax.random.split(key)
    x0, x1, _, _ = parametrized_training_data(
        k_data,
        simulator,
        theta_ref=theta_ref,
        theta_low=theta_low,
        theta_high=theta_high,
        n=n,
    )
    clf, _ = train_classifier(k_fit, x0, x1, model=model, config=config)
    return clf


def _theta_loss(clf: Classifier):
    model, params, shift, scale = clf.model, clf.params, clf.shift, clf.scale

    def loss_fn(fit_params, batch, key):
        del key
        x = batch["x"]
        theta = fit_params["theta"]
        th = jnp.broadcast_to(theta, (x.shape[0], theta.shape[-1]))
        logits = model.apply(params, (jnp.concatenate([x, th], -1) - shift) / scale)
        return bce_with_logits(logits[..., 0], batch["y"])

    return loss_fn


def _check_width(name, x, clf, p):
    d = clf.shift.shape[-1] - p
    if x.shape[-1] != d:
        raise ValueError(
            f"`{name}` must have {d} features for {p} parameter(s) of `clf`; got shape "
            f"{x.shape}."
        )


def _fit_data(clf, x_ref, x_data, p):
    if clf.ensemble:
        raise ValueError("`clf` must be a single classifier, not an ensemble.")
    x_ref = as_events("x_ref", x_ref)
    x_data = as_events("x_data", x_data)
    check_array("x_ref", x_ref, ndim=2)
    check_array("x_data", x_data, ndim=2)
    # Each argument is checked against the classifier, not against the other one, so a
    # wrong width is blamed on the argument that has it.
    _check_width("x_ref", x_ref, clf, p)
    _check_width("x_data", x_data, clf, p)
    w0, w1 = class_balance_weights(jnp.ones(x_ref.shape[0]), jnp.ones(x_data.shape[0]))
    x = jnp.concatenate([x_ref, x_data])
    y = jnp.concatenate([jnp.zeros(x_ref.shape[0]), jnp.ones(x_data.shape[0])])
    return x, y, jnp.concatenate([w0, w1])


def fit_theta(
    key: jax.Array,
    clf: Classifier,
    x_ref: jax.typing.ArrayLike,
    x_data: jax.typing.ArrayLike,
    *,
    theta_init: jax.typing.ArrayLike,
    config: FitConfig = FIT_THETA_CONFIG,
) -> ThetaFit:
    """Gradient-based DCTR fit: theta is the only trainable weight (arXiv:1907.08209).

    Args:
      key: PRNG key (validation split and shuffling).
      clf: the frozen parametrised classifier from ``train``.
      x_ref: ``(n0, d)`` nominal events (``theta_ref``), label 0.
      x_data: ``(n1, d)`` data, label 1.
      theta_init: ``(p,)`` starting point.
      config: training settings of the fit (Adam on theta).

    Returns:
      A ``ThetaFit`` with the best-validation theta and the loss history.

    Example:
      Fitting the mean of N(mu, 1) data with the exact parametrised logit
      ``log p(x | mu) / p(x | 0) = mu x - mu^2 / 2`` standing in for a trained ``clf``:

      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> from jaxgen.classifiers import Classifier
      >>> from jaxgen.methods import dctr
      >>> class ExactLogit(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, z):          # z = (x, theta)
      ...         return z[..., 1:] * z[..., :1] - 0.5 * z[..., 1:] ** 2
      >>> clf = Classifier(ExactLogit(), {}, jnp.zeros(2), jnp.ones(2))
      >>> x_ref = jax.random.normal(jax.random.key(0), (20_000, 1))
      >>> x_data = 0.7 + jax.random.normal(jax.random.key(1), (20_000, 1))
      >>> fit = dctr.fit_theta(jax.random.key(2), clf, x_ref, x_data, theta_init=[0.0])
      >>> bool(abs(fit.theta[0] - 0.7) < 0.05)     # 5 standard errors of sqrt(2 / 20,000)
      True
    """
    theta0 = jnp.atleast_1d(jnp.asarray(theta_init, jnp.float32))
    check_array("theta_init", theta0, ndim=1)
    x, y, w = _fit_data(clf, x_ref, x_data, theta0.shape[0])
    result = fit(
        _theta_loss(clf), {"theta": theta0}, {"x": x, "y": y}, key=key, config=config, weights=w
    )
    return ThetaFit(
        result.params["theta"], result.history["train_loss"], result.history["val_loss"]
    )


@functools.partial(jax.jit, static_argnums=(0,))
def _scan_losses(model, clf_arrays, x, y, w, thetas):
    params, shift, scale = clf_arrays

    def one(theta):
        th = jnp.broadcast_to(theta, (x.shape[0], theta.shape[-1]))
        logits = model.apply(params, (jnp.concatenate([x, th], -1) - shift) / scale)[..., 0]
        return jnp.sum(w * bce_with_logits(logits, y)) / jnp.sum(w)

    return jax.lax.map(one, thetas)


def loss_scan(
    clf: Classifier,
    x_ref: jax.typing.ArrayLike,
    x_data: jax.typing.ArrayLike,
    thetas: jax.typing.ArrayLike,
) -> jax.Array:
    """The DCTR fit loss (balanced BCE) at each of ``thetas`` ``(m, p)`` (or ``(m,)``).

    Returns:
      ``(m,)`` losses; the minimum estimates theta_data.
    """
    thetas = jnp.asarray(thetas, jnp.float32)
    thetas = thetas[:, None] if thetas.ndim == 1 else thetas
    check_array("thetas", thetas, ndim=2)
    x, y, w = _fit_data(clf, x_ref, x_data, thetas.shape[-1])
    return _scan_losses(clf.model, (clf.params, clf.shift, clf.scale), x, y, w, thetas)
