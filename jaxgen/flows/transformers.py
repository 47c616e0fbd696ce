"""Elementwise transformers applied by coupling and autoregressive layers.

A transformer says how many unconstrained parameters each transformed dimension needs and
builds the elementwise ``distrax.Bijector`` from them. Zero parameters give the identity,
so a conditioner whose last layer is zero-initialised starts the flow at the identity.
"""

from __future__ import annotations

import dataclasses

import distrax
import jax
import jax.numpy as jnp

from jaxgen._checks import check_positive
from jaxgen.flows.spline import RationalQuadraticSpline, num_spline_params


@dataclasses.dataclass(frozen=True)
class SplineTransformer:
    """Rational-quadratic spline on ``[-tail_bound, tail_bound]``, identity outside.

    Attributes:
      num_bins: number of spline bins ``K`` (``3K - 1`` parameters per dimension).
      tail_bound: half-width ``B`` of the spline interval.
    """

    num_bins: int = 8
    tail_bound: float = 5.0

    def __post_init__(self):
        check_positive("num_bins", self.num_bins)
        check_positive("tail_bound", self.tail_bound)

    @property
    def num_params(self) -> int:
        """Parameters per transformed dimension."""
        return num_spline_params(self.num_bins)

    def bijector(self, params: jax.Array) -> distrax.Bijector:
        """The elementwise spline for ``params`` of shape ``(..., 3K - 1)``."""
        return RationalQuadraticSpline(params, -self.tail_bound, self.tail_bound)


@dataclasses.dataclass(frozen=True)
class AffineTransformer:
    """``y = x * exp(s) + t`` with ``s`` soft-clamped to ``(-max_log_scale, max_log_scale)``.

    Attributes:
      max_log_scale: bound of the log-scale, which keeps training stable (RealNVP).
    """

    max_log_scale: float = 3.0

    def __post_init__(self):
        check_positive("max_log_scale", self.max_log_scale)

    @property
    def num_params(self) -> int:
        """Parameters per transformed dimension (shift, log-scale)."""
        return 2

    def bijector(self, params: jax.Array) -> distrax.Bijector:
        """The elementwise affine map for ``params`` of shape ``(..., 2)``."""
        m = self.max_log_scale
        log_scale = m * jnp.tanh(params[..., 1] / m)
        return distrax.ScalarAffine(shift=params[..., 0], log_scale=log_scale)


Transformer = SplineTransformer | AffineTransformer


def make_transformer(kind: str, *, num_bins: int = 8, tail_bound: float = 5.0) -> Transformer:
    """``"rqs"`` (spline) or ``"affine"``."""
    if kind == "rqs":
        return SplineTransformer(num_bins=num_bins, tail_bound=tail_bound)
    if kind == "affine":
        return AffineTransformer()
    raise ValueError(f"`transformer` must be 'rqs' or 'affine'; got {kind!r}.")
