r"""Flowification: ordinary layers as (surjective) flows with tracked likelihoods.

Máté, Klein, Golling, Fleuret, "Flowification: Everything is a Normalizing Flow",
NeurIPS 2022, arXiv:2205.15209. A linear layer ``D1 -> D2`` is parametrised as

.. math::
  W = U_2 \, \mathrm{diag}(e^{s}) \, [0 \mid I] \, U_1, \qquad U = \exp(A - A^\top),

with orthogonal ``U`` (log-det 0). For ``D2 < D1`` the first ``D1 - D2`` rotated
coordinates ``x_1`` are dropped and modelled by ``N(x_1; mu(z), diag sigma(z)^2)``, an
inference surjection with an exact likelihood contribution ``sum s + log N(...)``; for
``D2 > D1`` the rotated input is padded with ``U(-1/2, 1/2)`` noise (log-density 0), a
generative surjection whose objective is a lower bound. Invertible activations (a
learned elementwise RQ spline, leaky ReLU) and a convolution with kernel = stride (a
flowified linear kernel shared over non-overlapping patches) complete a flowified
network; discrete data are dequantised with uniform noise and scored in bits/dim.

Every layer follows the surjective-layer protocol of ``SurjectiveFlow`` (``in_dim``,
``out_dim``, ``exact``, ``inverse(x, key) -> (z, contribution)`` from data to latent,
i.e. the layer's usual feed-forward direction, and ``forward(z, key, mean) -> x``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_in
from jaxgen._checks import check_positive
from jaxgen.flows.flow import Params
from jaxgen.flows.spline import num_spline_params
from jaxgen.flows.spline import spline_forward
from jaxgen.flows.spline import spline_inverse
from jaxgen.flows.surjective.decoders import GaussianDecoder
from jaxgen.flows.surjective.flow import SurjectiveFlow

ACTIVATIONS = ("spline", "leaky_relu")


def paper_decoder_hidden(in_features: int, out_features: int) -> tuple[int, ...]:
    """Hidden sizes of the dropped-coordinate network in the flowification code.

    Width ``N = max(3 max(2 (D1 - D2), D1), 64)``, with 6, 4, 2 or 0 hidden layers for
    ``N <= 50``, ``<= 100``, ``<= 200`` or larger.
    """
    n = max(3 * max(2 * (in_features - out_features), in_features), 64)
    depth = 6 if n <= 50 else 4 if n <= 100 else 2 if n <= 200 else 0
    return (n,) * depth


def _rotation_init(key, shape, dtype=jnp.float32):
    # Entries N(0, 1/D): exp(A - A^T) is then a generic rotation, not near the identity,
    # so a dimension-reducing layer does not start by dropping the first coordinates.
    return jax.random.normal(key, shape, dtype) / math.sqrt(shape[0])


_TAYLOR_ORDER = 10
_MAX_SQUARINGS = 24


def expm(m: jax.Array) -> jax.Array:
    """Matrix exponential by scaling and squaring with a Taylor polynomial, ``(D, D)``.

    ``m`` is scaled by ``2^-k`` to norm <= 1/2, where a degree-10 Taylor polynomial is
    accurate to ~1e-14 relative, then squared ``k`` times (``k`` chosen at run time,
    at most 24, inside a ``fori_loop`` with ``cond``, so only the needed squarings run).
    Equal to ``jax.scipy.linalg.expm`` to rounding, but several times cheaper to
    compile with its gradient, which matters for networks with many rotations.
    """
    norm = jnp.max(jnp.sum(jnp.abs(m), axis=-1))
    k = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-30))) + 1, 0, _MAX_SQUARINGS)
    x = m * jnp.exp2(-k)
    eye = jnp.eye(m.shape[-1], dtype=m.dtype)
    r = eye
    for j in range(_TAYLOR_ORDER, 0, -1):
        r = eye + (x @ r) / j
    return jax.lax.fori_loop(
        0, _MAX_SQUARINGS, lambda i, r: jax.lax.cond(i < k, lambda q: q @ q, lambda q: q, r), r)


def _rotation(a: jax.Array) -> jax.Array:
    return expm(a - a.T)


class _SameDim:
    """Mixin of the dimension-preserving layers: ``in_dim == out_dim == dim``."""

    @property
    def in_dim(self) -> int:
        """Event dimension."""
        return self.dim

    @property
    def out_dim(self) -> int:
        """Event dimension."""
        return self.dim


class FlowifiedLinear(nn.Module):
    """A linear layer ``in_features -> out_features`` as a flow (rotation, scale, slice).

    Attributes:
      in_features: ``D1``.
      out_features: ``D2``.
      decoder_hidden: hidden sizes of the network giving ``(mu, log sigma)`` of the dropped
        coordinates (``D2 < D1``); ``None``: the paper's rule (``paper_decoder_hidden``).
    """

    in_features: int
    out_features: int
    decoder_hidden: Sequence[int] | None = None

    @property
    def in_dim(self) -> int:
        """``D1``."""
        return self.in_features

    @property
    def out_dim(self) -> int:
        """``D2``."""
        return self.out_features

    @property
    def exact(self) -> bool:
        """Exact unless the layer widens (noise padding gives a bound)."""
        return self.out_features <= self.in_features

    def setup(self):
        """Declares rotations, log-scales, bias and the decoder."""
        check_positive("in_features", self.in_features)
        check_positive("out_features", self.out_features)
        d1, d2 = self.in_features, self.out_features
        self.a1 = self.param("rotation_in", _rotation_init, (d1, d1))
        self.a2 = self.param("rotation_out", _rotation_init, (d2, d2))
        self.log_scale = self.param("log_scale", nn.initializers.zeros_init(), (d2,))
        self.bias = self.param("bias", nn.initializers.zeros_init(), (d2,))
        if d2 < d1:
            hidden = (paper_decoder_hidden(d1, d2) if self.decoder_hidden is None
                      else tuple(self.decoder_hidden))
            self.decoder = GaussianDecoder(d1 - d2, hidden)

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Feed-forward ``(n, D1) -> (n, D2)``; returns ``(z, log-likelihood contribution)``."""
        d1, d2 = self.in_features, self.out_features
        h = x @ _rotation(self.a1).T
        contribution = jnp.broadcast_to(jnp.sum(self.log_scale), x.shape[:-1])
        if d2 < d1:
            x1, h = h[..., : d1 - d2], h[..., d1 - d2 :]
        elif d2 > d1:
            if key is None:
                raise ValueError("`key` is needed: a widening flowified layer pads with noise.")
            noise = jax.random.uniform(key, x.shape[:-1] + (d2 - d1,), x.dtype) - 0.5
            h = jnp.concatenate([h, noise], axis=-1)
        z = (h * jnp.exp(self.log_scale)) @ _rotation(self.a2).T + self.bias
        if d2 < d1:
            contribution = contribution + self.decoder.log_prob(x1, z)
        return z, contribution

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """Inverse of the layer ``(n, D2) -> (n, D1)``: samples (or means) dropped coordinates."""
        d1, d2 = self.in_features, self.out_features
        h = ((z - self.bias) @ _rotation(self.a2)) * jnp.exp(-self.log_scale)
        if d2 < d1:
            h = jnp.concatenate([self.decoder.sample(z, key, mean), h], axis=-1)
        elif d2 > d1:
            h = h[..., :d1]
        return h @ _rotation(self.a1)

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, jax.random.key(0) if key is None else key)


class FlowifiedConv2d(nn.Module):
    """A convolution with kernel = stride as a flow: one ``FlowifiedLinear`` per patch.

    Non-overlapping ``k x k`` patches of ``(H, W, C_in)`` images are flattened to
    ``k*k*C_in`` values and mapped by a shared flowified linear kernel to ``C_out``
    channels (the flowification paper's ``conv2`` architecture; the tile step of an
    overlapping convolution is then a reshape). Events are flattened images, row-major.

    Attributes:
      height: image height (a multiple of ``kernel_size``).
      width: image width (a multiple of ``kernel_size``).
      in_channels: ``C_in``.
      out_channels: ``C_out``.
      kernel_size: ``k`` (= stride).
      decoder_hidden: as in ``FlowifiedLinear``.
    """

    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel_size: int = 2
    decoder_hidden: Sequence[int] | None = None

    @property
    def _patch(self) -> int:
        return self.kernel_size * self.kernel_size * self.in_channels

    @property
    def _grid(self) -> tuple[int, int]:
        return self.height // self.kernel_size, self.width // self.kernel_size

    @property
    def in_dim(self) -> int:
        """``H * W * C_in``."""
        return self.height * self.width * self.in_channels

    @property
    def out_dim(self) -> int:
        """``H/k * W/k * C_out``."""
        h, w = self._grid
        return h * w * self.out_channels

    @property
    def exact(self) -> bool:
        """Exact unless ``C_out > k*k*C_in``."""
        return self.out_channels <= self._patch

    def setup(self):
        """Validates the geometry and builds the kernel."""
        check_positive("kernel_size", self.kernel_size)
        for name in ("height", "width"):
            size = getattr(self, name)
            if size < self.kernel_size or size % self.kernel_size:
                raise ValueError(f"`{name}` must be a positive multiple of kernel_size="
                                 f"{self.kernel_size}; got {size}.")
        self.kernel = FlowifiedLinear(self._patch, self.out_channels, self.decoder_hidden)

    def _to_patches(self, x):
        k, c = self.kernel_size, self.in_channels
        h, w = self._grid
        p = x.reshape(x.shape[:-1] + (h, k, w, k, c))
        return jnp.moveaxis(p, -4, -3).reshape(x.shape[:-1] + (h, w, k * k * c))

    def _from_patches(self, p):
        k, c = self.kernel_size, self.in_channels
        h, w = self._grid
        p = jnp.moveaxis(p.reshape(p.shape[:-3] + (h, w, k, k, c)), -3, -4)
        return p.reshape(p.shape[:-5] + (self.in_dim,))

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Images ``(n, H*W*C_in)`` to ``(n, H/k*W/k*C_out)``; returns ``(z, contribution)``."""
        z, c = self.kernel.inverse(self._to_patches(x), key)
        return z.reshape(x.shape[:-1] + (self.out_dim,)), jnp.sum(c, axis=(-2, -1))

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """``(n, H/k*W/k*C_out)`` to images ``(n, H*W*C_in)``."""
        h, w = self._grid
        z = z.reshape(z.shape[:-1] + (h, w, self.out_channels))
        return self._from_patches(self.kernel.forward(z, key, mean))

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, jax.random.key(0) if key is None else key)


class ElementwiseSpline(_SameDim, nn.Module):
    """A learned monotone RQ spline per coordinate (identity outside ``[-B, B]``).

    The flowification paper's ``RqSpline`` activation: 10 bins, ``tail_bound`` 2.

    Attributes:
      dim: event dimension.
      num_bins: spline bins.
      tail_bound: ``B``.
    """

    dim: int
    num_bins: int = 10
    tail_bound: float = 2.0
    exact: ClassVar[bool] = True

    def setup(self):
        """Declares the spline parameters (zeros: the identity)."""
        check_positive("dim", self.dim)
        check_positive("num_bins", self.num_bins)
        check_positive("tail_bound", self.tail_bound)
        self.knots = self.param("knots", nn.initializers.zeros_init(),
                                (self.dim, num_spline_params(self.num_bins)))

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """``(y, log|dy/dx|)``."""
        del key
        y, ld = spline_forward(x, self.knots, -self.tail_bound, self.tail_bound)
        return y, jnp.sum(ld, axis=-1)

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """The inverse spline."""
        del key, mean
        return spline_inverse(z, self.knots, -self.tail_bound, self.tail_bound)[0]

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse``."""
        return self.inverse(x, key)


class LeakyReLU(_SameDim, nn.Module):
    """``y = x`` for ``x >= 0``, ``alpha x`` otherwise; ``log|det| = #(x < 0) log alpha``.

    Attributes:
      dim: event dimension.
      alpha: negative slope (> 0; the paper uses 0.5).
    """

    dim: int
    alpha: float = 0.5
    exact: ClassVar[bool] = True

    def setup(self):
        """Validates ``alpha``."""
        check_positive("dim", self.dim)
        check_positive("alpha", self.alpha)

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """``(leaky_relu(x), log|det|)``."""
        del key
        neg = x < 0
        return (jnp.where(neg, self.alpha * x, x),
                jnp.sum(neg, axis=-1).astype(x.dtype) * math.log(self.alpha))

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """The inverse activation."""
        del key, mean
        return jnp.where(z < 0, z / self.alpha, z)

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse``."""
        return self.inverse(x, key)


class Logit(_SameDim, nn.Module):
    """``y = logit(a + (1 - 2a) x)`` for data in ``[0, 1]`` (RealNVP preprocessing).

    References: Dinh et al., arXiv:1605.08803.

    Attributes:
      dim: event dimension.
      alpha: margin ``a`` in ``(0, 1/2)`` keeping the logit finite at 0 and 1.
    """

    dim: int
    alpha: float = 0.05
    exact: ClassVar[bool] = True

    def setup(self):
        """Validates ``alpha``."""
        check_positive("dim", self.dim)
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"`alpha` must be in (0, 0.5); got {self.alpha!r}.")

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """``(logit(a + (1 - 2a) x), log|det|)``."""
        del key
        a = self.alpha
        u = a + (1.0 - 2.0 * a) * x
        y = jnp.log(u) - jnp.log1p(-u)
        ld = math.log(1.0 - 2.0 * a) - jnp.log(u) - jnp.log1p(-u)
        return y, jnp.sum(ld, axis=-1)

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """``(sigmoid(z) - a) / (1 - 2a)``."""
        del key, mean
        return (jax.nn.sigmoid(z) - self.alpha) / (1.0 - 2.0 * self.alpha)

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse``."""
        return self.inverse(x, key)


class UniformDequantization(_SameDim, nn.Module):
    r"""Integer data ``x`` in ``{0, ..., L-1}`` to ``y = low + (high - low)(x + u)/L``.

    With ``u ~ U(0, 1)^D`` and cells of volume ``((high - low)/L)^D``, the probability of
    the integer point obeys ``log P(x) >= E_u[log p(y)] + D log((high - low)/L)``
    (Theis et al., arXiv:1511.01844), so this layer's contribution is
    ``D log((high - low)/L)`` and the flow's ``log_prob`` is a bound (``exact=False``).
    Towards the data it rounds down.

    Attributes:
      dim: event dimension.
      num_levels: ``L`` (256 for 8-bit images, 17 for scikit-learn's digits).
      low: lower end of the continuous range.
      high: upper end of the continuous range.
    """

    dim: int
    num_levels: int = 256
    low: float = 0.0
    high: float = 1.0
    exact: ClassVar[bool] = False

    def setup(self):
        """Validates the levels and range."""
        check_positive("dim", self.dim)
        if self.num_levels < 2:
            raise ValueError(f"`num_levels` must be >= 2; got {self.num_levels}.")
        if not self.low < self.high:
            raise ValueError(f"`low` must be below `high`; got {self.low} and {self.high}.")

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Dequantises ``x`` ``(n, dim)`` (integer values); returns ``(y, contribution)``."""
        if key is None:
            raise ValueError("`key` is needed: dequantisation draws uniform noise.")
        width = (self.high - self.low) / self.num_levels
        y = self.low + width * (x + jax.random.uniform(key, x.shape, x.dtype))
        return y, jnp.full(x.shape[:-1], self.dim * math.log(width), x.dtype)

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """Quantises: ``floor((z - low) L / (high - low))`` clipped to ``[0, L-1]``."""
        del key, mean
        level = jnp.floor((z - self.low) * self.num_levels / (self.high - self.low))
        return jnp.clip(level, 0, self.num_levels - 1)

    def __call__(self, x: jax.Array, key: jax.Array | None = None):
        """Same as ``inverse`` (used to initialise parameters)."""
        return self.inverse(x, jax.random.key(0) if key is None else key)


def bits_per_dim(log_likelihood: jax.typing.ArrayLike, dim: int) -> jax.Array:
    """``-log L / (D ln 2)``: negative log-likelihood in bits per dimension."""
    check_positive("dim", dim)
    return -jnp.asarray(log_likelihood) / (dim * math.log(2.0))


def flowify_mlp(
    key: jax.Array,
    *,
    sizes: Sequence[int],
    activation: str = "spline",
    num_bins: int = 10,
    tail_bound: float = 2.0,
    alpha: float = 0.5,
    num_levels: int | None = None,
    decoder_hidden: Sequence[int] | None = None,
) -> tuple[SurjectiveFlow, Params]:
    """Flowifies an MLP given only its layer sizes ``D0 -> D1 -> ... -> Dk``.

    References: Máté, Klein, Golling, Fleuret, arXiv:2205.15209 (MNIST ``mlp``:
    784 -> 512 -> 256 -> 128 -> 64 -> 32 -> 8 with RQ-spline activations).

    Args:
      key: PRNG key for the parameters.
      sizes: layer sizes, input first (at least two).
      activation: ``"spline"`` (RQ spline, ``num_bins``, ``tail_bound``) or
        ``"leaky_relu"`` (slope ``alpha``) between the linear layers.
      num_bins: spline bins.
      tail_bound: spline interval half-width.
      alpha: leaky-ReLU slope.
      num_levels: if given, the input is integer data with this many levels, dequantised
        to ``[0, 1]`` first (the log-likelihood is then of the discrete data, a bound).
      decoder_hidden: decoder hidden sizes of every linear layer (``None``: the paper's
        rule).

    Returns:
      ``(flow, params)``; the latent dimension is ``sizes[-1]``.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"`sizes` must list at least two positive sizes; got {sizes}.")
    check_in("activation", activation, ACTIVATIONS)
    steps: list[nn.Module] = []
    if num_levels is not None:
        steps.append(UniformDequantization(sizes[0], num_levels))
    for i, (d1, d2) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        steps.append(FlowifiedLinear(d1, d2, decoder_hidden))
        if i < len(sizes) - 2:
            steps.append(ElementwiseSpline(d2, num_bins, tail_bound) if activation == "spline"
                         else LeakyReLU(d2, alpha))
    flow = SurjectiveFlow(sizes[0], steps)
    return flow, flow.init(key)
