r"""Funnels: dimension-reducing inference surjections with exact likelihoods.

Klein, Raine, Pina-Otey, Voloshynovskiy, Golling, "Funnels: Exact maximum likelihood with
dimensionality reduction", arXiv:2112.08069. A funnel is a SurVAE inference surjection
(Nielsen et al., arXiv:2007.02731): a bijection ``b`` of ``x`` followed by a slice into a
dropped part ``y_d`` (the first ``drop`` coordinates) and a kept part ``z``,

.. math::
  (y_d, z) = b(x), \qquad
  \log p(x) = \log p_Z(z) + \log|\det \partial b / \partial x| + \log q(y_d \mid z),

exact because ``x -> (y_d, z)`` is a bijection and ``q`` is a normalised density. The
inverse samples ``y_d ~ q(. | z)`` (or takes its mean) and applies ``b^{-1}``. With a
coupling bijection that keeps ``y_d = x_d`` this is the paper's coupling funnel
``z = f(x_k; x_d)``; with a linear one it is the F-MLP layer ``z = LU x_k + V x_d + b``;
``FunnelConv2d`` is the funnel convolution for images.

All layers here follow the surjective-layer protocol of ``SurjectiveFlow``: ``in_dim``,
``out_dim``, ``exact``, ``inverse(x, key) -> (z, log_contribution)`` (data to latent) and
``forward(z, key, mean) -> x`` (latent to data).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_positive
from jaxgen.flows.coupling import CouplingLayer
from jaxgen.flows.linear import LULinearLayer
from jaxgen.flows.surjective.decoders import _gaussian_log_prob
from jaxgen.flows.surjective.decoders import make_decoder
from jaxgen.flows.transformers import make_transformer


class Funnel(nn.Module):
    """Bijection, then drop the first ``drop`` coordinates, modelled by ``decoder``.

    Attributes:
      dim: input dimension.
      drop: number of dropped coordinates (``0 < drop < dim``); the output has
        ``dim - drop``.
      decoder: ``GaussianDecoder`` or ``FlowDecoder`` of dimension ``drop``: the density
        ``q(y_d | z)``.
      bijection: a flow layer on ``dim`` (``inverse``/``forward`` returning
        ``(out, logdet)``) applied before the slice; ``None``: a plain slice funnel.
    """

    dim: int
    drop: int
    decoder: nn.Module
    bijection: nn.Module | None = None
    exact: ClassVar[bool] = True

    @property
    def in_dim(self) -> int:
        """Input dimension."""
        return self.dim

    @property
    def out_dim(self) -> int:
        """Output (kept) dimension."""
        return self.dim - self.drop

    def setup(self):
        """Validates the sizes."""
        if not 0 < self.drop < self.dim:
            raise ValueError(f"`drop` must be in (0, {self.dim}) for a funnel on dim "
                             f"{self.dim}; got {self.drop}.")
        if getattr(self.decoder, "dim", self.drop) != self.drop:
            raise ValueError(f"`decoder` must have dim {self.drop} (= drop); got "
                             f"{self.decoder.dim}.")

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Data ``(n, dim)`` to kept ``z`` ``(n, dim - drop)``; returns ``(z, contribution)``."""
        del key
        logdet = jnp.zeros(x.shape[:-1], x.dtype)
        if self.bijection is not None:
            x, logdet = self.bijection.inverse(x, None)
        y_d, z = x[..., : self.drop], x[..., self.drop :]
        return z, logdet + self.decoder.log_prob(y_d, z)

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """Kept ``z`` ``(n, dim - drop)`` to data ``(n, dim)``, sampling the dropped part."""
        y = jnp.concatenate([self.decoder.sample(z, key, mean), z], axis=-1)
        if self.bijection is not None:
            y, _ = self.bijection.forward(y, None)
        return y

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, key)


class LinearCoupling(nn.Module):
    """``(x_d, x_k) -> (x_d, L U x_k + V x_d + b)``: the bijection of the F-MLP funnel.

    Block-triangular, so ``log|det| = log|det LU|``; starts at the identity.

    Attributes:
      dim: event dimension.
      split: size of the unchanged (conditioning) first block ``x_d``.
    """

    dim: int
    split: int

    def setup(self):
        """Declares ``LU`` (on the second block) and ``V``."""
        if not 0 < self.split < self.dim:
            raise ValueError(f"`split` must be in (0, {self.dim}); got {self.split}.")
        self.lu = LULinearLayer(self.dim - self.split)
        self.mix = self.param("mix", nn.initializers.zeros_init(),
                              (self.split, self.dim - self.split))

    def inverse(self, x: jax.Array, context: jax.Array | None = None):
        """Data to latent: ``(y, log|det|)``."""
        del context
        x_d, x_k = x[..., : self.split], x[..., self.split :]
        y_k, logdet = self.lu.inverse(x_k)
        return jnp.concatenate([x_d, y_k + x_d @ self.mix], axis=-1), logdet

    def forward(self, y: jax.Array, context: jax.Array | None = None):
        """Latent to data."""
        del context
        y_d, y_k = y[..., : self.split], y[..., self.split :]
        x_k, logdet = self.lu.forward(y_k - y_d @ self.mix)
        return jnp.concatenate([y_d, x_k], axis=-1), logdet

    def __call__(self, x: jax.Array, context: jax.Array | None = None):
        """Same as ``inverse``."""
        return self.inverse(x, context)


def _decoder(kind, drop, hidden, num_layers, num_bins, tail_bound):
    return make_decoder(kind, drop, hidden=hidden, num_layers=num_layers, num_bins=num_bins,
                        tail_bound=tail_bound)


def _check_sizes(dim: int, drop: int) -> None:
    check_positive("dim", dim)
    if not 0 < drop < dim:
        raise ValueError(f"`drop` must be in (0, {dim}) for a funnel on dim {dim}; got {drop}.")


def slice_funnel(
    dim: int,
    drop: int,
    *,
    decoder: str = "gaussian",
    decoder_hidden: Sequence[int] = (128, 128, 128),
    decoder_layers: int = 2,
    num_bins: int = 8,
    tail_bound: float = 4.0,
) -> Funnel:
    """Drops the first ``drop`` of ``dim`` coordinates, modelled by a learned ``q(x_d | z)``.

    References: Klein et al., arXiv:2112.08069 (``SurNSF`` drops coordinate 0).

    Args:
      dim: input dimension.
      drop: coordinates dropped (``0 < drop < dim``).
      decoder: ``"gaussian"`` (``ConditionalGaussianDecoder``) or ``"flow"`` (conditional
        spline flow).
      decoder_hidden: hidden sizes of the decoder network.
      decoder_layers: flow layers of a ``"flow"`` decoder.
      num_bins: spline bins of a ``"flow"`` decoder.
      tail_bound: spline interval of a ``"flow"`` decoder.

    Returns:
      A ``Funnel`` from ``dim`` to ``dim - drop``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.flows.surjective import SurjectiveFlow, slice_funnel
      >>> flow = SurjectiveFlow(4, [slice_funnel(4, 2, decoder_hidden=(8,))])   # 4 -> 2 dimensions
      >>> params = flow.init(jax.random.key(0))
      >>> flow.log_prob(params, jnp.zeros((3, 4))).shape     # exact log-likelihood
      (3,)
    """
    _check_sizes(dim, drop)
    return Funnel(dim, drop, _decoder(decoder, drop, decoder_hidden, decoder_layers, num_bins,
                                      tail_bound))


def coupling_funnel(
    dim: int,
    drop: int,
    *,
    transformer: str = "rqs",
    num_bins: int = 8,
    tail_bound: float = 4.0,
    hidden: Sequence[int] = (64, 64),
    decoder: str = "gaussian",
    decoder_hidden: Sequence[int] = (128, 128, 128),
    decoder_layers: int = 2,
) -> Funnel:
    """Coupling funnel: ``z = f(x_k; x_d)`` for the kept part, then ``q(x_d | z)``.

    References: Klein et al., arXiv:2112.08069 (``BaseCouplingFunnel``: the coupling's
    identity features are the dropped ones).

    Args:
      dim: input dimension.
      drop: coordinates dropped (the first ``drop``; ``0 < drop < dim``).
      transformer: ``"rqs"`` or ``"affine"`` elementwise map of the kept part.
      num_bins: spline bins (coupling and a ``"flow"`` decoder).
      tail_bound: spline interval half-width.
      hidden: coupling conditioner hidden sizes.
      decoder: ``"gaussian"`` or ``"flow"``.
      decoder_hidden: decoder network hidden sizes.
      decoder_layers: flow layers of a ``"flow"`` decoder.

    Returns:
      A ``Funnel`` from ``dim`` to ``dim - drop``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.flows.surjective import SurjectiveFlow, coupling_funnel
      >>> layer = coupling_funnel(4, 2, hidden=(8,), decoder_hidden=(8,))   # 4 -> 2 dims
      >>> flow = SurjectiveFlow(4, [layer])
      >>> params = flow.init(jax.random.key(0))
      >>> flow.log_prob(params, jnp.zeros((3, 4))).shape     # exact log-likelihood
      (3,)
    """
    _check_sizes(dim, drop)
    trans = make_transformer(transformer, num_bins=num_bins, tail_bound=tail_bound)
    return Funnel(dim, drop,
                  _decoder(decoder, drop, decoder_hidden, decoder_layers, num_bins, tail_bound),
                  CouplingLayer(dim, trans, tuple(hidden), split=drop))


def linear_funnel(
    dim: int,
    drop: int,
    *,
    decoder: str = "gaussian",
    decoder_hidden: Sequence[int] = (128, 128, 128),
    decoder_layers: int = 2,
    num_bins: int = 8,
    tail_bound: float = 4.0,
) -> Funnel:
    """Linear (F-MLP) funnel: ``z = L U x_k + V x_d + b``, then ``q(x_d | z)``.

    References: Klein et al., arXiv:2112.08069 (``InferenceMLP``; put a fixed permutation
    before it to choose which coordinates are dropped).

    Args:
      dim: input dimension.
      drop: coordinates dropped (the first ``drop``; ``0 < drop < dim``).
      decoder: ``"gaussian"`` or ``"flow"``.
      decoder_hidden: decoder network hidden sizes (empty: a linear-Gaussian decoder).
      decoder_layers: flow layers of a ``"flow"`` decoder.
      num_bins: spline bins of a ``"flow"`` decoder.
      tail_bound: spline interval of a ``"flow"`` decoder.

    Returns:
      A ``Funnel`` from ``dim`` to ``dim - drop``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.flows.surjective import SurjectiveFlow, linear_funnel
      >>> flow = SurjectiveFlow(4, [linear_funnel(4, 2, decoder_hidden=(8,))])   # 4 -> 2 dimensions
      >>> params = flow.init(jax.random.key(0))
      >>> flow.log_prob(params, jnp.zeros((3, 4))).shape     # exact log-likelihood
      (3,)
    """
    _check_sizes(dim, drop)
    return Funnel(dim, drop,
                  _decoder(decoder, drop, decoder_hidden, decoder_layers, num_bins, tail_bound),
                  LinearCoupling(dim, drop))


class FunnelConv2d(nn.Module):
    r"""Funnel convolution (kernel = stride = 2): ``(H, W, C) -> (H/2, W/2, C)``, exact.

    References: Klein et al., arXiv:2112.08069 (``NByOneStandardConv``).

    Each 2x2 patch holds ``4C`` values: the retained pixel (the bottom-right one, the
    kernel's ``[..., -1, -1]`` block) ``r`` and ``3C`` dropped values ``d``. The output is
    ``z = J r + V d + b`` with ``J = L U`` (``C x C``), so ``x -> (z, d)`` is a bijection
    with ``log|det| = H' W' log|det J|``. The dropped values are Gaussian given the 3x3
    neighbourhood of ``z`` (a 3x3 convolution followed by 1x1 convolutions). Events are
    flattened images: ``(n, H*W*C)`` in, ``(n, H/2*W/2*C)`` out, row-major ``(H, W, C)``.

    Attributes:
      height: image height (even).
      width: image width (even).
      channels: channels ``C``.
      hidden: channels of the decoder's hidden convolutions.
      max_log_scale: bound of the decoder's ``|log sigma|``.
    """

    height: int
    width: int
    channels: int
    hidden: int = 32
    max_log_scale: float = 7.0
    exact: ClassVar[bool] = True

    @property
    def in_dim(self) -> int:
        """``H * W * C``."""
        return self.height * self.width * self.channels

    @property
    def out_dim(self) -> int:
        """``H/2 * W/2 * C``."""
        return self.height * self.width * self.channels // 4

    def setup(self):
        """Declares ``J`` (LU), ``V`` and the decoder network."""
        for name in ("height", "width"):
            size = getattr(self, name)
            if size < 2 or size % 2:
                raise ValueError(f"`{name}` must be even and >= 2 for a 2x2 funnel "
                                 f"convolution; got {size}.")
        check_positive("channels", self.channels)
        check_positive("hidden", self.hidden)
        c = self.channels
        self.lu = LULinearLayer(c)
        self.mix = self.param("mix", nn.initializers.zeros_init(), (3 * c, c))
        self.dec_in = nn.Conv(self.hidden, (3, 3), padding="SAME")
        self.dec_mid = nn.Conv(self.hidden, (1, 1))
        self.dec_out = nn.Conv(6 * c, (1, 1), kernel_init=nn.initializers.zeros_init())

    def _patches(self, x):
        h2, w2, c = self.height // 2, self.width // 2, self.channels
        p = x.reshape(x.shape[:-1] + (h2, 2, w2, 2, c))
        p = jnp.moveaxis(p, -4, -3).reshape(x.shape[:-1] + (h2, w2, 4, c))
        return p[..., 3, :], p[..., :3, :].reshape(x.shape[:-1] + (h2, w2, 3 * c))

    def _image(self, retained, dropped):
        h2, w2, c = self.height // 2, self.width // 2, self.channels
        batch = retained.shape[:-3]
        p = jnp.concatenate([dropped.reshape(batch + (h2, w2, 3, c)), retained[..., None, :]],
                            axis=-2)
        p = jnp.moveaxis(p.reshape(batch + (h2, w2, 2, 2, c)), -3, -4)
        return p.reshape(batch + (self.in_dim,))

    def _decode(self, z_img):
        h = nn.relu(self.dec_mid(nn.relu(self.dec_in(z_img))))
        out = self.dec_out(h)
        m = self.max_log_scale
        k = 3 * self.channels
        return out[..., :k], m * jnp.tanh(out[..., k:] / m)

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Image ``(n, H*W*C)`` to ``(n, H/2*W/2*C)``; returns ``(z, log p contribution)``."""
        del key
        retained, dropped = self._patches(x)
        z_img, logdet = self.lu.inverse(retained)
        z_img = z_img + dropped @ self.mix
        mean, log_scale = self._decode(z_img)
        lp = _gaussian_log_prob(dropped, mean, log_scale)
        total = jnp.sum(logdet + lp, axis=(-2, -1))
        return z_img.reshape(x.shape[:-1] + (self.out_dim,)), total

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """``(n, H/2*W/2*C)`` to images ``(n, H*W*C)``, sampling the dropped values."""
        z_img = z.reshape(z.shape[:-1] + (self.height // 2, self.width // 2, self.channels))
        mu, log_scale = self._decode(z_img)
        dropped = mu if mean else mu + jnp.exp(log_scale) * jax.random.normal(
            key, mu.shape, mu.dtype)
        retained, _ = self.lu.forward(z_img - dropped @ self.mix)
        return self._image(retained, dropped)

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, key)
