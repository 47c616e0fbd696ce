"""Permutation-invariant networks over sets (Zaheer et al. 2017, arXiv:1703.06114)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.mlp import MLP
from jaxgen.nn.mlp import Activation


class DeepSets(nn.Module):
    """``rho(pool_i phi(x_i))`` over the set axis, with an optional mask.

    Input ``x`` has shape ``(..., set_size, dim)``; ``mask`` (optional) has shape
    ``(..., set_size)`` and marks real elements. The output has shape
    ``(..., rho_features[-1])`` and does not depend on the order of the set.

    Attributes:
      phi_features: layer sizes of the per-element network.
      rho_features: layer sizes of the network applied to the pooled summary.
      pooling: ``"sum"`` or ``"mean"``.
      activation: nonlinearity of both networks.
      last_layer_init: output-kernel initializer of ``rho`` (see ``MLP``).
    """

    phi_features: Sequence[int]
    rho_features: Sequence[int]
    pooling: str = "sum"
    activation: Activation = nn.relu
    last_layer_init: str = "default"

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Returns the set embedding of shape ``(..., rho_features[-1])``."""
        if self.pooling not in ("sum", "mean"):
            raise ValueError(f"`pooling` must be 'sum' or 'mean'; got {self.pooling!r}.")
        h = self.activation(MLP(self.phi_features, self.activation)(x))
        if mask is None:
            mask = jnp.ones(x.shape[:-1], h.dtype)
        mask = mask.astype(h.dtype)[..., None]
        pooled = jnp.sum(h * mask, axis=-2)
        if self.pooling == "mean":
            pooled = pooled / jnp.maximum(jnp.sum(mask, axis=-2), 1.0)
        return MLP(self.rho_features, self.activation, last_layer_init=self.last_layer_init)(
            pooled
        )
