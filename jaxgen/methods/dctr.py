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

The default network is ``factorized_classifier`` (``logit = sum_k a_k(theta) b_k(x) +
c(theta)``), not the paper's MLP on ``(x, theta)``: the MLP's weights are biased towards
one at the edges of the theta range, where the reweighted distribution lives in the
nominal sample's sparse tail (see ``jaxgen.classifiers.FactorizedLogit``). An ensemble
(``ensemble_size``, trained in one ``vmap``) reweights and fits with its members' mean
weight.
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
from jaxgen.classifiers.parametrized import factorized_classifier
from jaxgen.classifiers.parametrized import parametrized_logits
from jaxgen.classifiers.parametrized import parametrized_training_data
from jaxgen.train import FitConfig
from jaxgen.train import fit

#: Settings of the DCTR fit: Adam on theta alone; the cosine decay lets theta settle.
FIT_THETA_CONFIG = dataclasses.replace(
    DEFAULT_FIT_CONFIG, epochs=30, learning_rate=5e-2, schedule="cosine"
)


def ensemble_logits(
    clf: Classifier, x: jax.typing.ArrayLike, theta: jax.typing.ArrayLike
) -> jax.Array:
    """``log w(x, theta)`` of a classifier, or of an ensemble's mean weight.

    For ``K`` members the ratio is the member mean of ``exp(logit_k)``, so the logit is
    ``logsumexp_k(logit_k) - log K``.

    Args:
      clf: a parametrised classifier from ``train`` (single or ensemble).
      x: events ``(n, d)``.
      theta: parameters ``(p,)`` or ``(n, p)``.

    Returns:
      ``(n,)`` logits.
    """
    logits = parametrized_logits(clf, x, theta)
    if clf.ensemble:
        logits = jax.nn.logsumexp(logits, axis=0) - jnp.log(logits.shape[0])
    return logits


def reweight(
    clf: Classifier,
    x: jax.typing.ArrayLike,
    theta: jax.typing.ArrayLike,
    *,
    normalize: bool = True,
) -> jax.Array:
    """DCTR weights ``p(x|theta)/p(x|theta_ref)`` of reference events (ensemble mean).

    Args:
      clf: the classifier from ``train`` (single or ensemble).
      x: reference events ``(n, d)``.
      theta: target parameters ``(p,)`` or ``(n, p)``.
      normalize: rescale to mean one.

    Returns:
      ``(n,)`` weights (``jaxgen.classifiers.reweight`` gives each member's).
    """
    w = jnp.exp(jnp.minimum(ensemble_logits(clf, x, theta), 80.0))
    return w / jnp.mean(w) if normalize else w


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
    ensemble_size: int | None = None,
) -> Classifier:
    """Trains the parametrised DCTR classifier ``f(x, theta)`` (arXiv:1907.08209).

    Args:
      key: PRNG key.
      simulator: ``simulator(key, theta (n, p)) -> x (n, d)``.
      theta_ref: ``(p,)`` nominal parameters (the sample that gets reweighted).
      theta_low: ``(p,)`` lower edge of the training range.
      theta_high: ``(p,)`` upper edge.
      n: events per class.
      model: logit network on ``(d + p)`` inputs; default ``factorized_classifier(p)``
        (the paper's 3x50 ReLU MLP is ``mlp_classifier()``).
      config: training settings.
      ensemble_size: train ``K`` members at once (one ``vmap``), differing by
        initialisation and shuffling; ``reweight``, ``fit_theta`` and ``loss_scan`` use
        their mean weight.

    Returns:
      The trained ``Classifier`` (an ensemble if ``ensemble_size`` is given);
      ``reweight(clf, x, theta)`` gives the weights.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.classifiers import factorized_classifier
      >>> from jaxgen.methods import dctr
      >>> from jaxgen.train import FitConfig
      >>> simulator = lambda key, theta: theta + jax.random.normal(key, theta.shape)  # N(theta, 1)
      >>> clf = dctr.train(jax.random.key(0), simulator, theta_ref=[0.0], theta_low=[-1.0],
      ...                  theta_high=[1.0], n=5000, model=factorized_classifier(1, (16,), 4),
      ...                  config=FitConfig(epochs=2, batch_size=500, progress=False))
      >>> x0 = simulator(jax.random.key(1), jnp.zeros((1000, 1)))
      >>> w = dctr.reweight(clf, x0, jnp.array([0.5]))   # weights taking N(0, 1) to N(0.5, 1)
      >>> w.shape
      (1000,)
    """
    k_data, k_fit = jax.random.split(key)
    x0, x1, _, theta = parametrized_training_data(
        k_data,
        simulator,
        theta_ref=theta_ref,
        theta_low=theta_low,
        theta_high=theta_high,
        n=n,
    )
    model = factorized_classifier(theta.shape[-1]) if model is None else model
    clf, _ = train_classifier(
        k_fit, x0, x1, model=model, config=config, ensemble_size=ensemble_size
    )
    return clf


def _logits_fn(model, ensemble, params, shift, scale):
    """``(x (n, d), theta (p,)) -> (n,)`` logits of the (ensemble-mean) ratio."""

    def one(member_params, x, theta):
        th = jnp.broadcast_to(theta, (x.shape[0], theta.shape[-1]))
        inputs = (jnp.concatenate([x, th], -1) - shift) / scale
        return model.apply(member_params, inputs)[..., 0]

    def logits(x, theta):
        if not ensemble:
            return one(params, x, theta)
        per_member = jax.vmap(one, in_axes=(0, None, None))(params, x, theta)
        return jax.nn.logsumexp(per_member, axis=0) - jnp.log(per_member.shape[0])

    return logits


def _theta_loss(clf: Classifier):
    logits = _logits_fn(clf.model, clf.ensemble, clf.params, clf.shift, clf.scale)

    def loss_fn(fit_params, batch, key):
        del key
        return bce_with_logits(logits(batch["x"], fit_params["theta"]), batch["y"])

    return loss_fn


def _check_width(name, x, clf, p):
    d = clf.shift.shape[-1] - p
    if x.shape[-1] != d:
        raise ValueError(
            f"`{name}` must have {d} features for {p} parameter(s) of `clf`; got shape "
            f"{x.shape}."
        )


def _fit_data(clf, x_ref, x_data, p):
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
      clf: the frozen parametrised classifier from ``train`` (an ensemble is fitted
        through its members' mean weight).
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


@functools.partial(jax.jit, static_argnums=(0, 1))
def _scan_losses(model, ensemble, clf_arrays, x, y, w, thetas):
    logits_fn = _logits_fn(model, ensemble, *clf_arrays)

    def one(theta):
        return jnp.sum(w * bce_with_logits(logits_fn(x, theta), y)) / jnp.sum(w)

    return jax.lax.map(one, thetas)


def loss_scan(
    clf: Classifier,
    x_ref: jax.typing.ArrayLike,
    x_data: jax.typing.ArrayLike,
    thetas: jax.typing.ArrayLike,
) -> jax.Array:
    """The DCTR fit loss (balanced BCE) at each of ``thetas`` ``(m, p)`` (or ``(m,)``).

    An ensemble ``clf`` is scored through its members' mean weight.

    Returns:
      ``(m,)`` losses; the minimum estimates theta_data.
    """
    thetas = jnp.asarray(thetas, jnp.float32)
    thetas = thetas[:, None] if thetas.ndim == 1 else thetas
    check_array("thetas", thetas, ndim=2)
    x, y, w = _fit_data(clf, x_ref, x_data, thetas.shape[-1])
    arrays = (clf.params, clf.shift, clf.scale)
    return _scan_losses(clf.model, clf.ensemble, arrays, x, y, w, thetas)
