"""TrackML event files: typed arrays, reading and writing (plain or gzip CSV).

The formats are those of the TrackML Particle Tracking Challenge (Amrouche et al.,
arXiv:1904.06778; Throughput phase arXiv:2105.01160), as read by the challenge's
``trackml-library``. An event ``eventNNNNNNNNN`` has up to four files ``-hits``,
``-cells``, ``-particles`` and ``-truth`` (``.csv`` or ``.csv.gz``); a submission is one
``event_id, hit_id, track_id`` file. Every table is a ``NamedTuple`` of 1-D numpy arrays
(struct of arrays, one row per entry), with the library's dtypes: ids are integers,
coordinates and momenta ``float32``. Particle ids are ``int64``.

Writing uses the shortest text that reads back to the same ``float32``, so
``read_event(write_event(event))`` equals ``event`` exactly.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import re
from collections.abc import Iterable
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxgen.data._files import parse_csv
from jaxgen.data._files import read_text
from jaxgen.io import atomic_open

PARTS = ("hits", "cells", "particles", "truth")


class Hits(NamedTuple):
    """Measured hits, shape ``(n,)`` each. Positions in mm (global frame)."""

    hit_id: np.ndarray  # int32
    x: np.ndarray  # float32
    y: np.ndarray
    z: np.ndarray
    volume_id: np.ndarray  # int32
    layer_id: np.ndarray
    module_id: np.ndarray


class Cells(NamedTuple):
    """Active cells of the hits' clusters, shape ``(m,)`` each (several rows per hit)."""

    hit_id: np.ndarray  # int32
    ch0: np.ndarray  # int32, cell index along the module's u axis
    ch1: np.ndarray  # int32, cell index along v
    value: np.ndarray  # float32, deposited charge (1 for binary strip read-out)


class Particles(NamedTuple):
    """Generated particles, shape ``(p,)`` each.

    ``particle_type`` is ``None`` when the file has no such column (the accuracy-phase
    release).
    """

    particle_id: np.ndarray  # int64
    particle_type: np.ndarray | None  # int32 (PDG code)
    vx: np.ndarray  # float32, mm
    vy: np.ndarray
    vz: np.ndarray
    px: np.ndarray  # float32, GeV/c
    py: np.ndarray
    pz: np.ndarray
    q: np.ndarray  # int32
    nhits: np.ndarray  # int32


class Truth(NamedTuple):
    """Truth per hit, shape ``(n,)`` each; ``particle_id == 0`` marks noise."""

    hit_id: np.ndarray  # int32
    particle_id: np.ndarray  # int64
    tx: np.ndarray  # float32, true intersection (mm)
    ty: np.ndarray
    tz: np.ndarray
    tpx: np.ndarray  # float32, true momentum at the hit (GeV/c)
    tpy: np.ndarray
    tpz: np.ndarray
    weight: np.ndarray  # float32, score weight


class Event(NamedTuple):
    """One event: its id and the tables that were read (``None`` where absent)."""

    event_id: int
    hits: Hits
    cells: Cells | None = None
    particles: Particles | None = None
    truth: Truth | None = None


class Submission(NamedTuple):
    """A submission: one row per hit, shape ``(n,)`` each (int64)."""

    event_id: np.ndarray
    hit_id: np.ndarray
    track_id: np.ndarray


_I32, _I64, _F32 = np.dtype("int32"), np.dtype("int64"), np.dtype("float32")
SCHEMAS: dict[str, dict[str, np.dtype]] = {
    "hits": {
        "hit_id": _I32, "x": _F32, "y": _F32, "z": _F32,
        "volume_id": _I32, "layer_id": _I32, "module_id": _I32,
    },
    "cells": {"hit_id": _I32, "ch0": _I32, "ch1": _I32, "value": _F32},
    "particles": {
        "particle_id": _I64, "particle_type": _I32,
        "vx": _F32, "vy": _F32, "vz": _F32, "px": _F32, "py": _F32, "pz": _F32,
        "q": _I32, "nhits": _I32,
    },
    "truth": {
        "hit_id": _I32, "particle_id": _I64, "tx": _F32, "ty": _F32, "tz": _F32,
        "tpx": _F32, "tpy": _F32, "tpz": _F32, "weight": _F32,
    },
    "submission": {"event_id": _I64, "hit_id": _I64, "track_id": _I64},
}
_OPTIONAL = {"particles": ("particle_type",)}
_FINITE = {"hits": ("x", "y", "z"), "truth": ("tx", "ty", "tz")}
_TYPES = {"hits": Hits, "cells": Cells, "particles": Particles, "truth": Truth,
          "submission": Submission}
_EVENT_RE = re.compile(r"event(\d{9})-([a-z]+)\.csv(\.gz)?$")


def read_table(path: str | os.PathLike, kind: str) -> NamedTuple:
    """Reads one CSV table (plain or gzip) of the given kind into typed arrays.

    Columns are matched by their header names (any order; unknown columns are ignored),
    every row must have as many fields as the header, and a table needs at least one row
    (an event has hits, each with truth and cells; a submission assigns its hits).

    Args:
      path: the file.
      kind: ``"hits"``, ``"cells"``, ``"particles"``, ``"truth"`` or ``"submission"``.

    Returns:
      The table's ``NamedTuple`` of 1-D arrays.

    Raises:
      ValueError: naming the file, for a truncated or damaged gzip stream, a file that is
        not text, an empty table, a missing column, a row of another width, an
        unparsable value, a duplicated id or non-finite coordinates.
    """
    if kind not in SCHEMAS:
        raise ValueError(f"`kind` must be one of {sorted(SCHEMAS)}; got {kind!r}.")
    path = pathlib.Path(path)
    cols = parse_csv(path, read_text(path), SCHEMAS[kind], optional=_OPTIONAL.get(kind, ()),
                     min_rows=1, table=kind)
    table = _TYPES[kind](**cols)
    _validate_table(path, kind, table)
    return table


def _validate_table(name: str | os.PathLike, kind: str, table: NamedTuple) -> None:
    for c in _FINITE.get(kind, ()):
        bad = ~np.isfinite(getattr(table, c))
        if bad.any():
            raise ValueError(
                f"{name}: non-finite coordinate `{c}` in {int(bad.sum())} row(s) "
                f"(first at row {int(np.argmax(bad))})."
            )
    unique_id = {"hits": "hit_id", "truth": "hit_id", "particles": "particle_id"}.get(kind)
    if unique_id is not None:
        ids = getattr(table, unique_id)
        u, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"{name}: duplicated {unique_id}(s) {u[counts > 1][:5].tolist()}."
            )
    if kind == "submission":
        u, counts = np.unique(np.stack([table.event_id, table.hit_id], 1), axis=0,
                              return_counts=True)
        if (counts > 1).any():
            dup = u[counts > 1][:5].tolist()
            raise ValueError(f"{name}: hit(s) assigned more than once: {dup}.")
        if (table.track_id < 0).any():
            raise ValueError(f"{name}: negative track_id.")


def _find_part(prefix: pathlib.Path, part: str) -> pathlib.Path | None:
    for suffix in (".csv", ".csv.gz"):
        p = prefix.parent / f"{prefix.name}-{part}{suffix}"
        if p.exists():
            return p
    return None


def _event_id(prefix: pathlib.Path) -> int:
    m = re.search(r"event(\d+)$", prefix.name)
    if m is None:
        raise ValueError(f"`prefix` must end in eventNNNNNNNNN; got {str(prefix)!r}.")
    return int(m.group(1))


def read_event(prefix: str | os.PathLike, parts: Sequence[str] | None = None) -> Event:
    """Reads one event from its file prefix, e.g. ``path/to/event000000001``.

    Args:
      prefix: the common file prefix (without ``-hits.csv``).
      parts: which of ``hits, cells, particles, truth`` to read; ``None`` reads every
        part that exists (``hits`` must exist).

    Returns:
      The ``Event``; parts not read are ``None``.

    Raises:
      ValueError: for a missing requested file, malformed files, or files that disagree
        (cells or truth rows whose ``hit_id`` is not a hit, hits without truth).
    """
    prefix = pathlib.Path(prefix)
    event_id = _event_id(prefix)
    wanted = PARTS if parts is None else tuple(parts)
    for p in wanted:
        if p not in PARTS:
            raise ValueError(f"`parts` entries must be in {PARTS}; got {p!r}.")
    if "hits" not in wanted:
        wanted = ("hits",) + wanted
    tables = {}
    for p in wanted:
        path = _find_part(prefix, p)
        if path is None:
            if parts is None and p != "hits":
                continue
            raise ValueError(f"no file {prefix.name}-{p}.csv[.gz] in {str(prefix.parent)!r}.")
        tables[p] = read_table(path, p)
    event = Event(event_id, tables["hits"], tables.get("cells"), tables.get("particles"),
                  tables.get("truth"))
    check_event(event, name=prefix.name)
    return event


def check_event(event: Event, name: str = "event") -> None:
    """Checks that an event's tables agree with each other.

    Raises:
      ValueError: for cells or truth rows whose ``hit_id`` is not in the hits, or hits
        missing from the truth.
    """
    hit_ids = np.sort(event.hits.hit_id)
    for part in ("cells", "truth"):
        table = getattr(event, part)
        if table is None:
            continue
        pos = np.clip(np.searchsorted(hit_ids, table.hit_id), 0, max(len(hit_ids) - 1, 0))
        known = (hit_ids[pos] == table.hit_id) if len(hit_ids) else np.zeros(
            len(table.hit_id), bool)
        if not known.all():
            bad = table.hit_id[~known][:5].tolist()
            raise ValueError(f"{name}-{part}: {int((~known).sum())} row(s) without hits "
                             f"(hit_id {bad}).")
    if event.truth is not None and len(event.truth.hit_id) != len(hit_ids):
        raise ValueError(f"{name}-truth: {len(hit_ids) - len(event.truth.hit_id)} hit(s) "
                         "have no truth row.")


def list_events(directory: str | os.PathLike) -> list[pathlib.Path]:
    """The sorted event prefixes (``dir/eventNNNNNNNNN``) that have a hits file.

    Example:
      >>> import tempfile, jax
      >>> from jaxgen.data import trackml
      >>> d = tempfile.mkdtemp()
      >>> sim = trackml.SimConfig(n_particles=5, n_noise=0)
      >>> _ = trackml.write_event(d, trackml.simulate_event(jax.random.key(0), sim))
      >>> [p.name for p in trackml.list_events(d)]
      ['event000000000']
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise ValueError(f"`directory` {str(directory)!r} is not a directory.")
    ids = set()
    for f in directory.iterdir():
        m = _EVENT_RE.match(f.name)
        if m and m.group(2) == "hits":
            ids.add(m.group(1))
    return [directory / f"event{i}" for i in sorted(ids)]


def read_events(
    directory: str | os.PathLike, parts: Sequence[str] | None = None
) -> Iterable[Event]:
    """Yields every event of a directory in event-id order (see ``read_event``)."""
    for prefix in list_events(directory):
        yield read_event(prefix, parts)


def _format_column(a: np.ndarray) -> list[str]:
    if a.dtype.kind in "iu":
        return [str(v) for v in a.tolist()]
    # Shortest of %.7g / %.9g that reads back to the same float32: 9 digits always do.
    short = [f"{v:.7g}" for v in a.tolist()]
    back = np.array(short, dtype=np.float64).astype(a.dtype)
    if np.array_equal(back, a):
        return short
    return [s if ok else f"{v:.9g}"
            for s, v, ok in zip(short, a.tolist(), (back == a).tolist(), strict=True)]


def _table_text(table: NamedTuple) -> str:
    names = [n for n in table._fields if getattr(table, n) is not None]
    cols = [_format_column(np.asarray(getattr(table, n))) for n in names]
    lines = [",".join(names)]
    lines.extend(",".join(row) for row in zip(*cols, strict=True))
    return "\n".join(lines) + "\n"


def write_table(path: str | os.PathLike, table: NamedTuple) -> pathlib.Path:
    """Writes a table as CSV, gzip-compressed when ``path`` ends in ``.gz`` (atomically)."""
    path = pathlib.Path(path)
    data = _table_text(table).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with atomic_open(path, "wb") as f:
        f.write(data)
    return path


def write_event(
    directory: str | os.PathLike, event: Event, *, compress: bool = False
) -> pathlib.Path:
    """Writes an event's tables as ``directory/eventNNNNNNNNN-<part>.csv[.gz]``.

    Args:
      directory: the output folder (created if needed).
      event: the event; its ``None`` parts are not written.
      compress: write gzip files.

    Returns:
      The event prefix ``directory/eventNNNNNNNNN``.

    Example:
      >>> import tempfile, jax
      >>> from jaxgen.data import trackml
      >>> sim = trackml.SimConfig(n_particles=20, n_noise=0)
      >>> ev = trackml.simulate_event(jax.random.key(0), sim)
      >>> prefix = trackml.write_event(tempfile.mkdtemp(), ev)
      >>> back = trackml.read_event(prefix)
      >>> bool((back.hits.hit_id == ev.hits.hit_id).all())
      True
    """
    prefix = pathlib.Path(directory) / f"event{int(event.event_id):09d}"
    suffix = ".csv.gz" if compress else ".csv"
    for part in PARTS:
        table = getattr(event, part)
        if table is not None:
            write_table(prefix.parent / f"{prefix.name}-{part}{suffix}", table)
    return prefix


def write_submission(path: str | os.PathLike, submission: Submission) -> pathlib.Path:
    """Writes a submission file ``event_id,hit_id,track_id`` (atomically).

    Example:
      >>> import pathlib, tempfile, numpy as np
      >>> from jaxgen.data import trackml
      >>> sub = trackml.Submission(np.zeros(3, np.int64), np.arange(1, 4), np.array([7, 7, 9]))
      >>> path = trackml.write_submission(pathlib.Path(tempfile.mkdtemp()) / "sub.csv", sub)
      >>> trackml.read_submission(path).track_id.tolist()
      [7, 7, 9]
    """
    sub = Submission(*(np.asarray(a, dtype=np.int64) for a in submission))
    _validate_table(pathlib.Path(path).name, "submission", sub)
    return write_table(path, sub)


def read_submission(path: str | os.PathLike) -> Submission:
    """Reads a submission file (plain or gzip); rejects hits assigned twice."""
    return read_table(path, "submission")
