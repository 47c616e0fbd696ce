r"""Frechet distance between two samples, through their Gaussian moments.

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", arXiv:1706.08500 (FID). InfoSCC-GAN (arXiv:2112.09653) reports it; jaxgen
computes it in the feature space of any encoder.

For Gaussians ``N(mu_1, S_1)`` and ``N(mu_2, S_2)``

.. math::
   d^2 = \lVert \mu_1 - \mu_2 \rVert^2
         + \mathrm{tr}\,\big(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2}\big),

the squared 2-Wasserstein distance. The matrix square roots come from symmetric
eigendecompositions (``eigh``), so the function is jit-able and needs no ``scipy``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array


def _sqrt_psd(s: jax.Array) -> jax.Array:
    w, v = jnp.linalg.eigh(s)
    return (v * jnp.sqrt(jnp.maximum(w, 0.0))) @ v.T


def gaussian_frechet_distance(
    mu1: jax.Array, cov1: jax.Array, mu2: jax.Array, cov2: jax.Array
) -> jax.Array:
    """Squared Frechet (2-Wasserstein) distance between two Gaussians.

    Args:
      mu1: ``(d,)`` mean of the first Gaussian.
      cov1: ``(d, d)`` its covariance (symmetric positive semi-definite).
      mu2: ``(d,)`` mean of the second.
      cov2: ``(d, d)`` its covariance.

    Returns:
      A non-negative scalar.
    """
    s1 = _sqrt_psd(cov1)
    m = s1 @ cov2 @ s1
    m = 0.5 * (m + m.T)
    tr_sqrt = jnp.sum(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(m), 0.0)))
    d2 = jnp.sum((mu1 - mu2) ** 2) + jnp.trace(cov1) + jnp.trace(cov2) - 2.0 * tr_sqrt
    return jnp.maximum(d2, 0.0)


@jax.jit
def _frechet(x, y):
    return gaussian_frechet_distance(jnp.mean(x, 0), jnp.cov(x.T).reshape(x.shape[1], -1),
                                     jnp.mean(y, 0), jnp.cov(y.T).reshape(y.shape[1], -1))


def frechet_distance(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Frechet distance (FID-style, squared) between samples ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    Uses the sample means and unbiased covariances of both sets.

    Raises:
      ValueError: for non-2D or non-finite inputs, different widths, or fewer than 2 rows.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[0.0], [2.0]]); y = x + 3.0
      >>> float(frechet_distance(x, y))
      9.0
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    check_array("x", x, ndim=2)
    check_array("y", y, ndim=2, last_dim=x.shape[1])
    for name, a in (("x", x), ("y", y)):
        if a.shape[0] < 2:
            raise ValueError(f"`{name}` needs at least 2 rows for a covariance; got {a.shape[0]}.")
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    return _frechet(x.astype(dtype), y.astype(dtype))
