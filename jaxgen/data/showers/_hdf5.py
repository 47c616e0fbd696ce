"""HDF5 files of SUPA showers (arXiv:2202.05012): CaloGAN-like grids plus point clouds.

Datasets: ``layer_0..L-1`` (n, nx, ny) float32 MeV, ``energy`` (n, 1) GeV, ``overflow``
(n, L) MeV (read-out energy outside each grid), ``points`` (n, L, max_points, 3),
``counts`` (n, L) int32, ``escaped`` and ``unread`` (n,) GeV. The file's attributes hold
the configuration (JSON), the number of showers simulated and kept, and the key's seed
index. Files are written to a temporary name and renamed when complete (``jaxgen.io``);
the reader checks this schema (``jaxgen.data._files``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
from collections.abc import Iterator

import h5py
import jax
import numpy as np

from jaxgen.data._files import file_error
from jaxgen.data._files import open_hdf5
from jaxgen.data._files import read_dataset
from jaxgen.data.showers._config import ShowerConfig
from jaxgen.data.showers._grids import to_grids
from jaxgen.data.showers._simulate import Showers
from jaxgen.data.showers._simulate import simulate
from jaxgen.io import atomic_path


@contextlib.contextmanager
def _atomic_h5(path: pathlib.Path) -> Iterator[h5py.File]:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def _arrays(showers: Showers, config: ShowerConfig, keep: np.ndarray) -> dict[str, np.ndarray]:
    images, overflow = to_grids(showers, config)
    out = {f"layer_{k}": np.asarray(img)[keep] for k, img in enumerate(images)}
    out["energy"] = np.asarray(showers.energy)[keep, None]
    out["overflow"] = np.asarray(overflow)[keep]
    out["points"] = np.asarray(showers.points)[keep]
    out["counts"] = np.asarray(showers.counts)[keep]
    out["escaped"] = np.asarray(showers.escaped)[keep]
    out["unread"] = np.asarray(showers.unread)[keep]
    return out


def _append(f: h5py.File, arrays: dict[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        if name not in f:
            maxshape = (None, *a.shape[1:])
            if name == "points":
                maxshape = (None, a.shape[1], None, 3)
            # Fletcher-32 checksums per chunk: damaged bytes fail the read, not pass silently.
            f.create_dataset(name, data=a, maxshape=maxshape, chunks=True, fletcher32=True)
            continue
        d = f[name]
        if name == "points" and a.shape[2] != d.shape[2]:  # a chunk needed more points
            width = max(a.shape[2], d.shape[2])
            d.resize(width, axis=2)
            a = np.pad(a, ((0, 0), (0, 0), (0, width - a.shape[2]), (0, 0)))
        start = d.shape[0]
        d.resize(start + a.shape[0], axis=0)
        d[start:] = a


def write_hdf5(
    path: str | os.PathLike,
    showers: Showers,
    config: ShowerConfig | None = None,
    *,
    drop_empty: bool = True,
) -> dict:
    """Writes showers (grids, energies, overflow and point clouds) to an HDF5 file.

    Args:
      path: the output file.
      showers: simulated showers.
      config: the configuration that made them (default: the reference one).
      drop_empty: drop showers with an empty layer, as the reference does.

    Returns:
      ``{"n_simulated", "n_kept", "dropped_fraction"}``.

    Example:
      >>> import pathlib, tempfile, jax
      >>> from jaxgen.data.showers import read_hdf5, simulate, write_hdf5
      >>> showers = simulate(jax.random.key(0), 100)
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "showers.h5"
      >>> info = write_hdf5(path, showers, drop_empty=False)
      >>> back, grids, meta = read_hdf5(path)
      >>> bool((back.counts == showers.counts).all())
      True
    """
    config = ShowerConfig() if config is None else config
    keep = np.asarray(showers.kept) if drop_empty else np.ones(showers.energy.shape[0], bool)
    with _atomic_h5(pathlib.Path(path)) as f:
        _append(f, _arrays(showers, config, keep))
        return _write_attrs(f, config, int(keep.size), int(keep.sum()), drop_empty)


def _write_attrs(f: h5py.File, config: ShowerConfig, n: int, kept: int, drop: bool) -> dict:
    info = {"n_simulated": n, "n_kept": kept, "dropped_fraction": 1.0 - kept / max(n, 1)}
    f.attrs["config"] = json.dumps(dataclasses.asdict(config))
    f.attrs["drop_empty"] = drop
    for k, v in info.items():
        f.attrs[k] = v
    return info


def generate_hdf5(
    path: str | os.PathLike,
    key: jax.Array,
    n: int,
    config: ShowerConfig | None = None,
    *,
    chunk_size: int = 50_000,
    drop_empty: bool = True,
) -> dict:
    """Simulates ``n`` showers in chunks and streams them to one HDF5 file.

    Memory stays bounded by one chunk. Shower ``i`` uses ``fold_in(key, i)``, so the file
    does not depend on ``chunk_size``.

    Args:
      path: the output file.
      key: a PRNG key.
      n: number of showers to simulate (>= 1); with ``drop_empty`` fewer are written.
      config: the process rules (default: the reference configuration).
      chunk_size: showers simulated per call (>= 1).
      drop_empty: drop showers with an empty layer, as the reference does.

    Returns:
      ``{"n_simulated", "n_kept", "dropped_fraction"}``.

    Raises:
      ValueError: for a bad ``n`` or ``chunk_size``.

    Example:
      >>> import pathlib, tempfile, jax
      >>> from jaxgen.data.showers import generate_hdf5, read_hdf5
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "showers.h5"
      >>> _ = generate_hdf5(path, jax.random.key(0), 60, chunk_size=25, drop_empty=False)
      >>> showers, grids, meta = read_hdf5(path)      # streamed in three chunks
      >>> showers.energy.shape
      (60,)
    """
    config = ShowerConfig() if config is None else config
    for name, v in (("n", n), ("chunk_size", chunk_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be an int >= 1; got {v!r}.")
    kept = 0
    with _atomic_h5(pathlib.Path(path)) as f:
        for start in range(0, n, chunk_size):
            size = min(chunk_size, n - start)
            showers = simulate(key, size, config, first_index=start)
            keep = np.asarray(showers.kept) if drop_empty else np.ones(size, bool)
            _append(f, _arrays(showers, config, keep))
            kept += int(keep.sum())
        return _write_attrs(f, config, n, kept, drop_empty)


def read_hdf5(path: str | os.PathLike) -> tuple[Showers, dict[str, np.ndarray], dict]:
    """Reads a file written by ``write_hdf5`` or ``generate_hdf5``, checking its schema.

    The configuration attribute fixes the layers and grids; every dataset must be there
    with its dtype kind and a shape that agrees with the configuration and with the
    number of showers ``n`` (rows of ``energy``); float data must be finite and counts
    non-negative. Other datasets are ignored.

    Returns:
      ``(showers, grids, attrs)``: the ``Showers`` (numpy arrays; mask rebuilt from the
      counts), a dict with ``layer_k``, ``energy`` and ``overflow``, and the attributes
      (with ``config`` as a ``ShowerConfig``).

    Raises:
      ValueError: naming the file, the dataset and the problem, for a missing, empty,
        truncated or non-HDF5 file, a missing or unreadable ``config``, unknown or
        invalid configuration fields, and missing datasets, wrong dtypes or shapes.
    """
    with open_hdf5(path) as f:
        attrs = dict(f.attrs)
        config = _read_config(path, attrs)
        n_layers = len(config.grid_bins)
        read = functools.partial(read_dataset, f, path)
        energy = read("energy", kind="f", shape=(None, 1))
        n = energy.shape[0]
        grids = {
            f"layer_{k}": read(f"layer_{k}", kind="f", shape=(n, *bins))
            for k, bins in enumerate(config.grid_bins)
        }
        extra = sorted(k for k in f if k.startswith("layer_") and k not in grids)
        if extra:
            raise file_error(path, f"the configuration has {n_layers} layer(s) but the file "
                             f"also holds {extra}", part="config")
        overflow = read("overflow", kind="f", shape=(n, n_layers))
        points = read("points", kind="f", shape=(n, n_layers, None, 3))
        counts = read("counts", kind="iu", shape=(n, n_layers))
        escaped = read("escaped", kind="f", shape=(n,))
        unread = read("unread", kind="f", shape=(n,))
    if (counts < 0).any():
        raise file_error(path, "negative point counts", part="counts")
    if "n_kept" in attrs and int(attrs["n_kept"]) != n:
        raise file_error(path, f"the file holds {n} showers but its attribute says "
                         f"{int(attrs['n_kept'])} were written", part="n_kept")
    attrs["config"] = config
    p = points.shape[2]
    mask = np.arange(p) < np.minimum(counts, p)[..., None]
    showers = Showers(points, mask, counts, energy[:, 0], escaped, unread)
    grids["energy"] = energy
    grids["overflow"] = overflow
    return showers, grids, attrs


def _read_config(path: str | os.PathLike, attrs: dict) -> ShowerConfig:
    if "config" not in attrs:
        raise file_error(path, "the attribute is missing", part="config")
    try:
        raw = attrs["config"]
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError, UnicodeDecodeError) as e:
        raise file_error(path, f"the attribute is not JSON ({e})", part="config") from None
    if not isinstance(cfg, dict):
        raise file_error(path, f"the attribute is not a JSON object; got {cfg!r:.80}",
                         part="config")
    fields = {fl.name for fl in dataclasses.fields(ShowerConfig)}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise file_error(path, f"unknown field(s) {unknown}; a ShowerConfig has "
                         f"{sorted(fields)}", part="config")
    try:
        return ShowerConfig(**{k: _tuples(v) for k, v in cfg.items()})
    except (TypeError, ValueError) as e:
        raise file_error(path, f"invalid configuration: {e}", part="config") from None


def _tuples(v: object) -> object:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v
