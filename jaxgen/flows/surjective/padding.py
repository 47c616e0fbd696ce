r"""Noise padding: a dimension-increasing generative surjection (a bound, not exact).

Nielsen et al., "SurVAE Flows", arXiv:2007.02731; used by flowification
(arXiv:2205.15209) for layers that widen, ``D2 > D1``. In the data-to-latent direction
``x`` is padded with noise ``u ~ q``; the model's marginal ``p(x) = \int p(x, u) du`` is
intractable, and

.. math::
  \log p(x) \ge \mathbb{E}_{u \sim q}[\log p(x, u) - \log q(u)]

(Jensen). A single draw of ``u`` gives an unbiased estimate of this lower bound; this
layer's log-contribution is ``-log q(u)``. Towards the data it drops the padding.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_in
from jaxgen._checks import check_positive

NOISES = ("gaussian", "uniform")


class NoisePadding(nn.Module):
    """Appends ``pad`` noise coordinates: ``N(0, scale^2)`` or ``U(-scale/2, scale/2)``.

    Attributes:
      dim: input dimension.
      pad: number of noise coordinates appended (output ``dim + pad``).
      noise: ``"gaussian"`` or ``"uniform"``.
      scale: standard deviation (Gaussian) or width (uniform) of the noise.
    """

    dim: int
    pad: int
    noise: str = "gaussian"
    scale: float = 1.0
    exact: ClassVar[bool] = False

    @property
    def in_dim(self) -> int:
        """Input dimension."""
        return self.dim

    @property
    def out_dim(self) -> int:
        """``dim + pad``."""
        return self.dim + self.pad

    def setup(self):
        """Validates the arguments."""
        check_positive("dim", self.dim)
        check_positive("pad", self.pad)
        check_in("noise", self.noise, NOISES)
        check_positive("scale", self.scale)

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Pads ``x`` ``(n, dim)`` to ``(n, dim + pad)``; returns ``(z, -log q(u))``."""
        if key is None:
            raise ValueError("`key` is needed: noise padding draws random noise.")
        shape = x.shape[:-1] + (self.pad,)
        if self.noise == "gaussian":
            e = jax.random.normal(key, shape, x.dtype)
            neg_log_q = jnp.sum(0.5 * e * e, axis=-1) + self.pad * (
                math.log(self.scale) + 0.5 * math.log(2.0 * math.pi))
            u = self.scale * e
        else:
            u = self.scale * (jax.random.uniform(key, shape, x.dtype) - 0.5)
            neg_log_q = jnp.full(x.shape[:-1], self.pad * math.log(self.scale), x.dtype)
        return jnp.concatenate([x, u], axis=-1), neg_log_q

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """Drops the padding: ``(n, dim + pad) -> (n, dim)``."""
        del key, mean
        return z[..., : self.dim]

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, jax.random.key(0) if key is None else key)
