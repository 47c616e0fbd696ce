"""CaloGAN-like calorimeter images from SUPA point clouds (arXiv:2202.05012)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxgen.data.showers._config import ShowerConfig
from jaxgen.data.showers._simulate import Showers

GEV_TO_MEV = 1000.0


@functools.partial(jax.jit, static_argnames=("config",))
def _grids(points, mask, *, config):
    n = points.shape[0]
    images, overflow = [], []
    for k, ((nx, ny), half) in enumerate(zip(config.grid_bins, config.grid_extent,
                                             strict=True)):
        x, y, e = points[:, k, :, 0], points[:, k, :, 1], points[:, k, :, 2]
        e = jnp.where(mask[:, k], e, 0.0) * GEV_TO_MEV
        inside = (jnp.abs(x) <= half) & (jnp.abs(y) <= half)
        # np.histogram2d bins: [lo + i w, lo + (i + 1) w), the last bin closed on the right.
        ix = jnp.clip(jnp.floor((x + half) * (nx / (2 * half))), 0, nx - 1).astype(jnp.int32)
        iy = jnp.clip(jnp.floor((y + half) * (ny / (2 * half))), 0, ny - 1).astype(jnp.int32)
        flat = jnp.where(inside, ix * ny + iy, nx * ny)
        rows = jnp.arange(n)[:, None]
        img = jnp.zeros((n, nx * ny + 1), jnp.float32).at[rows, flat].add(e)
        images.append(img[:, :-1].reshape(n, nx, ny))
        overflow.append(img[:, -1])
    return tuple(images), jnp.stack(overflow, axis=-1)


def to_grids(
    showers: Showers, config: ShowerConfig | None = None
) -> tuple[tuple[jax.Array, ...], jax.Array]:
    """Energy-weighted 2D histograms per calorimeter layer, in MeV (as SUPA's ``pc2grid``).

    Layer ``k`` is binned in ``grid_bins[k] = (nx, ny)`` over ``[-e, e]^2`` with
    ``e = grid_extent[k]`` (reference: 3x96 over [-5, 5]^2, 12x12 over [-10, 10]^2 and
    12x6 over [-15, 15]^2), the first axis being x, as ``np.histogram2d`` does.

    Args:
      showers: the simulated showers.
      config: the configuration that made them (default: the reference configuration).

    Returns:
      ``(images, overflow)``: ``images[k]`` of shape ``(n, nx, ny)`` in MeV, and
      ``overflow`` of shape ``(n, n_layers)``, the read-out energy (MeV) outside each
      grid, so that images plus overflow sum to the read-out energy. (The released code
      writes zeros there and drops that energy.)

    Raises:
      ValueError: if the showers do not have ``config.n_layers`` layers.

    Example:
      >>> import jax
      >>> from jaxgen.data.showers import simulate, to_grids
      >>> images, overflow = to_grids(simulate(jax.random.key(0), 10))
      >>> [im.shape for im in images], overflow.shape        # three layers, as CaloGAN
      ([(10, 3, 96), (10, 12, 12), (10, 12, 6)], (10, 3))
    """
    config = ShowerConfig() if config is None else config
    if showers.points.ndim != 4 or showers.points.shape[1] != config.n_layers:
        raise ValueError(
            f"`showers.points` must have shape (n, {config.n_layers}, max_points, 3); got "
            f"{tuple(showers.points.shape)}."
        )
    return _grids(jnp.asarray(showers.points), jnp.asarray(showers.mask), config=config)
