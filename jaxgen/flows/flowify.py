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
learned elementwise RQ spline, leaky ReLU) and the convolution complete a flowified
network: pad (noise in the border) -> tile (a pixel in ``N`` overlapping patches becomes
``N`` copies with noise orthogonal to their mean) -> a flowified linear kernel shared by
all patches (``FlowifiedConv2d``; exact when kernel = stride and nothing is padded, a
bound otherwise). Discrete data are dequantised with uniform noise and scored in
bits/dim.

Every layer follows the surjective-layer protocol of ``SurjectiveFlow`` (``in_dim``,
``out_dim``, ``exact``, ``inverse(x, key) -> (z, contribution)`` from data to latent,
i.e. the layer's usual feed-forward direction, and ``forward(z, key, mean) -> x``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import ClassVar
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(11))  # degree-10 coefficients
_MAX_SQUARINGS = 24


def expm(m: jax.Array) -> jax.Array:
    """Matrix exponential by scaling and squaring with a Taylor polynomial, ``(D, D)``.

    ``m`` is scaled by ``2^-k`` to norm <= 1/2, where a degree-10 Taylor polynomial is
    accurate to ~1e-14 relative, then squared ``k`` times (``k`` chosen at run time,
    at most 24, inside a ``fori_loop`` with ``cond``, so only the needed squarings run).
    The polynomial is evaluated by Paterson-Stockmeyer in powers of ``x^3`` (5 matrix
    products instead of Horner's 10). Equal to ``jax.scipy.linalg.expm`` to rounding,
    but several times cheaper to compile with its gradient, which matters for networks
    with many rotations.
    """
    norm = jnp.max(jnp.sum(jnp.abs(m), axis=-1))
    k = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-30))) + 1, 0, _MAX_SQUARINGS)
    x = m * jnp.exp2(-k)
    eye = jnp.eye(m.shape[-1], dtype=m.dtype)
    x2 = x @ x
    x3 = x2 @ x
    c = _TAYLOR
    r = c[9] * eye + c[10] * x
    for j in (6, 3, 0):
        r = c[j] * eye + c[j + 1] * x + c[j + 2] * x2 + x3 @ r
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


Padding = int | tuple[tuple[int, int], tuple[int, int]]


class ConvGeometry(NamedTuple):
    """Precomputed index arrays of a convolution's pad and tile steps (flat, row-major).

    Values are indexed ``(row * width + col) * C + channel``; the padded image has
    ``Dp = Hp * Wp * C`` values, the tiles ``P = Ph * Pw`` patches of ``k * k * C``.

    Attributes:
      padded: ``(Hp, Wp)``.
      grid: ``(Ph, Pw)``, patches along each axis.
      tiles: ``(P, k * k * C)`` index of each tile entry in the padded image, ordered
        ``(patch_row, patch_col)`` then ``(i, j, channel)`` within a patch.
      gather: ``(P, k * k * C)`` index of each tile entry in ``concat([x, pad_values])``
        (the padding values in the padded image's row-major order).
      copies: ``(Dp, max N)`` flat tile positions of each padded value's copies, rows
        padded with ``P * k * k * C`` (an appended zero): the tile step's inverse
        gathers and averages them.
      multiplicity: ``(Dp,)`` ``N``, the number of patches holding each padded value.
      crop: ``(H * W * C,)`` index of each original value in the padded image.
      num_pad: ``Dp - H * W * C``, the number of padding values.
      log_volume: ``sum over padded values of (N/2) log N`` (the tile step's constant).
    """

    padded: tuple[int, int]
    grid: tuple[int, int]
    tiles: np.ndarray
    gather: np.ndarray
    copies: np.ndarray
    multiplicity: np.ndarray
    crop: np.ndarray
    num_pad: int
    log_volume: float

    @property
    def duplicated(self) -> bool:
        """Whether some value lies in more than one patch (stride < kernel)."""
        return self.tiles.size > self.multiplicity.size


def _padding_pairs(padding: Padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        return (int(padding),) * 2, (int(padding),) * 2
    try:
        (top, bottom), (left, right) = padding
        pairs = (int(top), int(bottom)), (int(left), int(right))
    except (TypeError, ValueError):
        pairs = None
    if pairs is None or pairs != ((top, bottom), (left, right)):
        raise ValueError("`padding` must be an int or ((top, bottom), (left, right)) of ints; "
                         f"got {padding!r}.")
    return pairs


def conv_geometry(
    height: int,
    width: int,
    channels: int,
    kernel_size: int,
    stride: int,
    padding: Padding = 0,
) -> ConvGeometry:
    """Index arrays of pad -> tile for a ``k x k`` convolution (validated, cached).

    Args:
      height: image height ``H``.
      width: image width ``W``.
      channels: ``C``.
      kernel_size: ``k``.
      stride: ``s``, in ``[1, k]`` (a larger stride would skip pixels).
      padding: ``p`` on every side, or ``((top, bottom), (left, right))``; each in
        ``[0, k)``.

    Returns:
      The ``ConvGeometry``.

    Raises:
      ValueError: naming the argument, if a size is not positive, ``s > k``, a padding is
        negative or ``>= k``, or the patches do not tile the padded image exactly, i.e.
        ``H + top + bottom - k`` (likewise for ``W``) is not a non-negative multiple of
        ``s`` (the last rows or columns would be in no patch).
    """
    pairs = _padding_pairs(padding)
    for name, value in (("height", height), ("width", width), ("in_channels", channels),
                        ("kernel_size", kernel_size), ("stride", stride)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    k, s = int(kernel_size), int(stride)
    if s > k:
        raise ValueError(f"`stride` must be <= kernel_size={k} (a larger stride skips "
                         f"pixels); got {s}.")
    (top, bottom), (left, right) = pairs
    if min(top, bottom, left, right) < 0 or max(top, bottom, left, right) >= k:
        raise ValueError(f"`padding` must be in [0, kernel_size={k}) on every side; got "
                         f"{padding!r}.")
    for name, size, lo, hi in (("height", height, top, bottom), ("width", width, left, right)):
        if size + lo + hi < k or (size + lo + hi - k) % s:
            raise ValueError(f"`{name}` plus padding ({size} + {lo} + {hi}) minus kernel_size "
                             f"{k} must be a non-negative multiple of stride {s}, so that the "
                             f"patches cover every pixel; got {name}={size}.")
    return _conv_geometry(int(height), int(width), int(channels), k, s, pairs)


@functools.lru_cache(maxsize=64)
def _conv_geometry(height, width, c, k, s, pairs) -> ConvGeometry:
    (top, bottom), (left, right) = pairs
    hp, wp = height + top + bottom, width + left + right
    ph, pw = (hp - k) // s + 1, (wp - k) // s + 1
    rows = np.arange(ph)[:, None] * s + np.arange(k)  # (Ph, k)
    cols = np.arange(pw)[:, None] * s + np.arange(k)  # (Pw, k)
    pixel = rows[:, None, :, None] * wp + cols[None, :, None, :]  # (Ph, Pw, k, k)
    tiles = (pixel[..., None] * c + np.arange(c)).reshape(ph * pw, k * k * c)
    multiplicity = np.bincount(tiles.ravel(), minlength=hp * wp * c)
    crop = (((np.arange(height)[:, None] + top) * wp + np.arange(width) + left)[..., None] * c
            + np.arange(c)).ravel()
    num_pad = hp * wp * c - crop.size
    source = np.empty(hp * wp * c, np.int64)
    source[crop] = np.arange(crop.size)
    is_pad = np.ones(hp * wp * c, bool)
    is_pad[crop] = False
    source[is_pad] = crop.size + np.arange(num_pad)
    log_volume = float(np.sum(multiplicity / 2.0 * np.log(multiplicity)))
    gather = source[tiles]
    # copies[j, m]: the flat tile position of value j's m-th copy; tiles.size (an appended
    # zero) pads the rows of values with fewer than max N copies
    order = np.argsort(tiles.ravel(), kind="stable")
    rank = np.arange(tiles.size) - np.repeat(np.cumsum(multiplicity) - multiplicity,
                                             multiplicity)
    copies = np.full((hp * wp * c, int(multiplicity.max())), tiles.size, np.int64)
    copies[tiles.ravel()[order], rank] = order
    for a in (tiles, gather, copies, multiplicity, crop):
        a.setflags(write=False)
    return ConvGeometry((hp, wp), (ph, pw), tiles, gather, copies, multiplicity, crop,
                        num_pad, log_volume)


class FlowifiedConv2d(nn.Module):
    r"""A convolution as a flow: pad -> tile -> a flowified linear kernel per patch.

    References: Máté, Klein, Golling, Fleuret, "Flowification: Everything is a
    Normalizing Flow", arXiv:2205.15209 (Sec. 3, "Conv2d"; the ``conv1`` models use
    ``k = 3, s = 2``, the ``conv2`` models ``k = s = 2``).

    Images ``(H, W, C_in)`` are events flattened row-major, ``(n, H * W * C_in)``; the
    output ``(Ph, Pw, C_out)`` likewise, ``Ph = (H + top + bottom - k) / s + 1``.
    In the data-to-latent (feed-forward) direction:

    1. **Pad.** The padded border is filled with noise ``u ~ N(0, B^2)``, ``B``
       learnable (init ``noise_scale``). Deterministic zeros would leave no valid likelihood: the
       score would be ``log p(x, u=0)``, which is no bound on ``log p(x)`` and is
       unbounded above (the model gains without limit by concentrating its density on
       ``u = 0``, e.g. by a scale ``e^s -> inf`` along the padded direction). With
       noise, cropping is a generative surjection and Jensen gives
       ``log p(x) >= E_u[log p(x, u) - log q(u)]``: contribution ``-log q(u)``, a bound.
       (The reference pads the right and bottom with learnable-scale Gaussian noise,
       just enough to fit the stride; ``padding=((0, 1), (0, 1))`` does the same here.)
    2. **Tile.** A value in ``N`` patches becomes ``N`` copies ``y = v 1 + sqrt(N) u``
       with ``u`` in the ``(N-1)``-dimensional complement of ``1``, so that the copies'
       mean is ``v``; ``u ~ N(0, A^2 I_{N-1})``: a radius ``A chi_{N-1}`` times a
       uniform direction, as in the reference, with ``A`` learnable (init
       ``noise_scale``). Its log-contribution is

       .. math::
         c_{\rm tile} = \sum_{\rm values} \Big[\frac{N}{2}\log N - \log q(u)\Big],
         \qquad -\log q(u) = \frac{N-1}{2}\log(2\pi A^2) + \frac{|u|^2}{2A^2}.

       Derivation: with an orthonormal basis ``[1/sqrt(N), B_perp]`` of ``R^N``, the
       map ``(v, w) -> y = v 1 + sqrt(N) B_perp w`` is ``sqrt(N) I`` followed by a
       rotation, with Jacobian ``N^{N/2}``. Hence the model's density of the mean
       ``v = mean(y)`` of tiles ``y ~ p_Y`` is
       ``p(v) = N^{N/2} \int p_Y(v 1 + sqrt(N) B_perp w) dw``. With ``w = B_perp^T u ~ q``,
       Jensen gives ``log p(v) >= E_q[log p_Y(y) - log q(u)] + (N/2) log N``. Equality
       needs ``q`` to be the model's conditional of the copies given their mean, so
       with any duplicated value the layer is a bound. Values with ``N = 1`` get no
       noise and add ``0``. The noise is drawn as ``u = A (g - mean(g))``,
       ``g ~ N(0, I_N)``, and ``|u|^2 / A^2 = sum (g_i - mean g)^2 ~ chi^2_{N-1}``.
    3. **Kernel.** One ``FlowifiedLinear`` ``k*k*C_in -> C_out`` shared by all patches
       (exact unless it widens).

    Towards the data (``forward``): the kernel's inverse on every patch, the mean of
    each value's copies (the tile step's inverse), then the crop. Every step is a
    gather with index arrays precomputed once (``conv_geometry``): no loop over
    patches, and no scatter. With ``k = s`` and no padding every value has ``N = 1``:
    the tile is a permutation, no noise is drawn, no extra parameters exist, and the
    layer is exact whenever its kernel is.

    Attributes:
      height: image height ``H``.
      width: image width ``W``.
      in_channels: ``C_in``.
      out_channels: ``C_out``.
      kernel_size: ``k``.
      decoder_hidden: as in ``FlowifiedLinear``.
      stride: ``s`` in ``[1, k]``; ``None``: ``k`` (non-overlapping patches).
      padding: ``p`` on every side or ``((top, bottom), (left, right))``, each in
        ``[0, k)``; ``H + top + bottom - k`` must be a multiple of ``s`` (same for
        ``W``).
      noise_scale: initial tile and padding noise scales ``A`` and ``B`` (the
        reference's 0.1, for data in ``[0, 1]``; choose it relative to the data's scale:
        Adam moves ``log A`` by about the learning rate per step).

    Example:
      >>> conv = FlowifiedConv2d(8, 8, 1, 4, kernel_size=3, stride=2,
      ...                        padding=((0, 1), (0, 1)))
      >>> conv.in_dim, conv.out_dim, conv.exact
      (64, 64, False)
    """

    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel_size: int = 2
    decoder_hidden: Sequence[int] | None = None
    stride: int | None = None
    padding: Padding = 0
    noise_scale: float = 0.1

    @property
    def geometry(self) -> ConvGeometry:
        """The validated pad/tile index arrays (raises ``ValueError`` on bad sizes)."""
        return conv_geometry(self.height, self.width, self.in_channels, self.kernel_size,
                             self.kernel_size if self.stride is None else self.stride,
                             self.padding)

    @property
    def _patch(self) -> int:
        return self.kernel_size * self.kernel_size * self.in_channels

    @property
    def in_dim(self) -> int:
        """``H * W * C_in``."""
        return self.geometry.crop.size

    @property
    def out_dim(self) -> int:
        """``Ph * Pw * C_out``."""
        ph, pw = self.geometry.grid
        return ph * pw * self.out_channels

    @property
    def exact(self) -> bool:
        """Exact iff nothing is padded or duplicated and ``C_out <= k*k*C_in``."""
        g = self.geometry
        return not g.duplicated and g.num_pad == 0 and self.out_channels <= self._patch

    def setup(self):
        """Validates the geometry; builds the kernel and the noise scales that are needed."""
        g = self.geometry
        check_positive("out_channels", self.out_channels)
        check_positive("noise_scale", self.noise_scale)
        self.kernel = FlowifiedLinear(self._patch, self.out_channels, self.decoder_hidden)
        init = nn.initializers.constant(math.log(self.noise_scale))
        if g.num_pad:
            self.pad_log_scale = self.param("pad_log_scale", init, ())
        if g.duplicated:
            self.tile_log_scale = self.param("tile_log_scale", init, ())

    def _needs_noise(self) -> bool:
        g = self.geometry
        return g.duplicated or g.num_pad > 0

    def _fold_mean(self, tiles: jax.Array) -> jax.Array:
        """Tiles ``(..., P, k*k*C)`` to the padded image ``(..., Dp)``: each value's mean copy."""
        g = self.geometry
        flat = tiles.reshape(tiles.shape[:-2] + (-1,))
        if not g.duplicated:
            return flat[..., g.copies[:, 0]]
        flat = jnp.concatenate([flat, jnp.zeros(flat.shape[:-1] + (1,), flat.dtype)], -1)
        return jnp.sum(flat[..., g.copies], axis=-1) / g.multiplicity.astype(tiles.dtype)

    def tile(self, x: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """The pad and tile steps: images ``(n, H*W*C_in)`` to tiles ``(n, P, k*k*C_in)``.

        Args:
          x: images ``(n, H*W*C_in)``.
          key: PRNG key for the padding and tile noise (needed when either is drawn).

        Returns:
          ``(tiles, contribution)``; ``contribution`` ``(n,)`` is the pad and tile steps'
          log-likelihood contribution ``-log q(u_pad) + sum [(N/2) log N - log q(u)]``.
        """
        g = self.geometry
        contribution = jnp.zeros(x.shape[:-1], x.dtype)
        if not self._needs_noise():
            return x[..., g.gather], contribution
        if key is None:
            raise ValueError("`key` is needed: an overlapping or padded flowified convolution "
                             "draws noise.")
        # one draw for both steps (a normal sampler is slow to compile)
        num_tile = g.tiles.size if g.duplicated else 0
        noise = jax.random.normal(key, x.shape[:-1] + (g.num_pad + num_tile,), x.dtype)
        half_log_2pi = 0.5 * math.log(2.0 * math.pi)
        if g.num_pad:
            e = noise[..., : g.num_pad]
            x = jnp.concatenate([x, jnp.exp(self.pad_log_scale) * e], axis=-1)
            contribution += (0.5 * jnp.sum(e * e, axis=-1)
                             + g.num_pad * (self.pad_log_scale + half_log_2pi))
        tiles = x[..., g.gather]
        if g.duplicated:
            noise = noise[..., g.num_pad :].reshape(tiles.shape)
            centred = noise - self._fold_mean(noise)[..., g.tiles]  # exactly 0 where N = 1
            root_n = jnp.asarray(np.sqrt(g.multiplicity[g.tiles]), x.dtype)
            tiles = tiles + jnp.exp(self.tile_log_scale) * root_n * centred
            dof = g.tiles.size - g.multiplicity.size  # sum of (N - 1)
            contribution += (0.5 * jnp.sum(centred * centred, axis=(-2, -1))
                             + dof * (self.tile_log_scale + half_log_2pi) + g.log_volume)
        return tiles, contribution

    def inverse(self, x: jax.Array, key: jax.Array | None = None):
        """Images ``(n, H*W*C_in)`` to ``(n, Ph*Pw*C_out)``; returns ``(z, contribution)``."""
        ph, pw = self.geometry.grid
        k_tile, k_kernel = (jax.random.split(key) if key is not None and self._needs_noise()
                            else (key, key))
        tiles, contribution = self.tile(x, k_tile)
        tiles = tiles.reshape(x.shape[:-1] + (ph, pw, self._patch))
        z, c = self.kernel.inverse(tiles, k_kernel)
        return (z.reshape(x.shape[:-1] + (self.out_dim,)),
                contribution + jnp.sum(c, axis=(-2, -1)))

    def forward(self, z: jax.Array, key: jax.Array | None = None, mean: bool = False):
        """``(n, Ph*Pw*C_out)`` to images ``(n, H*W*C_in)`` (kernel inverse, mean, crop)."""
        g = self.geometry
        ph, pw = g.grid
        tiles = self.kernel.forward(z.reshape(z.shape[:-1] + (ph, pw, self.out_channels)),
                                    key, mean)
        padded = self._fold_mean(tiles.reshape(z.shape[:-1] + g.tiles.shape))
        return padded[..., g.crop]

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
    """``-log L / (D ln 2)``: negative log-likelihood in bits per dimension.

    Example:
      >>> import math
      >>> from jaxgen.flows import bits_per_dim
      >>> round(float(bits_per_dim(-64 * math.log(2.0), 64)), 6)   # uniform on 2 values per pixel
      1.0
    """
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

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.flows import flowify_mlp
      >>> flow, params = flowify_mlp(jax.random.key(0), sizes=(4, 3, 2))   # 4 -> 3 -> 2 units
      >>> flow.log_prob(params, jnp.zeros((5, 4))).shape   # an MLP with an exact likelihood
      (5,)
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
