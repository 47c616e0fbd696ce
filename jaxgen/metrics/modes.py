r"""Mode coverage of samples from a mixture of equal isotropic Gaussians.

The GAN mode-collapse benchmarks (ring of 8 and grid of 25 Gaussians) score a sample
set against the known centres ``c_k`` and the common standard deviation ``sigma``,
following VEEGAN (Srivastava et al., arXiv:1705.07761) and PacGAN (Lin et al.,
arXiv:1712.04086):

* each sample is registered to its nearest centre; it is **high quality** if it lies
  within ``3 sigma`` of that centre;
* a mode is **covered** if at least ``min_fraction`` of all samples are high-quality
  samples registered to it. PacGAN's convention is 20 of 2500 samples
  (``min_fraction = 0.008``), the default here;
* the **mode KL** is :math:`\mathrm{KL}(\hat p \,\Vert\, u) = \sum_k \hat p_k
  \log(K \hat p_k)`, where :math:`\hat p` is the histogram of the high-quality samples
  over the ``K`` modes and ``u`` the uniform target (PacGAN's "reverse KL"). It is 0
  for perfectly balanced modes and ``log K`` when every good sample sits in one mode;
  a sample set with no high-quality sample at all is scored ``log K`` as well.

All functions are jit-able (no data-dependent shapes) and work on ``(n, d)`` samples.

Example:
  >>> import jax.numpy as jnp
  >>> centres = jnp.array([[0.0, 0.0], [1.0, 0.0]])
  >>> x = jnp.array([[0.0, 0.01], [0.01, 0.0], [1.0, 0.02], [0.5, 0.5]])
  >>> s = mode_statistics(x, centres, 0.05, min_fraction=0.2)
  >>> int(s.modes_covered), float(s.high_quality_fraction)
  (2, 0.75)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_positive

PACGAN_MIN_FRACTION = 20 / 2500
"""PacGAN's threshold: a mode with fewer than 20 of 2500 samples is lost."""


class ModeStatistics(NamedTuple):
    """What ``mode_statistics`` returns (scalars unless stated).

    Attributes:
      modes_covered: number of covered modes (int32).
      high_quality_fraction: fraction of samples within ``3 sigma`` of their nearest centre.
      mode_kl: ``KL(p_hat || uniform)`` of the high-quality samples' mode histogram (nats).
      counts: ``(K,)`` high-quality samples registered to each mode (int32).
    """

    modes_covered: jax.Array
    high_quality_fraction: jax.Array
    mode_kl: jax.Array
    counts: jax.Array


def _check(samples, centres, std, min_fraction, num_sigmas):
    check_array("centres", centres, ndim=2)
    check_array("samples", samples, ndim=2, last_dim=centres.shape[-1])
    if centres.shape[0] < 1:
        raise ValueError("`centres` must hold at least one centre; got shape "
                         f"{tuple(centres.shape)}.")
    check_positive("std", float(std))
    check_positive("num_sigmas", float(num_sigmas))
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"`min_fraction` must be in (0, 1]; got {min_fraction!r}.")


def high_quality_counts(
    samples: jax.typing.ArrayLike,
    centres: jax.typing.ArrayLike,
    std: float,
    *,
    num_sigmas: float = 3.0,
) -> tuple[jax.Array, jax.Array]:
    """Registers samples to their nearest centre and keeps those within ``num_sigmas``.

    Args:
      samples: ``(n, d)`` samples.
      centres: ``(K, d)`` mode centres.
      std: the modes' common standard deviation ``sigma`` (> 0).
      num_sigmas: radius of a mode in units of ``sigma`` (3 in VEEGAN and PacGAN).

    Returns:
      ``(counts, high_quality)``: ``(K,)`` int32 high-quality samples per mode and the
      ``(n,)`` boolean high-quality mask.
    """
    samples, centres = jnp.asarray(samples), jnp.asarray(centres)
    _check(samples, centres, std, 1.0, num_sigmas)
    return _counts(samples, centres, std, num_sigmas)


@jax.jit
def _counts(samples, centres, std, num_sigmas):
    d2 = jnp.sum((samples[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
    nearest = jnp.argmin(d2, axis=-1)
    good = jnp.min(d2, axis=-1) <= (num_sigmas * std) ** 2
    onehot = jax.nn.one_hot(nearest, centres.shape[0], dtype=jnp.int32)
    return jnp.sum(onehot * good[:, None], axis=0), good


def mode_statistics(
    samples: jax.typing.ArrayLike,
    centres: jax.typing.ArrayLike,
    std: float,
    *,
    min_fraction: float = PACGAN_MIN_FRACTION,
    num_sigmas: float = 3.0,
) -> ModeStatistics:
    """Modes covered, high-quality fraction and mode KL of ``samples`` (module docstring).

    Args:
      samples: ``(n, d)`` samples, e.g. 2500 draws from a generator.
      centres: ``(K, d)`` mode centres.
      std: the modes' common standard deviation ``sigma`` (> 0).
      min_fraction: fraction of all ``n`` samples that a mode needs (as high-quality
        samples registered to it) to count as covered; default 20/2500 (PacGAN).
      num_sigmas: radius of a mode in units of ``sigma`` (3).

    Returns:
      ``ModeStatistics``.

    Raises:
      ValueError: for mismatched shapes, NaN/inf, ``std <= 0`` or ``min_fraction``
        outside ``(0, 1]``.
    """
    samples, centres = jnp.asarray(samples), jnp.asarray(centres)
    _check(samples, centres, std, min_fraction, num_sigmas)
    return _statistics(samples, centres, std, min_fraction, num_sigmas)


@jax.jit
def _statistics(samples, centres, std, min_fraction, num_sigmas):
    counts, good = _counts(samples, centres, std, num_sigmas)
    n, k = samples.shape[0], centres.shape[0]
    covered = jnp.sum(counts >= min_fraction * n).astype(jnp.int32)
    total = jnp.sum(counts)
    p = counts / jnp.maximum(total, 1)
    kl = jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p * k, 1.0)), 0.0))
    kl = jnp.where(total > 0, kl, jnp.log(k))
    return ModeStatistics(covered, jnp.mean(good.astype(jnp.float32)), kl, counts)


def ring_centres(num_modes: int = 8, radius: float = 2.0) -> jax.Array:
    """``(num_modes, 2)`` centres of ``jaxgen.data.toys.ring_of_gaussians``."""
    check_positive("num_modes", num_modes)
    angle = 2.0 * jnp.pi * jnp.arange(num_modes) / num_modes
    return radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def grid_centres(side: int = 5, spacing: float = 2.0) -> jax.Array:
    """``(side**2, 2)`` centres of ``jaxgen.data.toys.grid_of_gaussians``."""
    check_positive("side", side)
    axis = spacing * (jnp.arange(side) - (side - 1) / 2.0)
    gx, gy = jnp.meshgrid(axis, axis, indexing="ij")
    return jnp.stack([gx.ravel(), gy.ravel()], axis=-1)
