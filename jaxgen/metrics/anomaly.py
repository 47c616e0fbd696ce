r"""Anomaly-detection figures of merit: ROC, SIC curves, max SIC, CATHODE's tpr-window SIC.

The significance improvement characteristic (SIC) of a selection is
:math:`\epsilon_S / \sqrt{\epsilon_B}` (``tpr / sqrt(fpr)``), the factor by which a cut
multiplies the naive significance :math:`S/\sqrt{B}` (CWoLa hunting, arXiv:1805.02664;
CATHODE, arXiv:2109.00546, computes exactly ``tprs / fprs**0.5``). At tight cuts it is
dominated by the statistics of the few surviving background events, so it is only
reported where at least ``min_background`` (default 50) background test events survive;
elsewhere the curve is NaN (a gap in a plot) and ``max_sic`` ignores it. CATHODE's
summary number averages the SIC over the ROC points with ``0.18 <= tpr <= 0.23``
(``sic_in_tpr_window``). Background rejection is ``1 / fpr`` at a signal efficiency.

Every function here is jit-able (the checks of ``roc_curve`` run only on concrete inputs)
and takes optional per-event weights; the ``min_background`` rule counts events, not
weights.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen.metrics.classification import _roc

#: CATHODE's tpr window for the averaged SIC (arXiv:2109.00546, ``evaluate_performance``).
CATHODE_TPR_WINDOW = (0.18, 0.23)

#: Fewest background test events that must survive a cut for its SIC to be reported.
MIN_BACKGROUND = 50


class SICCurve(NamedTuple):
    """ROC points with their SIC.

    Attributes:
      fpr: ``(n + 1,)`` background efficiency (false-positive rate), from 0 to 1.
      tpr: ``(n + 1,)`` signal efficiency (true-positive rate).
      sic: ``(n + 1,)`` ``tpr / sqrt(fpr)``, NaN where fewer than ``min_background``
        background events survive.
      n_background: ``(n + 1,)`` background events (counts) surviving each cut.
    """

    fpr: jax.Array
    tpr: jax.Array
    sic: jax.Array
    n_background: jax.Array


def _prepare(scores, labels, weights):
    s = jnp.asarray(scores, jnp.float32)
    y = jnp.asarray(labels, jnp.float32)
    for name, a in (("scores", s), ("labels", y)):
        check_array(name, a, ndim=1)
    if s.shape != y.shape:
        raise ValueError(f"`labels` must have the shape of `scores` {s.shape}; got {y.shape}.")
    if s.shape[0] == 0:
        raise ValueError("`scores` is empty.")
    if not isinstance(y, jax.core.Tracer):
        if not bool(jnp.all((y == 0) | (y == 1))):
            raise ValueError("`labels` must contain only 0 and 1.")
        if not (bool(jnp.any(y == 1)) and bool(jnp.any(y == 0))):
            raise ValueError("`labels` must contain both signal (1) and background (0).")
    if weights is None:
        w = jnp.ones_like(s)
    else:
        w = jnp.asarray(weights, jnp.float32)
        check_array("weights", w, ndim=1)
        if w.shape != s.shape:
            raise ValueError(f"`weights` must have the shape of `scores` {s.shape}; got "
                             f"{w.shape}.")
    return s, y, w


def roc(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """ROC curve ``(fpr, tpr)``, ``(n + 1,)`` each, from (0, 0) to (1, 1); jit-able.

    Ties form one threshold (as in scikit-learn's ``roc_curve``). Larger scores are more
    signal-like; labels are 1 (signal) and 0 (background).

    Example:
      >>> fpr, tpr = roc(jnp.array([0.9, 0.2, 0.6, 0.1]), jnp.array([1, 0, 1, 0]))
      >>> fpr.tolist(), tpr.tolist()
      ([0.0, 0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0, 1.0])
    """
    return _roc(*_prepare(scores, labels, weights))


def sic_curve(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    min_background: int = MIN_BACKGROUND,
) -> SICCurve:
    """SIC ``tpr / sqrt(fpr)`` at every cut, where >= ``min_background`` background events pass.

    Args:
      scores: ``(n,)`` anomaly scores (larger = more signal-like).
      labels: ``(n,)`` truth, 1 signal, 0 background.
      weights: ``(n,)`` event weights or ``None``.
      min_background: the count rule (default 50); 0 disables it.

    Returns:
      ``SICCurve`` (NaN SIC where the rule fails or fpr is 0).

    Example:
      >>> s = jnp.arange(200.0)
      >>> y = (s >= 150).astype(jnp.int32)  # 50 signal above 150 background
      >>> c = sic_curve(s, y)
      >>> round(float(jnp.nanmax(c.sic)), 3)  # all signal and 50 of 150 background pass
      1.732
    """
    s, y, w = _prepare(scores, labels, weights)
    fpr, tpr = _roc(s, y, w)
    # Surviving background counts: the unweighted ROC's fpr times the count.
    fpr_counts, _ = _roc(s, y, jnp.ones_like(s))
    n_b = jnp.sum(1.0 - y)
    count = jnp.round(fpr_counts * n_b)
    ok = (count >= min_background) & (fpr > 0)
    sic = jnp.where(ok, tpr / jnp.sqrt(jnp.where(fpr > 0, fpr, 1.0)), jnp.nan)
    return SICCurve(fpr, tpr, sic, count)


def max_sic(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    min_background: int = MIN_BACKGROUND,
) -> jax.Array:
    """Largest SIC over the cuts that keep >= ``min_background`` background events.

    Example:
      >>> s = jnp.arange(200.0)
      >>> round(float(max_sic(s, (s >= 150).astype(jnp.int32))), 3)
      1.732
    """
    c = sic_curve(scores, labels, weights, min_background=min_background)
    return jnp.max(jnp.where(jnp.isnan(c.sic), -jnp.inf, c.sic))


def sic_in_tpr_window(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    window: tuple[float, float] = CATHODE_TPR_WINDOW,
    min_background: int = MIN_BACKGROUND,
) -> jax.Array:
    """Mean SIC of the ROC points with ``window[0] <= tpr <= window[1]`` (CATHODE: [0.18, 0.23]).

    Points failing the ``min_background`` rule are left out; NaN if none remains.

    Example:
      >>> s = jnp.arange(200.0)
      >>> y = (s >= 150).astype(jnp.int32)
      >>> float(sic_in_tpr_window(s, y))  # fpr = 0 in the window: no SIC
      nan
    """
    lo, hi = window
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"`window` must satisfy 0 <= lo < hi <= 1; got {window!r}.")
    c = sic_curve(scores, labels, weights, min_background=min_background)
    use = (c.tpr >= lo) & (c.tpr <= hi) & ~jnp.isnan(c.sic)
    n = jnp.sum(use)
    return jnp.where(n > 0, jnp.sum(jnp.where(use, c.sic, 0.0)) / jnp.maximum(n, 1), jnp.nan)


def background_rejection(
    scores: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    signal_efficiency: float = 0.3,
) -> jax.Array:
    """``1 / fpr`` at the given signal efficiency (fpr linearly interpolated in tpr).

    Infinite if no background passes at that efficiency.

    Example:
      >>> s = jnp.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
      >>> y = jnp.array([1, 0, 1, 0, 0, 0])
      >>> float(background_rejection(s, y, signal_efficiency=1.0))  # 1 of 4 passes
      4.0
    """
    if not 0.0 < signal_efficiency <= 1.0:
        raise ValueError(f"`signal_efficiency` must be in (0, 1]; got {signal_efficiency!r}.")
    fpr, tpr = _roc(*_prepare(scores, labels, weights))
    # First point reaching the efficiency, interpolated back to it from its predecessor.
    i = jnp.clip(jnp.searchsorted(tpr, signal_efficiency, side="left"), 1, tpr.shape[0] - 1)
    t0, t1, f0, f1 = tpr[i - 1], tpr[i], fpr[i - 1], fpr[i]
    f = f0 + (f1 - f0) * (signal_efficiency - t0) / jnp.where(t1 > t0, t1 - t0, 1.0)
    return jnp.where(f > 0, 1.0 / jnp.where(f > 0, f, 1.0), jnp.inf)
