"""Conditional densities ``q(x_d | z)`` of the coordinates a funnel drops.

A funnel (arXiv:2112.08069) keeps ``z`` and drops ``x_d``; its exact likelihood needs a
normalised conditional density of the dropped part, and its inverse samples from it. Two
options, as in the paper's code: a Gaussian whose mean and log-scale are a dense network
of ``z`` (``ConditionalGaussianDecoder``), and a small conditional spline flow.

Every decoder has ``log_prob(x_d, z) -> (n,)`` and ``sample(z, key, mean) -> (n, dim)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_in
from jaxgen._checks import check_positive
from jaxgen.flows.autoregressive import MaskedAutoregressiveLayer
from jaxgen.flows.spline import RationalQuadraticSpline
from jaxgen.flows.transformers import SplineTransformer
from jaxgen.nn import MLP

DECODERS = ("gaussian", "flow")
_LOG_2PI = math.log(2.0 * math.pi)


def _gaussian_log_prob(x, mean, log_scale):
    """Sum over the last axis of ``log N(x; mean, exp(log_scale)^2)``."""
    u = (x - mean) * jnp.exp(-log_scale)
    return jnp.sum(-0.5 * u * u - log_scale - 0.5 * _LOG_2PI, axis=-1)


class GaussianDecoder(nn.Module):
    """``q(x_d | z) = N(mu(z), diag sigma(z)^2)`` with ``(mu, log sigma)`` from an MLP of ``z``.

    The output layer is zero-initialised, so the decoder starts as a standard normal. The
    log-scale is soft-clamped to ``(-max_log_scale, max_log_scale)`` (the paper's code
    clips the log-density instead; a clamp keeps gradients).

    Attributes:
      dim: number of dropped coordinates.
      hidden: hidden sizes of the MLP (empty: ``(mu, log sigma)`` affine in ``z``).
      max_log_scale: bound of ``|log sigma|``.
    """

    dim: int
    hidden: Sequence[int] = (128, 128, 128)
    max_log_scale: float = 7.0

    def setup(self):
        """Builds the mean/scale network."""
        check_positive("dim", self.dim)
        self.net = MLP(tuple(self.hidden) + (2 * self.dim,), last_layer_init="zeros")

    def params_of(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log-scale, each ``(n, dim)``, for ``z`` ``(n, d_z)``."""
        out = self.net(z)
        m = self.max_log_scale
        return out[..., : self.dim], m * jnp.tanh(out[..., self.dim :] / m)

    def log_prob(self, x_d: jax.Array, z: jax.Array) -> jax.Array:
        """``log q(x_d | z)`` of shape ``(n,)``."""
        mean, log_scale = self.params_of(z)
        return _gaussian_log_prob(x_d, mean, log_scale)

    def sample(self, z: jax.Array, key: jax.Array | None, mean: bool = False) -> jax.Array:
        """Draws ``x_d ~ q(. | z)`` (or returns the mean), shape ``(n, dim)``."""
        mu, log_scale = self.params_of(z)
        if mean:
            return mu
        return mu + jnp.exp(log_scale) * jax.random.normal(key, mu.shape, mu.dtype)

    def __call__(self, x_d: jax.Array, z: jax.Array) -> jax.Array:
        """Same as ``log_prob`` (used to initialise parameters)."""
        return self.log_prob(x_d, z)


class _ConditionalSpline(nn.Module):
    """Elementwise spline of ``x`` whose parameters are an MLP of the context only."""

    dim: int
    transformer: SplineTransformer
    hidden: Sequence[int]

    def setup(self):
        self.net = MLP(tuple(self.hidden) + (self.dim * self.transformer.num_params,),
                       last_layer_init="zeros")

    def _bijector(self, context):
        out = self.net(context)
        out = out.reshape(out.shape[:-1] + (self.dim, self.transformer.num_params))
        return RationalQuadraticSpline(out, -self.transformer.tail_bound,
                                       self.transformer.tail_bound)

    def inverse(self, x, context):
        z, ld = self._bijector(context).forward_and_log_det(x)
        return z, jnp.sum(ld, axis=-1)

    def forward(self, z, context):
        x, ld = self._bijector(context).inverse_and_log_det(z)
        return x, jnp.sum(ld, axis=-1)

    def __call__(self, x, context):
        return self.inverse(x, context)


class FlowDecoder(nn.Module):
    """``q(x_d | z)``: a conditional RQ-spline flow on the dropped part with a normal base.

    For one dropped coordinate each layer is a spline of ``x_d`` whose knots are an MLP of
    ``z`` (the 1-D conditional flow of the paper's ``SurNSF``); for more, masked
    autoregressive spline layers take ``z`` as context, with the order reversed between
    layers. All layers start at the identity.

    Attributes:
      dim: number of dropped coordinates.
      num_layers: flow layers.
      hidden: conditioner hidden sizes.
      num_bins: spline bins.
      tail_bound: spline interval half-width (identity outside).
    """

    dim: int
    num_layers: int = 2
    hidden: Sequence[int] = (64, 64)
    num_bins: int = 8
    tail_bound: float = 4.0

    def setup(self):
        """Builds the layers."""
        check_positive("dim", self.dim)
        check_positive("num_layers", self.num_layers)
        trans = SplineTransformer(self.num_bins, self.tail_bound)
        if self.dim == 1:
            self.layers = [_ConditionalSpline(1, trans, tuple(self.hidden))
                           for _ in range(self.num_layers)]
        else:
            self.layers = [MaskedAutoregressiveLayer(self.dim, trans, tuple(self.hidden))
                           for _ in range(self.num_layers)]

    def _to_base(self, x_d, z):
        total = jnp.zeros(x_d.shape[:-1], x_d.dtype)
        for i, layer in enumerate(self.layers):
            x_d, ld = layer.inverse(x_d, z)
            total = total + ld
            if i < self.num_layers - 1:
                x_d = x_d[..., ::-1]
        return x_d, total

    def log_prob(self, x_d: jax.Array, z: jax.Array) -> jax.Array:
        """``log q(x_d | z)`` of shape ``(n,)``."""
        u, ld = self._to_base(x_d, z)
        return _gaussian_log_prob(u, 0.0, 0.0) + ld

    def sample(self, z: jax.Array, key: jax.Array | None, mean: bool = False) -> jax.Array:
        """Draws ``x_d ~ q(. | z)``, shape ``(n, dim)``; ``mean=True`` maps the base mode 0."""
        shape = z.shape[:-1] + (self.dim,)
        u = jnp.zeros(shape, z.dtype) if mean else jax.random.normal(key, shape, z.dtype)
        for i in reversed(range(self.num_layers)):
            if i < self.num_layers - 1:
                u = u[..., ::-1]
            u, _ = self.layers[i].forward(u, z)
        return u

    def __call__(self, x_d: jax.Array, z: jax.Array) -> jax.Array:
        """Same as ``log_prob`` (used to initialise parameters)."""
        return self.log_prob(x_d, z)


def make_decoder(
    kind: str,
    dim: int,
    *,
    hidden: Sequence[int] = (128, 128, 128),
    num_layers: int = 2,
    num_bins: int = 8,
    tail_bound: float = 4.0,
) -> GaussianDecoder | FlowDecoder:
    """A decoder by name: ``"gaussian"`` or ``"flow"`` (the other arguments as above).

    Example:
      >>> from jaxgen.flows.surjective import make_decoder
      >>> type(make_decoder("flow", 2, hidden=(8,), num_layers=1)).__name__
      'FlowDecoder'
    """
    check_in("decoder", kind, DECODERS)
    if kind == "gaussian":
        return GaussianDecoder(dim, tuple(hidden))
    return FlowDecoder(dim, num_layers, tuple(hidden), num_bins, tail_bound)
