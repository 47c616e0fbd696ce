"""A composite flow layer: several layers applied in order as one scanned block."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class SequentialLayer(nn.Module):
    """Applies ``layers`` in order from data to base, and in reverse from base to data.

    Attributes:
      layers: flow layers (``inverse``/``forward`` methods returning ``(out, logdet)``).
    """

    layers: Sequence[nn.Module]

    def inverse(self, x: jax.Array, context: jax.Array | None = None):
        """Data to base."""
        total = jnp.zeros(x.shape[:-1], x.dtype)
        for layer in self.layers:
            x, logdet = layer.inverse(x, context)
            total = total + logdet
        return x, total

    def forward(self, z: jax.Array, context: jax.Array | None = None):
        """Base to data."""
        total = jnp.zeros(z.shape[:-1], z.dtype)
        for layer in reversed(self.layers):
            z, logdet = layer.forward(z, context)
            total = total + logdet
        return z, total

    def __call__(self, x: jax.Array, context: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, context)
