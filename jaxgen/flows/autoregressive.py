"""Masked autoregressive flow layers with a MADE conditioner.

MADE: Germain, Gregor, Murray, Larochelle, arXiv:1502.03509. MAF: Papamakarios, Pavlakou,
Murray, arXiv:1705.07057. With spline transformers this is the autoregressive neural
spline flow of Durkan et al., arXiv:1906.04032.

Density evaluation (data to base) is one conditioner pass; sampling (base to data) needs
``dim`` sequential passes, done with ``lax.fori_loop``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.flows.transformers import Transformer
from jaxgen.nn.mlp import Activation
from jaxgen.nn.mlp import last_layer_kernel_init


def made_degrees(dim: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """Degrees of the input, hidden and output units of a MADE (natural input order)."""
    degrees = [np.arange(1, dim + 1)]
    for width in hidden:
        degrees.append(np.arange(width) % max(1, dim - 1) + 1)
    return degrees


def made_masks(dim: int, hidden: Sequence[int], groups: Sequence[int]) -> list[np.ndarray]:
    """Binary masks ``(in, out)`` of each layer.

    The output columns are group-major: for each parameter group of size ``g`` (in
    ``groups``), ``dim * g`` columns, dimension ``i``'s ``g`` columns having degree
    ``i + 1``. A hidden unit of degree ``k`` sees inputs ``1..k``; an output of degree
    ``i + 1`` sees hidden units of degree ``< i + 1``, so it depends only on ``x_{<i}``.
    """
    degrees = made_degrees(dim, hidden)
    masks = [(d_out[None, :] >= d_in[:, None]).astype(np.float32)
             for d_in, d_out in zip(degrees[:-1], degrees[1:], strict=True)]
    out_deg = np.concatenate([np.repeat(np.arange(1, dim + 1), g) for g in groups])
    masks.append((out_deg[None, :] > degrees[-1][:, None]).astype(np.float32))
    return masks


class MaskedDense(nn.Module):
    """A dense layer whose kernel is multiplied by a fixed binary mask."""

    mask: np.ndarray
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x @ (W * mask) + b``."""
        kernel = self.param("kernel", self.kernel_init, self.mask.shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.mask.shape[1],))
        return x @ (kernel * jnp.asarray(self.mask)) + bias


class MADE(nn.Module):
    """Autoregressive conditioner: row ``i`` of its output sees only ``x_{<i}``.

    The output is one array per parameter group, each ``(..., dim, g)``, as the coupling
    conditioner's: the transformer takes the groups as separate arrays, which trains
    faster on CPU than one packed array (8D MAF: 1.07-1.1x). The context (if any) enters every
    first-layer hidden unit unmasked.

    Attributes:
      dim: event dimension.
      param_groups: the transformer's parameter group sizes per dimension.
      hidden: hidden layer sizes.
      activation: nonlinearity.
      identity_init: zero-initialise the output layer.
    """

    dim: int
    param_groups: Sequence[int]
    hidden: Sequence[int] = (128, 128)
    activation: Activation = nn.relu
    identity_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None
                 ) -> tuple[jax.Array, ...]:
        """Returns the conditioner output: per group ``g``, an array ``(..., dim, g)``."""
        masks = made_masks(self.dim, self.hidden, self.param_groups)
        h = MaskedDense(masks[0])(x)
        if context is not None:
            h = h + nn.Dense(self.hidden[0], use_bias=False)(context)
        h = self.activation(h)
        for m in masks[1:-1]:
            h = self.activation(MaskedDense(m)(h))
        init = last_layer_kernel_init("zeros" if self.identity_init else "default")
        out = MaskedDense(masks[-1], kernel_init=init)(h)
        # One product, sliced into the groups: separate products per group (as
        # ``GroupedDense`` does for wide blocks) measured 0.7x as fast here, in 8D.
        bounds = np.cumsum([0, *self.param_groups]) * self.dim
        return tuple(out[..., a:b].reshape(out.shape[:-1] + (self.dim, -1))
                     for a, b in zip(bounds[:-1], bounds[1:], strict=True))


class MaskedAutoregressiveLayer(nn.Module):
    """One MAF layer: ``z_i = tau(x_i; made(x_{<i}, context)_i)``.

    Same direction convention as ``CouplingLayer``: ``inverse`` is data to base.

    Attributes:
      dim: event dimension (>= 2).
      transformer: ``SplineTransformer`` or ``AffineTransformer``.
      hidden: MADE hidden sizes.
      activation: nonlinearity.
      identity_init: start at the identity.
    """

    dim: int
    transformer: Transformer
    hidden: Sequence[int] = (128, 128)
    activation: Activation = nn.relu
    identity_init: bool = True

    def setup(self):
        """Builds the MADE conditioner."""
        if self.dim < 2:
            raise ValueError(f"a masked autoregressive layer needs `dim` >= 2; got {self.dim}.")
        self.made = MADE(self.dim, self.transformer.param_groups, self.hidden,
                         self.activation, self.identity_init)

    def inverse(self, x: jax.Array, context: jax.Array | None = None):
        """Data to base in one pass: ``(z, log|dz/dx|)``."""
        bij = self.transformer.bijector(self.made(x, context))
        z, logdet = bij.forward_and_log_det(x)
        return z, jnp.sum(logdet, axis=-1)

    def forward(self, z: jax.Array, context: jax.Array | None = None):
        """Base to data in ``dim`` passes: ``(x, log|dx/dz|)``."""

        def step(i, x):
            x_new, _ = self.transformer.bijector(self.made(x, context)).inverse_and_log_det(z)
            return x.at[..., i].set(x_new[..., i])

        x = jax.lax.fori_loop(0, self.dim, step, jnp.zeros_like(z))
        _, logdet = self.transformer.bijector(self.made(x, context)).inverse_and_log_det(z)
        return x, jnp.sum(logdet, axis=-1)

    def __call__(self, x: jax.Array, context: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, context)
