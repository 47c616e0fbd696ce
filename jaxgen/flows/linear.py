"""Invertible linear layers in LU form (Kingma & Dhariwal 2018, arXiv:1807.03039)."""

from __future__ import annotations

import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

_MIN_DIAG = 1e-3
_DIAG_OFFSET = math.log(math.expm1(1.0 - _MIN_DIAG))  # diagonal exactly 1 at zero params


class LULinearLayer(nn.Module):
    """``z = L U x + b`` with unit-lower ``L`` and upper ``U`` of positive diagonal.

    Built on ``distrax.LowerUpperTriangularAffine``; the diagonal is ``softplus + 1e-3``
    so the map stays invertible. Initialised to the identity. Data to base (``inverse``)
    is a matrix product; base to data solves two triangular systems.

    Attributes:
      dim: event dimension.
    """

    dim: int

    def setup(self):
        d = self.dim
        zeros = nn.initializers.zeros_init()
        self.lower = self.param("lower", zeros, (d, d))
        self.upper = self.param("upper", zeros, (d, d))
        self.diag = self.param("diag", zeros, (d,))
        self.bias = self.param("bias", zeros, (d,))

    def _bijector(self) -> distrax.LowerUpperTriangularAffine:
        diag = jax.nn.softplus(self.diag + _DIAG_OFFSET) + _MIN_DIAG
        matrix = jnp.tril(self.lower, -1) + jnp.triu(self.upper, 1) + jnp.diag(diag)
        return distrax.LowerUpperTriangularAffine(matrix, self.bias)

    def inverse(self, x: jax.Array, context: jax.Array | None = None):
        """Data to base: ``(L U x + b, log|det LU|)``."""
        del context
        z, logdet = self._bijector().forward_and_log_det(x)
        return z, jnp.broadcast_to(logdet, x.shape[:-1])

    def forward(self, z: jax.Array, context: jax.Array | None = None):
        """Base to data."""
        del context
        x, logdet = self._bijector().inverse_and_log_det(z)
        return x, jnp.broadcast_to(logdet, z.shape[:-1])

    def __call__(self, x: jax.Array, context: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, context)
