"""Multilayer perceptrons: plain and residual."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


SEPARATE_PRODUCT_MIN_WIDTH = 16


class GroupedDense(nn.Module):
    """A dense layer whose output comes as a tuple of column blocks.

    The parameters are ``nn.Dense``'s (``kernel (in, features)``, ``bias``) and the values
    those of slicing its output. How they are computed is a CPU performance choice: blocks
    all at least ``SEPARATE_PRODUCT_MIN_WIDTH`` wide get a matrix product each, so their
    consumers' gradients stay separate arrays (slicing one product's output makes XLA
    assemble its gradient in a concatenation along the minor axis, fused with the
    consumers' backward pass, which vectorises poorly: 1.3x slower training of the 8D
    benchmark flow); narrower blocks share one product (a product's weight gradient
    re-reads the whole input, which dominates for a few columns: 2D flows train 1.15x
    faster that way; measured from 2 to 16 dimensions).

    Attributes:
      features: total output size, ``sum(groups)``.
      groups: column block sizes.
      kernel_init: kernel initializer.
    """

    features: int
    groups: Sequence[int]
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        """Maps ``x`` of shape ``(..., in)`` to ``(..., g)`` for each block size ``g``."""
        if sum(self.groups) != self.features or min(self.groups) < 1:
            raise ValueError(
                f"`groups` must be positive sizes adding up to {self.features}; got "
                f"{tuple(self.groups)}."
            )
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        bounds = np.cumsum((0, *self.groups))
        blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
        if min(self.groups) >= SEPARATE_PRODUCT_MIN_WIDTH:
            return tuple(x @ kernel[:, a:b] + bias[a:b] for a, b in blocks)
        out = x @ kernel + bias
        return tuple(out[..., a:b] for a, b in blocks)


class MLP(nn.Module):
    """A fully connected network ``x -> hidden... -> out``.

    Attributes:
      features: sizes of every layer, the last one being the output size.
      activation: nonlinearity between layers (none after the last).
      layer_norm: apply LayerNorm before each hidden activation.
      last_layer_init: ``"default"``, ``"zeros"`` or ``"identity"`` for the output kernel.
      output_groups: if given, the output is the tuple of its column blocks of these sizes
        (``GroupedDense``: the same parameters and values as without).
    """

    features: Sequence[int]
    activation: Activation = nn.relu
    layer_norm: bool = False
    last_layer_init: str = "default"
    output_groups: Sequence[int] | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
        """Maps ``x`` of shape ``(..., in)`` to ``(..., features[-1])`` (or its blocks)."""
        *hidden, out = self.features
        for width in hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
        init = last_layer_kernel_init(self.last_layer_init)
        if self.output_groups is None:
            return nn.Dense(out, kernel_init=init)(x)
        # Named as ``nn.Dense`` would be: the parameter tree does not depend on the grouping.
        return GroupedDense(out, tuple(self.output_groups), init, name=f"Dense_{len(hidden)}")(x)


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
