"""A fixed permutation of the event dimensions (log-determinant zero)."""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
import numpy as np


class Permute(distrax.Bijector):
    """Permutes the last axis: ``y[..., i] = x[..., permutation[i]]``.

    Args:
      permutation: an integer array of shape ``(dim,)`` holding each index once. It may be
        a traced array (e.g. one row of a stacked table inside ``lax.scan``).

    Raises:
      ValueError: if a concrete ``permutation`` is not a permutation of ``range(dim)``.
    """

    def __init__(self, permutation: jax.typing.ArrayLike):
        super().__init__(event_ndims_in=1)
        if not isinstance(permutation, jax.core.Tracer):
            perm = np.asarray(permutation)
            if perm.ndim != 1 or sorted(perm.tolist()) != list(range(perm.shape[0])):
                raise ValueError(f"`permutation` must be a permutation of range(dim); got {perm}.")
        self.permutation = jnp.asarray(permutation)

    def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Permutes ``x``; the log-determinant is zero."""
        return jnp.take(x, self.permutation, axis=-1), jnp.zeros(x.shape[:-1], x.dtype)

    def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Applies the inverse permutation."""
        inv = jnp.argsort(self.permutation)
        return jnp.take(y, inv, axis=-1), jnp.zeros(y.shape[:-1], y.dtype)


def reverse_permutation(dim: int) -> np.ndarray:
    """``[dim-1, ..., 0]``."""
    return np.arange(dim)[::-1].copy()


def random_permutations(seed: int, num: int, dim: int) -> np.ndarray:
    """``num`` fixed random permutations, shape ``(num, dim)``, from a numpy seed."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(dim) for _ in range(num)])
