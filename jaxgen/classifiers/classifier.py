"""Per-instance binary classifiers: weighted BCE, class balancing, likelihood-ratio weights.

A classifier ``f(x) = sigmoid(logit(x))`` trained with (weighted) binary cross-entropy
between a source sample (label 0) and a target sample (label 1) of equal total weight
approximates ``p_target / (p_target + p_source)``, so ``exp(logit(x))`` estimates the
density ratio ``p_target(x) / p_source(x)`` (Andreassen & Nachman, "Neural Networks for
Full Phase-space Reweighting and Parameter Tuning", arXiv:1907.08209).

The same trainer serves every input shape: events ``(n, d)``, sets of events
``(n_sets, set_size, d)`` (multi-event classifiers) and parametrised inputs
``(n, d + p)``. Training goes through ``jaxgen.train.fit`` / ``fit_ensemble``; event
weights (negative ones included, for background subtraction) reach the loss through the
engine's ``weights=``.
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
from jaxgen.nn import MLP
from jaxgen.train import FitConfig
from jaxgen.train import FitResult
from jaxgen.train import fit
from jaxgen.train import fit_ensemble
from jaxgen.train import make_optimizer

Params = Any

#: Training settings of the OmniFold / DCTR papers' classifiers (Adam 1e-3, constant
#: learning rate, no gradient clipping, early stopping with patience 10, 80/20 split).
DEFAULT_FIT_CONFIG = FitConfig(
    epochs=20,
    batch_size=1000,
    learning_rate=1e-3,
    schedule="constant",
    clip_norm=None,
    val_fraction=0.2,
    patience=10,
    progress=False,
)


class Classifier(NamedTuple):
    """A binary classifier: a flax module, its parameters and the input standardisation.

    Attributes:
      model: flax module mapping standardised inputs ``(n, ...)`` to logits ``(n, 1)``.
      params: its parameters; every leaf carries a leading member axis ``K`` if
        ``ensemble`` is true.
      shift: ``(d,)`` subtracted from the inputs' last axis before the model.
      scale: ``(d,)`` dividing the shifted inputs.
      ensemble: whether ``params`` holds ``K`` members (trained together with ``vmap``).
    """

    model: nn.Module
    params: Params
    shift: jax.Array
    scale: jax.Array
    ensemble: bool = False

    @property
    def num_members(self) -> int:
        """``K`` for an ensemble, 1 otherwise."""
        if not self.ensemble:
            return 1
        return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])


def mlp_classifier(hidden: Sequence[int] = (50, 50, 50)) -> nn.Module:
    """The papers' classifier network: ReLU MLP with one logit output (no sigmoid).

    Args:
      hidden: widths of the hidden layers; the default 3x50 is OmniFold's and DCTR's.

    Returns:
      ``MLP(hidden + (1,))``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.classifiers import mlp_classifier
      >>> net = mlp_classifier((16, 16))
      >>> params = net.init(jax.random.key(0), jnp.zeros((1, 3)))
      >>> net.apply(params, jnp.zeros((5, 3))).shape      # one logit per event
      (5, 1)
    """
    hidden = tuple(int(h) for h in hidden)
    for h in hidden:
        check_positive("hidden", h)
    return MLP(hidden + (1,))


def as_events(name: str, x: jax.typing.ArrayLike) -> jax.Array:
    """Returns ``x`` as a float32 array with a feature axis: ``(n,)`` becomes ``(n, 1)``.

    Raises:
      ValueError: if ``x`` is a scalar, empty or not finite.
    """
    x = jnp.asarray(x, jnp.float32)
    check_array(name, x, ndim=(1, 2, 3))
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` holds no events.")
    return x


def _event_weights(name: str, w: jax.typing.ArrayLike | None, n: int) -> jax.Array:
    if w is None:
        return jnp.ones((n,), jnp.float32)
    w = jnp.asarray(w, jnp.float32)
    check_array(name, w, ndim=1)
    if w.shape[0] != n:
        raise ValueError(f"`{name}` must have shape ({n},); got {w.shape}.")
    return w


def bce_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example binary cross-entropy ``-y log s(l) - (1-y) log(1-s(l))``, stable in ``l``.

    Args:
      logits: ``(n,)`` classifier logits.
      labels: ``(n,)`` targets in ``[0, 1]``.

    Returns:
      ``(n,)`` losses. Event weights are applied by the training engine (or the caller).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.classifiers import bce_with_logits
      >>> print(bce_with_logits(jnp.zeros(2), jnp.array([0.0, 1.0])))   # log 2 each
      [0.6931472 0.6931472]
    """
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def class_balance_weights(
    w0: jax.typing.ArrayLike, w1: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Rescales class-1 weights so both classes carry the same total weight.

    With balanced classes the optimal classifier obeys ``f/(1-f) = q1(x)/q0(x)`` for the
    normalised (weighted) densities ``q0``, ``q1`` of the two classes.

    Args:
      w0: class-0 weights ``(..., n0)``; leading axes (ensemble members) broadcast.
      w1: class-1 weights ``(..., n1)``; may contain negative entries.

    Returns:
      ``(w0, w1 * sum(w0) / sum(w1))``.

    Raises:
      ValueError: if either class has a non-positive total weight.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.classifiers import class_balance_weights
      >>> w0, w1 = class_balance_weights(jnp.ones(4), jnp.ones(2))
      >>> float(w0.sum()), float(w1.sum())
      (4.0, 4.0)
    """
    w0 = jnp.asarray(w0, jnp.float32)
    w1 = jnp.asarray(w1, jnp.float32)
    s0 = jnp.sum(w0, axis=-1, keepdims=True)
    s1 = jnp.sum(w1, axis=-1, keepdims=True)
    if not bool(jnp.all(s0 > 0)):
        raise ValueError("the class-0 weights must have a positive sum.")
    if not bool(jnp.all(s1 > 0)):
        raise ValueError("the class-1 weights must have a positive sum.")
    return w0, w1 * (s0 / s1)


@functools.cache
def _apply_fn(model: nn.Module, ensemble: bool):
    def one(params, shift, scale, x):
        return model.apply(params, (x - shift) / scale)[..., 0]

    fn = jax.vmap(one, in_axes=(0, None, None, None)) if ensemble else one
    return jax.jit(fn)


def classifier_logits(clf: Classifier, x: jax.typing.ArrayLike) -> jax.Array:
    """Logits of a classifier on ``x``.

    Args:
      clf: the classifier.
      x: inputs of the shape it was trained on, ``(n, d)`` (``(n,)`` for ``d = 1``) or
        ``(n, set_size, d)`` for set classifiers.

    Returns:
      ``(n,)`` logits, or ``(K, n)`` for an ensemble.

    Example:
      Inputs are standardised with the classifier's ``shift`` and ``scale`` before the network:

      >>> import flax.linen as nn, jax.numpy as jnp
      >>> from jaxgen.classifiers import Classifier, classifier_logits
      >>> class Identity(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         return x
      >>> clf = Classifier(Identity(), {}, jnp.array([1.0]), jnp.array([2.0]))
      >>> classifier_logits(clf, jnp.array([[1.0], [5.0]])).ravel().tolist()   # (x - 1) / 2
      [0.0, 2.0]
    """
    x = as_events("x", x)
    if x.shape[-1] != clf.shift.shape[-1]:
        raise ValueError(
            f"`x` must have {clf.shift.shape[-1]} features (last axis); got shape {x.shape}."
        )
    return _apply_fn(clf.model, clf.ensemble)(clf.params, clf.shift, clf.scale, x)


def likelihood_ratio_weights(
    logits: jax.typing.ArrayLike,
    *,
    normalize: bool = True,
    clip: tuple[float, float] | None = None,
) -> jax.Array:
    """Density-ratio weights ``w = f/(1-f) = exp(logit)`` (arXiv:1907.08209).

    Args:
      logits: ``(n,)`` or ``(K, n)`` classifier logits.
      normalize: rescale to mean one along the event axis (the last one).
      clip: optional ``(low, high)`` bounds applied before normalising.

    Returns:
      Weights of the shape of ``logits``; finite even for extreme logits (computed in a
      way that saturates at the float32 maximum rather than overflowing).

    Raises:
      ValueError: for non-finite logits or ``clip`` with ``low > high`` or ``low < 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.classifiers import likelihood_ratio_weights
      >>> likelihood_ratio_weights(jnp.log(jnp.array([1.0, 3.0])), normalize=False)  # f/(1-f)
      Array([1., 3.], dtype=float32)
    """
    logits = jnp.asarray(logits, jnp.float32)
    check_array("logits", logits, ndim=(1, 2))
    if clip is not None:
        lo, hi = float(clip[0]), float(clip[1])
        if lo < 0 or hi < lo:
            raise ValueError(f"`clip` must be (low, high) with 0 <= low <= high; got {clip}.")
    return _lr_weights(logits, normalize, clip)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _lr_weights(logits, normalize, clip):
    # exp(88.7) is the float32 maximum: cap the logit so weights stay finite.
    w = jnp.exp(jnp.minimum(logits, 80.0))
    if clip is not None:
        w = jnp.clip(w, clip[0], clip[1])
    if normalize:
        w = w / jnp.mean(w, axis=-1, keepdims=True)
    return w


def ensemble_weights(
    logits: jax.typing.ArrayLike,
    *,
    normalize: bool = True,
    clip: tuple[float, float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Ensemble-mean likelihood-ratio weights and their spread over members.

    Args:
      logits: ``(K, n)`` logits of ``K`` members.
      normalize: normalise each member's weights to mean one first.
      clip: optional ``(low, high)`` clipping of each member's weights.

    Returns:
      ``(mean, std)``, each ``(n,)``: the member average and the member standard
      deviation (``ddof=1``; zeros for ``K = 1``).

    Example:
      Two members that disagree on two events; each member's weights
      ``f / (1 - f) = exp(logit)`` are normalised to mean 1, then averaged:

      >>> import jax.numpy as jnp
      >>> from jaxgen.classifiers import ensemble_weights
      >>> w, spread = ensemble_weights(jnp.log(jnp.array([[1.0, 3.0], [3.0, 1.0]])))
      >>> print(w, spread)          # mean (1, 1); spread |1.5 - 0.5| / sqrt(2)
      [1. 1.] [0.70710677 0.70710677]
    """
    logits = jnp.asarray(logits, jnp.float32)
    check_array("logits", logits, ndim=2)
    w = likelihood_ratio_weights(logits, normalize=normalize, clip=clip)
    k = w.shape[0]
    std = jnp.std(w, axis=0, ddof=1) if k > 1 else jnp.zeros(w.shape[1:])
    return jnp.mean(w, axis=0), std


def _check_same_features(x0: jax.Array, x1: jax.Array) -> None:
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"`x0` and `x1` must have the same per-event shape; got {x0.shape[1:]} and "
            f"{x1.shape[1:]}."
        )


def _standardisation(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    flat = x.reshape(-1, x.shape[-1])
    shift = jnp.mean(flat, axis=0)
    scale = jnp.std(flat, axis=0)
    return shift, jnp.where(scale > 0, scale, 1.0)


def train_classifier(
    key: jax.Array,
    x0: jax.typing.ArrayLike,
    x1: jax.typing.ArrayLike,
    *,
    w0: jax.typing.ArrayLike | None = None,
    w1: jax.typing.ArrayLike | None = None,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
    init: Classifier | None = None,
    ensemble_size: int | None = None,
    member_weights: jax.typing.ArrayLike | None = None,
    balance: bool = True,
    standardize: bool = True,
) -> tuple[Classifier, FitResult]:
    r"""Trains a classifier with weighted BCE: ``x0`` labelled 0, ``x1`` labelled 1.

    .. math::
       L[f] = -\sum_{i \in 1} w_i \log f(x_i) - \sum_{i \in 0} w_i \log(1 - f(x_i))

    With ``balance`` the class-1 weights are rescaled to the class-0 total, so
    ``exp(logit)`` estimates the ratio of the normalised weighted densities
    ``q1(x)/q0(x)`` (arXiv:1907.08209).

    Args:
      key: PRNG key (initialisation, validation split, shuffling).
      x0: class-0 events ``(n0, d)``, ``(n0,)`` for ``d = 1``, or sets ``(n0, m, d)``.
      x1: class-1 events with the per-event shape of ``x0``.
      w0: ``(n0,)`` class-0 weights (default 1).
      w1: ``(n1,)`` class-1 weights (default 1); negative entries allowed (e.g. a
        background sample subtracted from data), as long as the total is positive.
      model: flax module producing ``(n, 1)`` logits; default ``mlp_classifier()``.
      config: training settings (default ``DEFAULT_FIT_CONFIG``).
      init: warm start from this classifier's parameters and standardisation.
      ensemble_size: train ``K`` members at once with ``vmap`` (``fit_ensemble``); the
        members differ by initialisation and shuffling, and by ``member_weights``.
      member_weights: ``(K, n0 + n1)`` multiplicative per-member weights, e.g.
        ``jaxgen.train.poisson_bootstrap_weights``; order is ``x0`` events then ``x1``.
      balance: equalise the total weights of the two classes (per member).
      standardize: standardise inputs with the mean/std of the training events.

    Returns:
      ``(classifier, fit_result)``.

    Raises:
      ValueError: for inconsistent shapes, non-finite inputs or weights, a class with
        non-positive total weight, or a warm start of the wrong kind.

    Example:
      >>> import jax
      >>> from jaxgen.classifiers import (classifier_logits, likelihood_ratio_weights,
      ...                                 mlp_classifier, train_classifier)
      >>> from jaxgen.train import FitConfig
      >>> k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
      >>> x0 = jax.random.normal(k0, (2000, 1))            # N(0, 1)
      >>> x1 = jax.random.normal(k1, (2000, 1)) + 0.5      # N(0.5, 1)
      >>> clf, result = train_classifier(k2, x0, x1, model=mlp_classifier((16,)),
      ...                                config=FitConfig(epochs=3, batch_size=200,
      ...                                                 progress=False))
      >>> w = likelihood_ratio_weights(classifier_logits(clf, x0))   # p1/p0 on x0
      >>> w.shape
      (2000,)
    """
    config = DEFAULT_FIT_CONFIG if config is None else config
    x0 = as_events("x0", x0)
    x1 = as_events("x1", x1)
    _check_same_features(x0, x1)
    n0, n1 = x0.shape[0], x1.shape[0]
    w0 = _event_weights("w0", w0, n0)
    w1 = _event_weights("w1", w1, n1)
    if ensemble_size is not None:
        check_positive("ensemble_size", ensemble_size)
    if member_weights is not None:
        if ensemble_size is None:
            raise ValueError("`member_weights` needs `ensemble_size`.")
        member_weights = jnp.asarray(member_weights, jnp.float32)
        check_array("member_weights", member_weights, ndim=2)
        if member_weights.shape != (ensemble_size, n0 + n1):
            raise ValueError(
                f"`member_weights` must have shape {(ensemble_size, n0 + n1)}; got "
                f"{member_weights.shape}."
            )
        w0 = w0 * member_weights[:, :n0]
        w1 = w1 * member_weights[:, n0:]
    if balance:
        w0, w1 = class_balance_weights(w0, w1)
    else:
        if not bool(jnp.all(jnp.sum(w0, -1) + jnp.sum(w1, -1) > 0)):
            raise ValueError("the total event weight must be positive.")
    x = jnp.concatenate([x0, x1])
    y = jnp.concatenate([jnp.zeros((n0,)), jnp.ones((n1,))])
    weights = jnp.concatenate([w0, w1], axis=-1)

    model = mlp_classifier() if model is None else model
    ensemble = ensemble_size is not None
    key_init, key_fit = jax.random.split(key)
    if init is not None:
        if init.ensemble != ensemble or (ensemble and init.num_members != ensemble_size):
            raise ValueError("`init` must have the ensemble size of the new training.")
        if init.shift.shape[-1] != x.shape[-1]:
            raise ValueError("`init` was trained on inputs with a different feature count.")
        model, params, shift, scale = init.model, init.params, init.shift, init.scale
    else:
        if standardize:
            shift, scale = _standardisation(x)
        else:
            shift = jnp.zeros((x.shape[-1],))
            scale = jnp.ones((x.shape[-1],))
        if ensemble:
            keys = jax.random.split(key_init, ensemble_size)
            params = jax.vmap(model.init, in_axes=(0, None))(keys, x[:1])
        else:
            params = model.init(key_init, x[:1])

    # Inputs are standardised here, outside the loss, and the loss and optimizer are
    # cached per model and config: the engine then traces identical functions on every
    # call (OmniFold trains 2 classifiers per iteration), which keeps compile time down.
    data = {"x": (x - shift) / scale, "y": y}
    n_train = x.shape[0] - (
        int(round(x.shape[0] * config.val_fraction)) if config.val_fraction else 0
    )
    optimizer = _optimizer(config, config.epochs * max(n_train // config.batch_size, 1))
    trainer = fit_ensemble if ensemble else fit
    result = trainer(
        _bce_loss(model),
        params,
        data,
        key=key_fit,
        config=config,
        weights=weights,
        optimizer=optimizer,
    )
    clf = Classifier(model, result.params, shift, scale, ensemble)
    return clf, result


@functools.cache
def _bce_loss(model: nn.Module):
    def loss_fn(params, batch, key):
        del key
        return bce_with_logits(model.apply(params, batch["x"])[..., 0], batch["y"])

    return loss_fn


@functools.cache
def _optimizer(config: FitConfig, total_steps: int) -> optax.GradientTransformation:
    return make_optimizer(config, total_steps)


def replace_config(config: FitConfig, **changes: Any) -> FitConfig:
    """``dataclasses.replace`` for a ``FitConfig`` (validated again)."""
    return dataclasses.replace(config, **changes)


def as_numpy_mask(name: str, mask: jax.typing.ArrayLike | None, n: int) -> np.ndarray:
    """Validates a boolean event mask ``(n,)``; ``None`` means all true."""
    if mask is None:
        return np.ones((n,), bool)
    m = np.asarray(mask)
    if m.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},); got {m.shape}.")
    if m.dtype != bool:
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(f"`{name}` must be boolean (or 0/1).")
        m = m.astype(bool)
    return m
