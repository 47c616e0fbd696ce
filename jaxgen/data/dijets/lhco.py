"""Real LHC Olympics 2020 R&D events (arXiv:2101.08320), packaged, with readers and injection.

Two samples are packaged in ``lhco_rnd.npz`` (float32, lossless to 6e-8 relative for
these features; provenance in ``DATA.md`` and ``PROVENANCE``):

- the CATHODE signal-region files (arXiv:2109.00546; 3.3 < mjj < 3.7 TeV only): ``load_sr``
  with ``split="train"`` (60,000 events, 0.66 % signal, the default injection),
  ``"val"`` (60,000, 0.62 %) and ``"signal"`` (27,263 signal-only events); 4 features
  (m_J1, Delta m_J, tau21_J1, tau21_J2);
- the first 100,000 events of the R&D file over the whole mjj range (9.06 % signal,
  to be subsampled with ``inject``): ``load_full_mjj``; 5 features (the four above and
  Delta R_jj). Its tau21 were computed by another clustering and are ~0.04 higher than
  the CATHODE files': do not mix the two samples' tau21 in one training.

``read_lhco_file`` reads the original ``.npy``/``.npy.gz`` files of either layout and
rejects malformed ones (wrong width, NaN, labels other than 0/1, SR files with events
outside the SR) with a ``ValueError`` naming the file and the problem.
"""

from __future__ import annotations

import functools
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.data._files import file_error
from jaxgen.data._files import read_bytes
from jaxgen.data._files import reading
from jaxgen.data.dijets.generator import DijetEvents
from jaxgen.data.dijets.generator import check_events
from jaxgen.data.dijets.regions import Regions

_PATH = pathlib.Path(__file__).with_name("lhco_rnd.npz")

#: Columns (mjj, features..., label) of each layout.
LAYOUTS = {"sr": 6, "full": 7}

PROVENANCE = {
    "sr": (
        "LHC Olympics 2020 R&D (arXiv:2101.08320), signal-region features of CATHODE "
        "(arXiv:2109.00546), produced by run_data_preparation_LHCORD.py of "
        "HEPML-AnomalyDetection/CATHODE (separated_data/) from "
        "events_anomalydetection_v2.features.h5 and the extra-QCD sample."
    ),
    "full": (
        "First 100,000 events of the LHC Olympics 2020 R&D file events_anomalydetection.h5 "
        "(arXiv:2101.08320); features derived from the per-jet scalars of "
        "imdinu/clustering-lhco (commit 8c8ff4ea, tmp/scalars_{bkg,sig}*.h5), tau21 "
        "recomputed as tau2 / (tau1 + 1e-5)."
    ),
}

_SPLITS = {"train": "sr_train", "val": "sr_val", "signal": "sr_signal"}


def _validate(path, a: np.ndarray, layout: str, part: str | None = None) -> np.ndarray:
    width = LAYOUTS[layout]
    if a.ndim != 2 or a.shape[1] != width:
        raise file_error(path, f"shape {a.shape}; expected (N, {width}) for the {layout!r} "
                         "layout", part=part)
    if a.shape[0] == 0:
        raise file_error(path, "holds no events", part=part)
    if a.dtype.kind != "f":
        raise file_error(path, f"dtype {a.dtype} is not floating point", part=part)
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise file_error(path, f"{int(bad.sum())} NaN/inf value(s) (first at row {row}, "
                         f"column {col})", part=part)
    labels = a[:, -1]
    odd = (labels != 0) & (labels != 1)
    if odd.any():
        raise file_error(path, f"labels (last column) must be 0 or 1; found "
                         f"{sorted(set(np.unique(labels[odd]).tolist()))[:5]}", part=part)
    if (a[:, 0] <= 0).any():
        raise file_error(path, "mjj (column 0) must be > 0", part=part)
    if layout == "sr":
        r = Regions()
        out = (a[:, 0] < r.sr[0]) | (a[:, 0] >= r.sr[1])
        if out.any():
            raise file_error(path, f"{int(out.sum())} event(s) outside the signal region "
                             f"{r.sr} TeV in a signal-region ('sr') file", part=part)
    return a


def _events(a: np.ndarray) -> DijetEvents:
    return DijetEvents(jnp.asarray(a[:, 0], jnp.float32), jnp.asarray(a[:, 1:-1], jnp.float32),
                       jnp.asarray(a[:, -1], jnp.int32))


def read_lhco_file(path: str | os.PathLike, layout: str = "sr") -> DijetEvents:
    """Reads an LHCO R&D feature file (``.npy`` or gzip ``.npy.gz``) of either layout.

    Args:
      path: the file.
      layout: ``"sr"`` (CATHODE signal-region files, ``(N, 6)``: mjj, m_J1, Delta m_J,
        tau21_J1, tau21_J2, label) or ``"full"`` (``(N, 7)``: the same and Delta R_jj
        before the label).

    Returns:
      ``DijetEvents`` (float32 features, int32 labels).

    Raises:
      ValueError: naming the file, if it is missing, damaged, not a ``.npy``, of another
        width, holds NaN/inf, labels other than 0/1, mjj <= 0, or (``"sr"``) events
        outside 3.3 <= mjj < 3.7 TeV.

    Example:
      >>> import tempfile, numpy as np
      >>> p = tempfile.mkdtemp() + "/bad.npy"
      >>> np.save(p, np.full((2, 6), 3.5))
      >>> read_lhco_file(p)
      Traceback (most recent call last):
      ...
      ValueError: ...bad.npy: labels (last column) must be 0 or 1; found [3.5]
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {list(LAYOUTS)}; got {layout!r}.")
    path = pathlib.Path(path)
    raw = read_bytes(path)
    with reading(path):
        if not raw.startswith(b"\x93NUMPY"):
            raise file_error(path, "is not a NumPy .npy file (no .npy header)")
        import io

        try:
            a = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as e:
            raise file_error(path, f"the .npy data are damaged or truncated ({e})") from None
    return _events(_validate(path, a, layout))


@functools.cache
def _packaged(name: str) -> np.ndarray:
    with reading(_PATH, part=name), np.load(_PATH) as f:
        if name not in f:
            raise file_error(_PATH, "the array is missing", part=name)
        a = f[name]
    return _validate(_PATH, a, "full" if name == "full_mjj" else "sr", part=name)


def load_sr(split: str = "train") -> DijetEvents:
    """The CATHODE signal-region events of the LHCO R&D data (packaged).

    Args:
      split: ``"train"`` (60,000 events, 0.66 % signal: "data" at the default injection,
        S/B ~ 6.4e-3), ``"val"`` (60,000, 0.62 %, a second such mixture) or ``"signal"``
        (27,263 signal-only events).

    Returns:
      ``DijetEvents`` with ``features`` ``(N, 4)``: m_J1, Delta m_J, tau21_J1, tau21_J2.

    Example:
      >>> ev = load_sr("train")
      >>> ev.features.shape, int(ev.labels.sum())
      ((60000, 4), 395)
    """
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {list(_SPLITS)}; got {split!r}.")
    return _events(_packaged(_SPLITS[split]))


def load_full_mjj() -> DijetEvents:
    """The first 100,000 LHCO R&D events over the whole mjj range (packaged; 9.06 % signal).

    Returns:
      ``DijetEvents`` with ``features`` ``(100000, 5)``: m_J1, Delta m_J, tau21_J1,
      tau21_J2, Delta R_jj. Subsample the signal with ``inject``.

    Example:
      >>> ev = load_full_mjj()
      >>> ev.features.shape, int(ev.labels.sum())
      ((100000, 5), 9059)
    """
    return _events(_packaged("full_mjj"))


def inject(
    events: DijetEvents,
    key: jax.Array,
    *,
    n_signal: int | None = None,
    s_over_b: float | None = None,
    regions: Regions | None = None,
) -> DijetEvents:
    """All background events of ``events`` plus a random subset of its labelled signal.

    Makes any injection from a labelled sample such as ``load_full_mjj()``: give the
    number of signal events to keep, or the S/B wanted in the signal region (the count
    is then ``round(s_over_b * B_SR / f_SR)`` with ``B_SR`` the background in the SR and
    ``f_SR`` the fraction of the labelled signal that lies in it). Not jit-able.

    Raises:
      ValueError: for both or neither of ``n_signal``/``s_over_b``, a negative value, or
        more signal requested than ``events`` holds.

    Example:
      >>> ev = inject(load_full_mjj(), jax.random.PRNGKey(0), n_signal=300)
      >>> int(ev.labels.sum()), ev.labels.shape[0]
      (300, 91241)
    """
    check_events(events)
    if (n_signal is None) == (s_over_b is None):
        raise ValueError("give exactly one of `n_signal` and `s_over_b`.")
    labels = np.asarray(events.labels)
    sig = np.flatnonzero(labels == 1)
    if s_over_b is not None:
        if not (s_over_b >= 0 and np.isfinite(s_over_b)):
            raise ValueError(f"`s_over_b` must be >= 0; got {s_over_b!r}.")
        r = Regions() if regions is None else regions
        in_sr = np.asarray(r.in_sr(events.mjj))
        if sig.size == 0 or not in_sr[sig].any():
            raise ValueError("`events` holds no labelled signal in the signal region.")
        n_signal = int(round(s_over_b * np.sum(in_sr & (labels == 0)) / in_sr[sig].mean()))
    if not isinstance(n_signal, int | np.integer) or n_signal < 0:
        raise ValueError(f"`n_signal` must be an integer >= 0; got {n_signal!r}.")
    if n_signal > sig.size:
        raise ValueError(f"`n_signal`={n_signal} exceeds the {sig.size} signal events of "
                         "`events`.")
    keep = np.asarray(jax.random.choice(key, sig.size, (n_signal,), replace=False))
    idx = np.sort(np.concatenate([np.flatnonzero(labels == 0), sig[keep]]))
    return jax.tree_util.tree_map(lambda a: a[idx], events)
