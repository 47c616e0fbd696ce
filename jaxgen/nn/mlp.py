"""Multilayer perceptrons: plain and residual."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

LAST_LAYER_INITS = ("default", "zeros", "identity")


def last_layer_kernel_init(kind: str) -> nn.initializers.Initializer:
    """Kernel initializer for an output layer.

    ``"zeros"`` makes the network output its bias (zero at init), which is how flows
    start at the identity: a conditioner that outputs zeros gives an identity spline or
    affine map. ``"identity"`` gives an identity matrix (square layers only).
    """
    if kind == "default":
        return nn.initializers.lecun_normal()
    if kind == "zeros":
        return nn.initializers.zeros_init()
    if kind == "identity":

        def init(key, shape, dtype=jnp.float32):
            del key
            if shape[0] != shape[1]:
                raise ValueError(f"`last_layer_init='identity'` needs a square layer; got {shape}.")
            return jnp.eye(shape[0], dtype=dtype)

        return init
    raise ValueError(f"`last_layer_init` must be one of {list(LAST_LAYER_INITS)}; got {kind!r}.")


class MLP(nn.Module):
    """A fully connected network ``x -> hidden... -> out``.

    Attributes:
      features: sizes of every layer, the last one being the output size.
      activation: nonlinearity between layers (none after the last).
      layer_norm: apply LayerNorm before each hidden activation.
      last_layer_init: ``"default"``, ``"zeros"`` or ``"identity"`` for the output kernel.
    """

    features: Sequence[int]
    activation: Activation = nn.relu
    layer_norm: bool = False
    last_layer_init: str = "default"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``x`` of shape ``(..., in)`` to ``(..., features[-1])``."""
        *hidden, out = self.features
        for width in hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
        return nn.Dense(out, kernel_init=last_layer_kernel_init(self.last_layer_init))(x)


class ResidualMLP(nn.Module):
    """A residual network: input projection, ``num_blocks`` pre-norm residual blocks, output.

    Each block is ``h + Dense(act(Dense(act(LN(h)))))``.

    Attributes:
      width: hidden width.
      num_blocks: number of residual blocks.
      out_features: output size.
      activation: nonlinearity.
      layer_norm: use LayerNorm inside blocks.
      last_layer_init: initializer kind of the output kernel (see ``MLP``).
    """

    width: int
    num_blocks: int
    out_features: int
    activation: Activation = nn.relu
    layer_norm: bool = True
    last_layer_init: str = "default"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``x`` of shape ``(..., in)`` to ``(..., out_features)``."""
        h = nn.Dense(self.width)(x)
        for _ in range(self.num_blocks):
            r = nn.LayerNorm()(h) if self.layer_norm else h
            r = nn.Dense(self.width)(self.activation(r))
            r = nn.Dense(self.width)(self.activation(r))
            h = h + r
        h = self.activation(h)
        return nn.Dense(
            self.out_features, kernel_init=last_layer_kernel_init(self.last_layer_init)
        )(h)
