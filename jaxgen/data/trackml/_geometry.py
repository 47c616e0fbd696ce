"""The TrackML detector geometry: modules, layers, global <-> local coordinates.

A module is a planar silicon sensor: ``x_global = R @ (u, v, w) + c`` with ``w`` normal
to the sensor; the sensitive area is the trapezoid ``|v| <= hv``,
``|u| <= minhu + (maxhu - minhu) (v + hv) / (2 hv)`` (a rectangle when ``minhu ==
maxhu``), ``|w| <= t / 2``. Cells are a grid of ``pitch_u x pitch_v`` cells over the
bounding rectangle ``[-maxhu, maxhu] x [-hv, hv]``: ``ch0 = floor((u + maxhu) / pitch_u)``,
``ch1 = floor((v + hv) / pitch_v)``. Modules are grouped into layers by
``(volume_id, layer_id)``; barrel layers (volumes 8, 13, 17) are cylinders around the
beam (z) axis, the others are disks at fixed z.

References: Amrouche et al., "The Tracking Machine Learning challenge: Accuracy phase",
arXiv:1904.06778 (detector description and ``detectors.csv``).
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from jaxgen.data._files import parse_csv
from jaxgen.data._files import read_text
from jaxgen.data.trackml._event import write_table

DETECTOR_COLUMNS = (
    "volume_id", "layer_id", "module_id", "cx", "cy", "cz",
    "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw", "rot_zu", "rot_zv", "rot_zw",
    "module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v",
)
BARREL_VOLUMES = (8, 13, 17)
PIXEL_VOLUMES = (7, 8, 9)


class Detector(NamedTuple):
    """All modules, sorted by ``(volume_id, layer_id, module_id)``; shape ``(m,)`` unless noted.

    ``rotation[i]`` is the ``(3, 3)`` matrix whose columns are the module's local u, v, w
    axes in global coordinates.
    """

    volume_id: np.ndarray  # int32
    layer_id: np.ndarray  # int32
    module_id: np.ndarray  # int32
    center: np.ndarray  # (m, 3) float64, mm
    rotation: np.ndarray  # (m, 3, 3) float64
    thickness: np.ndarray  # float64, mm
    min_hu: np.ndarray
    max_hu: np.ndarray
    hv: np.ndarray
    pitch_u: np.ndarray
    pitch_v: np.ndarray

    @property
    def layer_index(self) -> np.ndarray:
        """``(m,)`` index of each module's layer in ``layers(self)`` order."""
        key = self.volume_id.astype(np.int64) * 1000 + self.layer_id
        return np.unique(key, return_inverse=True)[1]


def default_detector_path() -> pathlib.Path:
    """Path of the packaged ``detectors.csv.gz`` (the real TrackML geometry)."""
    return pathlib.Path(str(importlib.resources.files(__package__) / "detectors.csv.gz"))


def read_detector(path: str | os.PathLike | None = None) -> Detector:
    """Reads ``detectors.csv`` (plain or gzip); default: the packaged real geometry.

    Raises:
      ValueError: naming the file, for a damaged or empty file, missing columns, rows of
        another width, unparsable or non-finite values,
        duplicated module ids or impossible sizes (thickness, half-lengths, pitches <= 0).

    Example:
      >>> from jaxgen.data import trackml
      >>> det = trackml.read_detector()          # the packaged real TrackML geometry
      >>> det.volume_id.shape, det.rotation.shape[1:]
      ((18728,), (3, 3))
    """
    path = default_detector_path() if path is None else pathlib.Path(path)
    cols = parse_csv(path, read_text(path), dict.fromkeys(DETECTOR_COLUMNS, np.float64),
                     finite=DETECTOR_COLUMNS, table="detector")
    a = np.stack([cols[c] for c in DETECTOR_COLUMNS], axis=1)
    order = np.lexsort((a[:, 2], a[:, 1], a[:, 0]))
    a = a[order]
    ids = a[:, :3].astype(np.int64)
    if len(ids) > 1 and (np.diff(ids, axis=0) == 0).all(axis=1).any():
        raise ValueError(f"{path.name}: duplicated (volume_id, layer_id, module_id).")
    if (a[:, 15:] <= 0).any():
        raise ValueError(f"{path.name}: thickness, half-lengths and pitches must be > 0.")
    return Detector(
        volume_id=ids[:, 0].astype(np.int32), layer_id=ids[:, 1].astype(np.int32),
        module_id=ids[:, 2].astype(np.int32), center=a[:, 3:6].copy(),
        rotation=a[:, 6:15].reshape(-1, 3, 3).copy(), thickness=a[:, 15].copy(),
        min_hu=a[:, 16].copy(), max_hu=a[:, 17].copy(), hv=a[:, 18].copy(),
        pitch_u=a[:, 19].copy(), pitch_v=a[:, 20].copy(),
    )


class _DetectorTable(NamedTuple):
    volume_id: np.ndarray
    layer_id: np.ndarray
    module_id: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    cz: np.ndarray
    rot_xu: np.ndarray
    rot_xv: np.ndarray
    rot_xw: np.ndarray
    rot_yu: np.ndarray
    rot_yv: np.ndarray
    rot_yw: np.ndarray
    rot_zu: np.ndarray
    rot_zv: np.ndarray
    rot_zw: np.ndarray
    module_t: np.ndarray
    module_minhu: np.ndarray
    module_maxhu: np.ndarray
    module_hv: np.ndarray
    pitch_u: np.ndarray
    pitch_v: np.ndarray


def write_detector(path: str | os.PathLike, detector: Detector) -> pathlib.Path:
    """Writes ``detectors.csv`` (gzip if the name ends in ``.gz``), atomically."""
    r = detector.rotation.reshape(-1, 9)
    cols = [detector.volume_id, detector.layer_id, detector.module_id,
            *detector.center.T, *r.T, detector.thickness, detector.min_hu, detector.max_hu,
            detector.hv, detector.pitch_u, detector.pitch_v]
    cols = [np.asarray(c) for c in cols]
    # float64 columns: write float32-exact text only if lossless, else full precision.
    table = _DetectorTable(*[c if c.dtype.kind in "iu" else _as_text_float(c) for c in cols])
    return write_table(path, table)


def _as_text_float(a: np.ndarray) -> np.ndarray:
    f32 = a.astype(np.float32)
    return f32 if np.array_equal(f32.astype(np.float64), a) else a


def module_index(detector: Detector, volume_id: ArrayLike, layer_id: ArrayLike,
                 module_id: ArrayLike) -> np.ndarray:
    """Row of each ``(volume_id, layer_id, module_id)`` in ``detector``; shapes ``(n,)``.

    Raises:
      ValueError: if a module id is not in the detector.

    Example:
      >>> from jaxgen.data import trackml
      >>> det = trackml.read_detector()
      >>> i = trackml.module_index(det, det.volume_id[[5, 9]], det.layer_id[[5, 9]],
      ...                          det.module_id[[5, 9]])
      >>> i.tolist()
      [5, 9]
    """
    key = (detector.volume_id.astype(np.int64) * 100 + detector.layer_id) * 100000 \
        + detector.module_id
    q = (np.asarray(volume_id, np.int64) * 100 + np.asarray(layer_id)) * 100000 \
        + np.asarray(module_id)
    pos = np.clip(np.searchsorted(key, q), 0, len(key) - 1)
    bad = key[pos] != q
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"unknown module (volume_id, layer_id, module_id) = "
            f"({np.ravel(volume_id)[i]}, {np.ravel(layer_id)[i]}, {np.ravel(module_id)[i]})."
        )
    return pos


def _xp(*arrays):
    return jnp if any(isinstance(a, jnp.ndarray) for a in arrays) else np


def global_to_local(detector: Detector, index: ArrayLike, xyz: ArrayLike) -> jnp.ndarray:
    """Local ``(u, v, w)`` of global points on the given modules.

    Args:
      detector: the geometry.
      index: ``(n,)`` module rows.
      xyz: ``(n, 3)`` global points (mm).

    Returns:
      ``(n, 3)`` local coordinates ``R^T (x - c)``.

    Example:
      A module's centre is the origin of its local frame, and the round trip is exact:

      >>> import numpy as np
      >>> from jaxgen.data import trackml
      >>> det = trackml.read_detector()
      >>> uvw = trackml.global_to_local(det, np.array([0, 100]), det.center[[0, 100]])
      >>> bool(np.allclose(uvw, 0.0, atol=1e-3))
      True
      >>> local = np.array([[1.0, 2.0, 0.0]] * 2)
      >>> back = trackml.local_to_global(det, np.array([0, 100]), local)
      >>> again = trackml.global_to_local(det, np.array([0, 100]), back)
      >>> bool(np.allclose(again, local, atol=1e-3))
      True
    """
    xp = _xp(index, xyz)
    r = xp.asarray(detector.rotation)[index]
    c = xp.asarray(detector.center)[index]
    return xp.einsum("nji,nj->ni", r, xp.asarray(xyz) - c)


def local_to_global(detector: Detector, index: ArrayLike, uvw: ArrayLike) -> jnp.ndarray:
    """Global points ``R (u, v, w) + c`` of local ``(n, 3)`` points on modules ``index``."""
    xp = _xp(index, uvw)
    r = xp.asarray(detector.rotation)[index]
    c = xp.asarray(detector.center)[index]
    return xp.einsum("nij,nj->ni", r, xp.asarray(uvw)) + c


def half_length_u(min_hu: ArrayLike, max_hu: ArrayLike, hv: ArrayLike,
                  v: ArrayLike) -> jnp.ndarray:
    """Trapezoid half-length along u at local ``v`` (``min_hu`` at -hv, ``max_hu`` at +hv)."""
    return min_hu + (max_hu - min_hu) * (v + hv) / (2.0 * hv)


def inside_module(detector: Detector, index: ArrayLike, uvw: ArrayLike,
                  tolerance: float = 0.0) -> jnp.ndarray:
    """Whether local points lie in the module's sensor volume (``(n,)`` bool).

    ``tolerance`` (mm) widens the bounds in u and v; w must satisfy ``|w| <= t/2 + tol``.
    """
    xp = _xp(index, uvw)
    uvw = xp.asarray(uvw)
    hv = xp.asarray(detector.hv)[index]
    hu = half_length_u(xp.asarray(detector.min_hu)[index], xp.asarray(detector.max_hu)[index],
                       hv, uvw[:, 1])
    t = xp.asarray(detector.thickness)[index]
    return ((xp.abs(uvw[:, 0]) <= hu + tolerance) & (xp.abs(uvw[:, 1]) <= hv + tolerance)
            & (xp.abs(uvw[:, 2]) <= 0.5 * t + tolerance))


class Layers(NamedTuple):
    """Per layer (``(L,)`` each, sorted by volume then layer) and its module search grid.

    A layer is idealised as a cylinder of radius ``position`` (barrels) or a disk at
    ``z = position``; ``smin, smax`` bound the other coordinate (z for barrels, r for
    disks). The grid bins (phi, s) on that surface; ``grid[offset + i_phi * n_s + i_s]``
    lists up to ``K`` module rows (``-1`` padded) whose area, seen from the beam spot,
    overlaps the bin.
    """

    volume_id: np.ndarray
    layer_id: np.ndarray
    barrel: np.ndarray  # bool
    position: np.ndarray  # float64
    smin: np.ndarray
    smax: np.ndarray
    n_phi: np.ndarray  # int32
    n_s: np.ndarray
    offset: np.ndarray
    grid: np.ndarray  # (total bins, K) int32


def _module_outline(det: Detector, i: np.ndarray, n_edge: int = 9) -> np.ndarray:
    """Points (m, P, 3) on the outline of modules ``i`` at w = +-t/2."""
    s = np.linspace(-1.0, 1.0, n_edge)
    hv = det.hv[i][:, None]
    pts = []
    for vs in (-1.0, 1.0):
        v = vs * hv
        hu = det.min_hu[i][:, None] + (det.max_hu[i] - det.min_hu[i])[:, None] * (v + hv) / (2 * hv)
        pts.append(np.stack([s[None] * hu, np.broadcast_to(v, (len(i), n_edge))], -1))
    for us in (-1.0, 1.0):
        v = s[None] * hv
        hu = det.min_hu[i][:, None] + (det.max_hu[i] - det.min_hu[i])[:, None] * (v + hv) / (2 * hv)
        pts.append(np.stack([us * hu, v], -1))
    uv = np.concatenate(pts, 1)
    out = []
    for ws in (-0.5, 0.5):
        w = np.broadcast_to((ws * det.thickness[i])[:, None, None], uv[..., :1].shape)
        uvw = np.concatenate([uv, w], -1)
        out.append(np.einsum("mij,mpj->mpi", det.rotation[i], uvw) + det.center[i][:, None])
    return np.concatenate(out, 1)


def build_layers(detector: Detector, margin: float = 3.0, density: float = 2.0) -> Layers:
    """Groups modules into layers and builds each layer's (phi, s) module search grid.

    Args:
      detector: the geometry.
      margin: extra width (mm) around each module's projected outline.
      density: grid bins per module along each direction.

    Returns:
      The ``Layers`` table.
    """
    lay_idx = detector.layer_index
    n_layers = int(lay_idx.max()) + 1
    rows = {k: [] for k in Layers._fields if k != "grid"}
    grids, offset = [], 0
    for li in range(n_layers):
        m = np.flatnonzero(lay_idx == li)
        vol = int(detector.volume_id[m[0]])
        barrel = vol in BARREL_VOLUMES
        c = detector.center[m]
        rc = np.hypot(c[:, 0], c[:, 1])
        pos = float(rc.mean() if barrel else c[:, 2].mean())
        pts = _module_outline(detector, m)
        r = np.hypot(pts[..., 0], pts[..., 1])
        # Project the outline onto the ideal surface along rays from the origin.
        if barrel:
            s = pts[..., 2] * pos / r
        else:
            s = r * pos / pts[..., 2]
        phi = np.arctan2(pts[..., 1], pts[..., 0])
        phic = np.arctan2(c[:, 1], c[:, 0])[:, None]
        dphi = np.angle(np.exp(1j * (phi - phic)))
        radius = pos if barrel else np.maximum(s, 1.0)
        dphi_m = margin / radius
        phi_lo = (phic + dphi - dphi_m).min(1)
        phi_hi = (phic + dphi + dphi_m).max(1)
        s_lo, s_hi = s.min(1) - margin, s.max(1) + margin
        smin, smax = float(s_lo.min()), float(s_hi.max())
        n_phi_mod = len(np.unique(np.round(phic[:, 0], 2))) if barrel else None
        mean_dphi = float(np.min(phi_hi - phi_lo))
        n_phi = max(1, int(np.ceil(density * 2 * np.pi / mean_dphi)))
        if n_phi_mod is not None:
            n_phi = max(n_phi, int(density * n_phi_mod))
        s_density = density if barrel else 3.0 * density
        n_s = max(1, int(np.ceil(s_density * (smax - smin) / float(np.min(s_hi - s_lo)))))
        cells: list[list[int]] = [[] for _ in range(n_phi * n_s)]
        wphi = 2 * np.pi / n_phi
        ws = (smax - smin) / n_s
        for k, mi in enumerate(m):
            p0 = int(np.floor(phi_lo[k] / wphi))
            p1 = int(np.floor(phi_hi[k] / wphi))
            s0 = max(0, int(np.floor((s_lo[k] - smin) / ws)))
            s1 = min(n_s - 1, int(np.floor((s_hi[k] - smin) / ws)))
            for p in range(p0, p1 + 1):
                for q in range(s0, s1 + 1):
                    cells[(p % n_phi) * n_s + q].append(int(mi))
        grids.append(cells)
        for k, v in (("volume_id", vol), ("layer_id", int(detector.layer_id[m[0]])),
                     ("barrel", barrel), ("position", pos), ("smin", smin), ("smax", smax),
                     ("n_phi", n_phi), ("n_s", n_s), ("offset", offset)):
            rows[k].append(v)
        offset += n_phi * n_s
    k_max = max(len(c) for cells in grids for c in cells)
    grid = np.full((offset, k_max), -1, np.int32)
    i = 0
    for cells in grids:
        for c in cells:
            grid[i, :len(c)] = c
            i += 1
    return Layers(
        volume_id=np.array(rows["volume_id"], np.int32),
        layer_id=np.array(rows["layer_id"], np.int32),
        barrel=np.array(rows["barrel"], bool),
        position=np.array(rows["position"]), smin=np.array(rows["smin"]),
        smax=np.array(rows["smax"]), n_phi=np.array(rows["n_phi"], np.int32),
        n_s=np.array(rows["n_s"], np.int32), offset=np.array(rows["offset"], np.int32),
        grid=grid,
    )


def candidate_modules(layers: Layers, layer: ArrayLike, xyz: ArrayLike) -> jnp.ndarray:
    """Module rows to test for points near a layer's surface (``(n, K)``, -1 padded).

    Args:
      layers: from ``build_layers``.
      layer: ``(n,)`` layer index of each point.
      xyz: ``(n, 3)`` points on (or near) that layer's ideal surface.
    """
    xp = _xp(layer, xyz)
    xyz = xp.asarray(xyz)
    layer = xp.asarray(layer)
    barrel = xp.asarray(layers.barrel)[layer]
    r = xp.hypot(xyz[:, 0], xyz[:, 1])
    s = xp.where(barrel, xyz[:, 2], r)
    phi = xp.arctan2(xyz[:, 1], xyz[:, 0])
    n_phi = xp.asarray(layers.n_phi)[layer]
    n_s = xp.asarray(layers.n_s)[layer]
    smin = xp.asarray(layers.smin, dtype=xyz.dtype)[layer]
    smax = xp.asarray(layers.smax, dtype=xyz.dtype)[layer]
    ip = xp.floor(phi / (2 * np.pi) * n_phi).astype(xp.int32) % n_phi
    is_ = xp.floor((s - smin) / (smax - smin) * n_s).astype(xp.int32)
    outside = (is_ < 0) | (is_ >= n_s)
    b = xp.asarray(layers.offset)[layer] + ip * n_s + xp.clip(is_, 0, n_s - 1)
    cand = xp.asarray(layers.grid)[b]
    return xp.where(outside[:, None], -1, cand)


def find_module(detector: Detector, layers: Layers, xyz: ArrayLike,
                tolerance: float = 0.0) -> np.ndarray:
    """The module containing each global point, or -1 (vectorised; ``(n,)`` int).

    A point belongs to a module if its local coordinates lie inside the sensor volume
    (see ``inside_module``); the point's layer is the one whose ideal surface is nearest.
    """
    xyz = np.asarray(xyz, np.float64)
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    barrel = layers.barrel[None]
    dist = np.where(barrel, np.abs(r[:, None] - layers.position[None]),
                    np.abs(xyz[:, 2:3] - layers.position[None]))
    in_range = np.where(barrel, (xyz[:, 2:3] >= layers.smin) & (xyz[:, 2:3] <= layers.smax),
                        (r[:, None] >= layers.smin) & (r[:, None] <= layers.smax))
    dist = np.where(in_range, dist, np.inf)
    layer = np.argmin(dist, 1)
    cand = candidate_modules(layers, layer, xyz)
    n, k = cand.shape
    idx = np.maximum(cand, 0).reshape(-1)
    uvw = global_to_local(detector, idx, np.repeat(xyz, k, 0))
    ok = inside_module(detector, idx, uvw, tolerance).reshape(n, k) & (cand >= 0)
    first = np.argmax(ok, 1)
    return np.where(ok.any(1), cand[np.arange(n), first], -1)
