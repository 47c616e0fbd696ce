"""Elementwise flow layers: one transformer per coordinate, conditioned on context only.

This is what a coupling or autoregressive layer becomes in one dimension, where there is
no other coordinate to condition on: the elementwise transformer (an RQ spline, Durkan et
al., arXiv:1906.04032, or an affine map) with *learned free parameters* for an
unconditional flow, or with parameters from an MLP of the context for a conditional one.
``coupling_flow(dim=1)`` and ``masked_autoregressive_flow(dim=1)`` are stacks of it; in
more dimensions it is a learned marginal transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.flows.transformers import Transformer
from jaxgen.nn import MLP
from jaxgen.nn.mlp import Activation


class ElementwiseLayer(nn.Module):
    """``z_i = g(x_i; theta_i)`` per coordinate, ``theta`` learned or a function of context.

    Same direction convention as ``CouplingLayer``: ``inverse`` maps data to base,
    ``forward`` base to data; both return ``(output, log|det J|)`` of shape ``(n,)``.

    Attributes:
      dim: event dimension.
      transformer: ``SplineTransformer`` or ``AffineTransformer``.
      conditional: parameters from an MLP of the context (else free parameters).
      hidden: hidden sizes of the context MLP (conditional only).
      activation: its nonlinearity.
      identity_init: start at the identity (zero parameters / zero output layer); else
        free parameters start at N(0, 1) and the MLP's output layer at its default.
    """

    dim: int
    transformer: Transformer
    conditional: bool = False
    hidden: Sequence[int] = (128, 128)
    activation: Activation = nn.relu
    identity_init: bool = True

    def setup(self):
        """Declares the free parameters or the context MLP."""
        if self.dim < 1:
            raise ValueError(f"`dim` must be >= 1; got {self.dim}.")
        groups = tuple(self.dim * g for g in self.transformer.param_groups)
        if self.conditional:
            init = "zeros" if self.identity_init else "default"
            self.conditioner = MLP(tuple(self.hidden) + (sum(groups),), self.activation,
                                   last_layer_init=init, output_groups=groups)
        else:
            init = (nn.initializers.zeros_init() if self.identity_init
                    else nn.initializers.normal(1.0))
            self.free = [self.param(f"group_{i}", init, (self.dim, g))
                         for i, g in enumerate(self.transformer.param_groups)]

    def _bijector(self, context: jax.Array | None):
        if not self.conditional:
            if context is not None:
                raise ValueError("`context` was given to an unconditional elementwise layer.")
            return self.transformer.bijector(tuple(self.free))
        if context is None:
            raise ValueError("this conditional elementwise layer needs a `context`.")
        out = self.conditioner(context)
        return self.transformer.bijector(
            tuple(o.reshape(o.shape[:-1] + (self.dim, -1)) for o in out))

    def inverse(self, x: jax.Array, context: jax.Array | None = None):
        """Data to base: ``(z, log|dz/dx|)``."""
        z, ld = self._bijector(context).forward_and_log_det(x)
        return z, jnp.sum(jnp.broadcast_to(ld, x.shape), axis=-1)

    def forward(self, z: jax.Array, context: jax.Array | None = None):
        """Base to data: ``(x, log|dx/dz|)``."""
        x, ld = self._bijector(context).inverse_and_log_det(z)
        return x, jnp.sum(jnp.broadcast_to(ld, z.shape), axis=-1)

    def __call__(self, x: jax.Array, context: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, context)
