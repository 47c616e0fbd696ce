"""Classification metrics: weighted ROC curve, AUC, SIC and the effective sample size.

All functions are jit-able and take per-event weights, so reweighted (or negatively
weighted, background-subtracted) samples are scored consistently with how they were
trained.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array


def _validate(scores, labels, weights):
    check_array("scores", scores, ndim=1)
    check_array("labels", labels, ndim=1)
    if scores.shape != labels.shape:
        raise ValueError(
            f"`labels` must have the shape of `scores` {scores.shape}; got {labels.shape}."
        )
    if weights is not None:
        check_array("weights", weights, ndim=1)
        if weights.shape != scores.shape:
            raise ValueError(
                f"`weights` must have the shape of `scores` {scores.shape}; got {weights.shape}."
            )


@jax.jit
def _roc(scores, labels, weights):
    order = jnp.argsort(-scores)
    s, y, w = scores[order], labels[order], weights[order]
    pos = jnp.cumsum(w * y)
    neg = jnp.cumsum(w * (1.0 - y))
    n = s.shape[0]
    # Tied scores form one threshold: every member of a tie group takes the cumulative
    # value at the group's last element, so ties contribute the half-credit trapezoid.
    is_last = jnp.concatenate([s[1:] != s[:-1], jnp.array([True])])
    idx = jnp.where(is_last, jnp.arange(n), n)
    end = jax.lax.cummin(idx, reverse=True)
    tpr = jnp.concatenate([jnp.zeros(1), pos[end] / pos[-1]])
    fpr = jnp.concatenate([jnp.zeros(1), neg[end] / neg[-1]])
    return fpr, tpr


def roc_curve(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Weighted ROC curve (false- and true-positive rates for every threshold).

    Args:
      scores: classifier outputs ``(n,)``; larger means more signal-like.
      labels: ``(n,)`` with 1 for signal (positive) and 0 for background.
      weights: per-event weights ``(n,)``; ``None`` means 1.

    Returns:
      ``(fpr, tpr)``, each of shape ``(n + 1,)``, starting at ``(0, 0)`` and ending at
      ``(1, 1)``; points inside a group of tied scores repeat the group's end point.

    Raises:
      ValueError: for mismatched shapes, non-finite values or labels other than 0/1.
    """
    scores = jnp.asarray(scores, jnp.float32)
    labels = jnp.asarray(labels, jnp.float32)
    _validate(scores, labels, None if weights is None else jnp.asarray(weights))
    if not bool(jnp.all((labels == 0) | (labels == 1))):
        raise ValueError("`labels` must contain only 0 and 1.")
    w = jnp.ones_like(scores) if weights is None else jnp.asarray(weights, jnp.float32)
    return _roc(scores, labels, w)


def auc(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Area under the weighted ROC curve.

    Equals the (weighted) Mann-Whitney probability ``P(s_signal > s_background) +
    P(tie) / 2``.

    Args:
      scores: ``(n,)`` classifier outputs.
      labels: ``(n,)`` 0/1 labels.
      weights: ``(n,)`` event weights or ``None``.

    Returns:
      A scalar in ``[0, 1]``.
    """
    fpr, tpr = roc_curve(scores, labels, weights)
    return jnp.trapezoid(tpr, fpr)


def sic(fpr: jax.typing.ArrayLike, tpr: jax.typing.ArrayLike) -> jax.Array:
    """Significance improvement ``tpr / sqrt(fpr)`` (0 where ``fpr == 0``)."""
    fpr, tpr = jnp.asarray(fpr), jnp.asarray(tpr)
    return jnp.where(fpr > 0, tpr / jnp.sqrt(jnp.where(fpr > 0, fpr, 1.0)), 0.0)


def effective_sample_size(weights: jax.typing.ArrayLike, axis: int = -1) -> jax.Array:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` along ``axis``.

    Args:
      weights: event weights, e.g. ``(n,)`` or ``(members, n)``.
      axis: the event axis.

    Returns:
      The effective number of events; equals ``n`` for uniform weights.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.classifiers import effective_sample_size
      >>> float(effective_sample_size(jnp.array([1.0, 1.0, 2.0, 0.0])))   # 4^2 / 6
      2.666...
    """
    w = jnp.asarray(weights, jnp.float32)
    return jnp.sum(w, axis=axis) ** 2 / jnp.sum(w**2, axis=axis)
