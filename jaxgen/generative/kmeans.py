r"""k-means clustering in JAX: k-means++ seeding, Lloyd iterations, vmapped restarts.

Lloyd, "Least squares quantization in PCM" (1982); Arthur and Vassilvitskii,
"k-means++: the advantages of careful seeding" (SODA 2007). Used to cluster contrastive
embeddings into "internal" labels (InfoSCC-GAN, arXiv:2112.09653) and into the modes of
a discontinuous distribution (arXiv:2112.09646).

k-means minimises the inertia

.. math::
   J = \sum_i \min_k \lVert x_i - c_k \rVert^2 .

Each restart seeds with k-means++ (each new centre drawn with probability proportional
to the squared distance to the nearest centre so far), then runs a fixed number of Lloyd
steps in a ``lax.scan`` (a converged step is a no-op; an empty cluster keeps its centre).
Restarts run together under ``vmap`` and the lowest-inertia one is returned.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_positive


class KMeansResult(NamedTuple):
    """What ``kmeans`` returns.

    Attributes:
      centroids: ``(k, d)`` cluster centres.
      labels: ``(n,)`` int32 index of each point's nearest centre.
      inertia: scalar sum of squared distances to the nearest centre.
    """

    centroids: jax.Array
    labels: jax.Array
    inertia: jax.Array


def _sq_dist(x: jax.Array, c: jax.Array) -> jax.Array:
    """``(n, k)`` squared Euclidean distances, via the expansion (no ``(n, k, d)`` array)."""
    d2 = jnp.sum(x**2, -1)[:, None] - 2.0 * x @ c.T + jnp.sum(c**2, -1)[None, :]
    return jnp.maximum(d2, 0.0)


def assign(centroids: jax.Array, x: jax.Array) -> jax.Array:
    """Index ``(n,)`` of the nearest centroid ``(k, d)`` for each row of ``x`` ``(n, d)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.generative import assign
      >>> assign(jnp.array([[0.0], [10.0]]), jnp.array([[1.0], [9.0], [4.0]])).tolist()
      [0, 1, 0]
    """
    return jnp.argmin(_sq_dist(x, centroids), axis=-1).astype(jnp.int32)


def kmeans_plus_plus(key: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """k-means++ seeding: ``(k, d)`` initial centres chosen among the rows of ``x`` ``(n, d)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import assign, kmeans_plus_plus
      >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
      >>> centroids = kmeans_plus_plus(jax.random.key(0), x, 2)
      >>> labels = assign(centroids, x)
      >>> labels.tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])    # one centroid per pair
      True
    """
    n = x.shape[0]
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, n)]
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, -1)

    def body(i, carry):
        centres, d2 = carry
        # All points coincide with centres when d2 sums to 0: fall back to uniform.
        total = jnp.sum(d2)
        p = jnp.where(total > 0, d2 / jnp.where(total > 0, total, 1.0), 1.0 / n)
        new = x[jax.random.choice(keys[i], n, p=p)]
        return centres.at[i].set(new), jnp.minimum(d2, jnp.sum((x - new) ** 2, -1))

    centres, _ = jax.lax.fori_loop(1, k, body, (centres, d2))
    return centres


def _lloyd(x: jax.Array, centres: jax.Array, num_iters: int) -> KMeansResult:
    k = centres.shape[0]

    def step(c, _):
        labels = assign(c, x)
        onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
        counts = jnp.sum(onehot, 0)
        sums = onehot.T @ x
        new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], c)
        return new, None

    c, _ = jax.lax.scan(step, centres, None, length=num_iters)
    d2 = _sq_dist(x, c)
    return KMeansResult(c, jnp.argmin(d2, -1).astype(jnp.int32), jnp.sum(jnp.min(d2, -1)))


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _kmeans(key, x, k, num_restarts, num_iters):
    def one(kk):
        return _lloyd(x, kmeans_plus_plus(kk, x, k), num_iters)

    runs = jax.vmap(one)(jax.random.split(key, num_restarts))
    best = jnp.argmin(runs.inertia)
    return jax.tree_util.tree_map(lambda a: a[best], runs)


def kmeans(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    k: int,
    *,
    num_restarts: int = 10,
    num_iters: int = 100,
) -> KMeansResult:
    """Clusters ``x`` into ``k`` groups; the best of ``num_restarts`` k-means++ runs.

    Args:
      key: PRNG key for the seeding.
      x: ``(n, d)`` points.
      k: number of clusters (``1 <= k <= n``).
      num_restarts: independent seedings, run together with ``vmap``.
      num_iters: Lloyd iterations per restart.

    Returns:
      ``KMeansResult(centroids (k, d), labels (n,), inertia ())``.

    Raises:
      ValueError: for a non-2D or non-finite ``x`` or impossible ``k``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
      >>> res = kmeans(jax.random.key(0), x, 2)
      >>> bool(res.labels[0] == res.labels[1] != res.labels[2] == res.labels[3])
      True
    """
    x = jnp.asarray(x, jnp.float32)
    check_array("x", x, ndim=2)
    check_positive("k", k)
    check_positive("num_restarts", num_restarts)
    check_positive("num_iters", num_iters)
    if k > x.shape[0]:
        raise ValueError(f"`k`={k} exceeds the number of points {x.shape[0]}.")
    return _kmeans(key, x, int(k), int(num_restarts), int(num_iters))
