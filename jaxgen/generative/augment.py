"""Data augmentations as pure functions of a PRNG key.

Used for contrastive learning (SimCLR, Chen et al., arXiv:2002.05709; InfoSCC-GAN,
arXiv:2112.09653) and as the differentiable augmentation of a GAN discriminator
(DiffAugment, Zhao et al., arXiv:2006.10738). Every function maps a batch to a batch of
the same shape, draws independent randomness per example, returns the same output for the
same key, and is differentiable with respect to its input (shifts and cutouts are gathers
and masks), so it can sit between a generator and a discriminator.

Vectors are ``(n, dim)``; images are ``(n, height, width)`` or ``(n, height, width,
channels)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_positive

Augment = Callable[[jax.Array, jax.Array], jax.Array]
"""``augment(key, x) -> x_augmented`` of the same shape."""


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); got {value!r}.")


def _check_images(x: jax.Array) -> None:
    check_array("x", x, ndim=(3, 4))


# ---------------------------------------------------------------- vectors


def gaussian_jitter(key: jax.Array, x: jax.Array, std: float = 0.1) -> jax.Array:
    """Adds ``N(0, std^2)`` noise to every entry of ``x`` of shape ``(n, ...)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import gaussian_jitter
      >>> x = jnp.ones((5, 2))
      >>> gaussian_jitter(jax.random.key(0), x, std=0.1).shape
      (5, 2)
    """
    check_positive("std", std, allow_zero=True)
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def feature_dropout(key: jax.Array, x: jax.Array, rate: float = 0.1) -> jax.Array:
    """Zeroes each feature of ``x`` ``(n, dim)`` with probability ``rate`` (no rescaling).

    Raises:
      ValueError: if ``rate`` is not in [0, 1).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import feature_dropout
      >>> x = jnp.ones((5, 2))
      >>> feature_dropout(jax.random.key(0), x, rate=0.5).shape
      (5, 2)
    """
    _check_rate("rate", rate)
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x, jnp.zeros_like(x))


def random_rotation_2d(key: jax.Array, x: jax.Array, max_angle: float = math.pi) -> jax.Array:
    """Rotates each 2D point of ``x`` ``(n, 2)`` by an angle uniform in ``[-max_angle, max_angle]``.

    Raises:
      ValueError: if ``x`` is not ``(n, 2)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import random_rotation_2d
      >>> x = jnp.ones((5, 2))
      >>> y = random_rotation_2d(jax.random.key(0), x)
      >>> jnp.allclose(jnp.linalg.norm(y, axis=1), jnp.sqrt(2.0)).item()   # norms kept
      True
    """
    check_array("x", x, ndim=2, last_dim=2, finite=False)
    check_positive("max_angle", max_angle, allow_zero=True)
    theta = jax.random.uniform(key, (x.shape[0],), x.dtype, -max_angle, max_angle)
    c, s = jnp.cos(theta), jnp.sin(theta)
    return jnp.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]], axis=-1)


def random_scale(key: jax.Array, x: jax.Array, max_log_scale: float = 0.1) -> jax.Array:
    """Multiplies each example of ``x`` ``(n, ...)`` by ``exp(u)``, ``u ~ U(-m, m)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import random_scale
      >>> x = jnp.ones((5, 2))
      >>> random_scale(jax.random.key(0), x, max_log_scale=0.1).shape
      (5, 2)
    """
    check_positive("max_log_scale", max_log_scale, allow_zero=True)
    u = jax.random.uniform(key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype,
                           -max_log_scale, max_log_scale)
    return x * jnp.exp(u)


# ---------------------------------------------------------------- images


def _as_nhwc(x: jax.Array) -> tuple[jax.Array, bool]:
    return (x[..., None], True) if x.ndim == 3 else (x, False)


def random_shift(key: jax.Array, x: jax.Array, max_shift: int = 1) -> jax.Array:
    """Random crop of a zero-padded image: shifts each image by up to ``max_shift`` pixels.

    Pads every side by ``max_shift`` zeros and crops a window of the original size at a
    random offset, independently per image and axis (DiffAugment's ``translation``).

    Args:
      key: PRNG key.
      x: images ``(n, h, w)`` or ``(n, h, w, c)``.
      max_shift: largest shift in pixels (``>= 0``).

    Returns:
      The shifted images, same shape as ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import random_shift
      >>> x = jnp.ones((4, 8, 8))                 # four 8x8 images
      >>> random_shift(jax.random.key(0), x, max_shift=1).shape
      (4, 8, 8)
    """
    _check_images(x)
    check_positive("max_shift", max_shift, allow_zero=True)
    if max_shift == 0:
        return x
    y, squeeze = _as_nhwc(x)
    n, h, w, c = y.shape
    s = int(max_shift)
    padded = jnp.pad(y, ((0, 0), (s, s), (s, s), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * s + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    out = jax.vmap(crop)(padded, offsets)
    return out[..., 0] if squeeze else out


def random_flip(key: jax.Array, x: jax.Array, p: float = 0.5) -> jax.Array:
    """Flips each image of ``x`` ``(n, h, w[, c])`` left-right with probability ``p``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import random_flip
      >>> x = jnp.ones((4, 8, 8))                 # four 8x8 images
      >>> bool(jnp.all(random_flip(jax.random.key(0), x) == x))   # a flip of a flat image
      True
    """
    _check_images(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"`p` must be in [0, 1]; got {p!r}.")
    flip = jax.random.bernoulli(key, p, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(flip, jnp.flip(x, axis=2), x)


def gaussian_noise(key: jax.Array, x: jax.Array, std: float = 0.1) -> jax.Array:
    """Adds per-pixel ``N(0, std^2)`` noise to images ``(n, h, w[, c])``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import gaussian_noise
      >>> x = jnp.ones((4, 8, 8))                 # four 8x8 images
      >>> gaussian_noise(jax.random.key(0), x, std=0.1).shape
      (4, 8, 8)
    """
    _check_images(x)
    return gaussian_jitter(key, x, std)


def cutout(key: jax.Array, x: jax.Array, size: int = 2) -> jax.Array:
    """Zeroes a random ``size x size`` square (clipped at the borders) in each image.

    The square's centre is uniform over the image, as in DiffAugment's ``cutout``.

    Args:
      key: PRNG key.
      x: images ``(n, h, w)`` or ``(n, h, w, c)``.
      size: side of the square in pixels (``>= 1``).

    Returns:
      The images with one square zeroed each, same shape as ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import cutout
      >>> x = jnp.ones((4, 8, 8))                 # four 8x8 images
      >>> y = cutout(jax.random.key(0), x, size=2)
      >>> y.shape, int((y == 0).sum(axis=(1, 2)).max()) <= 4   # at most one 2x2 square zeroed
      ((4, 8, 8), True)
    """
    _check_images(x)
    check_positive("size", size)
    n, h, w = x.shape[:3]
    k1, k2 = jax.random.split(key)
    cy = jax.random.randint(k1, (n, 1, 1), 0, h)
    cx = jax.random.randint(k2, (n, 1, 1), 0, w)
    lo = size // 2
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]
    in_rows = (rows >= cy - lo) & (rows < cy - lo + size)
    inside = in_rows & (cols >= cx - lo) & (cols < cx - lo + size)
    inside = inside.reshape(inside.shape + (1,) * (x.ndim - 3))
    return jnp.where(inside, jnp.zeros_like(x), x)


def random_brightness(key: jax.Array, x: jax.Array, max_delta: float = 0.25) -> jax.Array:
    """Adds one offset ``U(-max_delta, max_delta)`` per image (DiffAugment's ``brightness``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import random_brightness
      >>> x = jnp.ones((4, 8, 8))                 # four 8x8 images
      >>> random_brightness(jax.random.key(0), x, max_delta=0.25).shape
      (4, 8, 8)
    """
    _check_images(x)
    check_positive("max_delta", max_delta, allow_zero=True)
    delta = jax.random.uniform(key, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype,
                               -max_delta, max_delta)
    return x + delta


# ---------------------------------------------------------------- compositions


def compose(*augments: Augment) -> Augment:
    """Chains augmentations ``f_1, ..., f_m`` with independent keys: ``f_m(...f_1(x))``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import compose, gaussian_jitter, random_rotation_2d
      >>> augment = compose(random_rotation_2d, gaussian_jitter)   # applied in this order
      >>> augment(jax.random.key(0), jnp.ones((5, 2))).shape
      (5, 2)
    """
    if not augments:
        raise ValueError("`compose` needs at least one augmentation.")

    def augment(key: jax.Array, x: jax.Array) -> jax.Array:
        for k, f in zip(jax.random.split(key, len(augments)), augments, strict=True):
            x = f(k, x)
        return x

    return augment


@functools.lru_cache(maxsize=64)
def vector_augment(jitter: float = 0.1, dropout: float = 0.0, rotation: float = 0.0,
                   scale: float = 0.0) -> Augment:
    """A SimCLR view generator for vectors ``(n, dim)``.

    Args:
      jitter: std of the Gaussian jitter.
      dropout: feature-dropout rate (0 disables it).
      rotation: largest rotation angle in radians for 2D points (0 disables it).
      scale: largest log-scale factor (0 disables it).

    Returns:
      ``augment(key, x)``; the same object for the same arguments (cached), so training
      functions built on it are compiled once.
    """
    check_positive("jitter", jitter, allow_zero=True)
    _check_rate("dropout", dropout)
    check_positive("rotation", rotation, allow_zero=True)
    check_positive("scale", scale, allow_zero=True)
    parts: list[Augment] = []
    if rotation > 0:
        parts.append(lambda k, x: random_rotation_2d(k, x, rotation))
    if scale > 0:
        parts.append(lambda k, x: random_scale(k, x, scale))
    if dropout > 0:
        parts.append(lambda k, x: feature_dropout(k, x, dropout))
    parts.append(lambda k, x: gaussian_jitter(k, x, jitter))
    return compose(*parts)


@functools.lru_cache(maxsize=64)
def image_augment(max_shift: int = 1, flip: bool = False, noise: float = 0.1,
                  cutout_size: int = 0) -> Augment:
    """A SimCLR view generator for small images ``(n, h, w[, c])``.

    Args:
      max_shift: random-crop shift in pixels (0 disables it).
      flip: random left-right flips (off for digits, where a flip changes the class).
      noise: std of the pixel noise.
      cutout_size: side of the cutout square (0 disables it).

    Returns:
      ``augment(key, x)`` (cached per arguments, like ``vector_augment``).
    """
    check_positive("max_shift", max_shift, allow_zero=True)
    check_positive("noise", noise, allow_zero=True)
    check_positive("cutout_size", cutout_size, allow_zero=True)
    parts: list[Augment] = []
    if max_shift > 0:
        parts.append(lambda k, x: random_shift(k, x, max_shift))
    if flip:
        parts.append(random_flip)
    if cutout_size > 0:
        parts.append(lambda k, x: cutout(k, x, cutout_size))
    parts.append(lambda k, x: gaussian_noise(k, x, noise))
    return compose(*parts)


def diff_augment(key: jax.Array, x: jax.Array, p: float = 0.6, max_shift: int = 1,
                 cutout_size: int = 2, max_brightness: float = 0.25) -> jax.Array:
    """DiffAugment for a GAN discriminator: brightness, translation and cutout on images.

    Each of the three is applied to each image with probability ``p`` (InfoSCC-GAN uses
    0.6), chosen per image; everything is differentiable in ``x`` (arXiv:2006.10738).

    Args:
      key: PRNG key.
      x: images ``(n, h, w[, c])``.
      p: per-image probability of each augmentation.
      max_shift: translation in pixels.
      cutout_size: cutout square side.
      max_brightness: brightness offset range.

    Returns:
      Augmented images, same shape as ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import diff_augment
      >>> x = jnp.ones((4, 8, 8))                 # four 8x8 images
      >>> diff_augment(jax.random.key(0), x, p=0.6).shape
      (4, 8, 8)
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"`p` must be in [0, 1]; got {p!r}.")
    keys = jax.random.split(key, 6)
    bshape = (x.shape[0],) + (1,) * (x.ndim - 1)

    def maybe(k_use, y, fn_y):
        return jnp.where(jax.random.bernoulli(k_use, p, bshape), fn_y, y)

    x = maybe(keys[0], x, random_brightness(keys[1], x, max_brightness))
    x = maybe(keys[2], x, random_shift(keys[3], x, max_shift))
    return maybe(keys[4], x, cutout(keys[5], x, cutout_size))
