"""Sample-based distances between distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array, check_positive


def wasserstein_1d(a: jax.Array, b: jax.Array) -> jax.Array:
    """Exact 1-Wasserstein distance between two equal-size 1D samples ``(n,)``."""
    return jnp.mean(jnp.abs(jnp.sort(a) - jnp.sort(b)))


def sliced_wasserstein(
    key: jax.Array, x: jax.Array, y: jax.Array, num_projections: int = 128
) -> jax.Array:
    """Mean 1-Wasserstein distance of random 1D projections of ``x`` and ``y`` ``(n, d)``.

    Rabin, Peyre, Delon, Bernot (2011), "Wasserstein barycenter and its application to
    texture mixing". Both samples must have the same size.
    """
    check_array("x", x, ndim=2)
    check_array("y", y, ndim=2, last_dim=x.shape[1])
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`x` and `y` need equal sizes; got {x.shape[0]} and {y.shape[0]}.")
    check_positive("num_projections", num_projections)
    dirs = jax.random.normal(key, (num_projections, x.shape[1]))
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    return jnp.mean(jax.vmap(lambda d: wasserstein_1d(x @ d, y @ d))(dirs))
