"""Histogram distances used to compare unfolded and true distributions.

The triangular discriminator is the metric of the OmniFold paper (Andreassen et al.,
"OmniFold: A Method to Simultaneously Unfold All Observables", arXiv:1911.09107), quoted
there multiplied by 1e3.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array


def weighted_histogram(
    x: jax.typing.ArrayLike,
    edges: jax.typing.ArrayLike,
    weights: jax.typing.ArrayLike | None = None,
    *,
    normalize: bool = False,
) -> jax.Array:
    """Weighted counts of ``x`` in the bins given by ``edges``.

    Args:
      x: values ``(n,)``; values outside ``[edges[0], edges[-1]]`` are dropped.
      edges: increasing bin edges ``(bins + 1,)``.
      weights: ``(n,)`` event weights (may be negative) or ``None``.
      normalize: divide by the total in-range weight (a probability per bin).

    Returns:
      ``(bins,)`` counts.
    """
    x = jnp.asarray(x, jnp.float32)
    edges = jnp.asarray(edges, jnp.float32)
    check_array("x", x, ndim=1)
    check_array("edges", edges, ndim=1)
    if edges.shape[0] < 2 or not bool(jnp.all(jnp.diff(edges) > 0)):
        raise ValueError("`edges` must be increasing with at least 2 entries.")
    w = jnp.ones_like(x) if weights is None else jnp.asarray(weights, jnp.float32)
    if w.shape != x.shape:
        raise ValueError(f"`weights` must have the shape of `x` {x.shape}; got {w.shape}.")
    counts, _ = jnp.histogram(x, bins=edges, weights=w)
    if normalize:
        counts = counts / jnp.sum(counts)
    return counts


@jax.jit
def _triangular(p, q):
    p = p / jnp.sum(p)
    q = q / jnp.sum(q)
    s = p + q
    return 0.5 * jnp.sum(jnp.where(s > 0, (p - q) ** 2 / jnp.where(s > 0, s, 1.0), 0.0))


def triangular_discriminator(p: jax.typing.ArrayLike, q: jax.typing.ArrayLike) -> jax.Array:
    """Triangular discriminator ``1/2 sum_i (p_i - q_i)^2 / (p_i + q_i)``.

    Both histograms are normalised to unit sum first; empty bins in both contribute 0.
    The OmniFold paper (arXiv:1911.09107) quotes this value times 1e3.

    Args:
      p: ``(bins,)`` non-negative histogram.
      q: ``(bins,)`` non-negative histogram.

    Returns:
      A scalar in ``[0, 1]``: 0 for identical shapes, 1 for disjoint ones.
    """
    p = jnp.asarray(p, jnp.float32)
    q = jnp.asarray(q, jnp.float32)
    check_array("p", p, ndim=1)
    check_array("q", q, ndim=1)
    if p.shape != q.shape:
        raise ValueError(f"`q` must have the shape of `p` {p.shape}; got {q.shape}.")
    if bool(jnp.any(p < 0)) or bool(jnp.any(q < 0)):
        raise ValueError("`p` and `q` must be non-negative histograms.")
    if not (float(jnp.sum(p)) > 0 and float(jnp.sum(q)) > 0):
        raise ValueError("`p` and `q` must have positive totals.")
    return _triangular(p, q)
