"""Elementwise transformers applied by coupling and autoregressive layers.

A transformer says how many unconstrained parameters each transformed dimension needs, in
which groups (``param_groups``: a conditioner may produce each group with its own output
head), and builds the elementwise ``distrax.Bijector`` from them, given either as one
array ``(..., num_params)`` or as the tuple of the groups. Zero parameters give the identity,
so a conditioner whose last layer is zero-initialised starts the flow at the identity.
"""

from __future__ import annotations

import dataclasses

import distrax
import jax
import jax.numpy as jnp

from jaxgen._checks import check_positive
from jaxgen.flows.spline import RationalQuadraticSpline
from jaxgen.flows.spline import num_spline_params
from jaxgen.flows.spline import spline_param_groups

Params = jax.Array | tuple[jax.Array, ...]


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

    @property
    def param_groups(self) -> tuple[int, ...]:
        """Group sizes: ``K`` bin widths, ``K`` bin heights, ``K - 1`` knot slopes."""
        return spline_param_groups(self.num_bins)

    def bijector(self, params: Params) -> distrax.Bijector:
        """The elementwise spline for ``params`` ``(..., 3K - 1)`` or its three groups."""
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

    @property
    def param_groups(self) -> tuple[int, ...]:
        """Group sizes: shift, log-scale."""
        return (1, 1)

    def bijector(self, params: Params) -> distrax.Bijector:
        """The elementwise affine map for ``params`` ``(..., 2)`` or its two groups."""
        if isinstance(params, tuple | list):
            shift, raw_scale = params[0][..., 0], params[1][..., 0]
        else:
            shift, raw_scale = params[..., 0], params[..., 1]
        m = self.max_log_scale
        return distrax.ScalarAffine(shift=shift, log_scale=m * jnp.tanh(raw_scale / m))


Transformer = SplineTransformer | AffineTransformer


def make_transformer(kind: str, *, num_bins: int = 8, tail_bound: float = 5.0) -> Transformer:
    """``"rqs"`` (spline) or ``"affine"``."""
    if kind == "rqs":
        return SplineTransformer(num_bins=num_bins, tail_bound=tail_bound)
    if kind == "affine":
        return AffineTransformer()
    raise ValueError(f"`transformer` must be 'rqs' or 'affine'; got {kind!r}.")
