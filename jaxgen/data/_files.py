r"""Reading data files that may be damaged: one rule for every reader of ``jaxgen.data``.

Every reader (shower HDF5, TrackML CSV, and those still to come: LHC Olympics features,
ttbar events) opens its file and checks the schema it expects with these helpers, so a
damaged file (truncated, empty, not of its format, a missing or malformed table) raises
a ``ValueError`` that names the file, the table or dataset, and the problem, instead of
an ``OSError``, ``EOFError``, ``UnicodeDecodeError``, ``KeyError`` or a silent misread:

- ``reading(path)``: a block in which any low-level read error becomes such a
  ``ValueError``;
- ``read_text(path)``: the text of a plain or gzip file;
- ``parse_csv(path, text, columns)``: a headed CSV table, checked for its columns, the
  width of every row, the number of rows and finite values;
- ``open_hdf5(path)`` and ``read_dataset(f, path, name, ...)``: an HDF5 file and one
  dataset, checked for presence, rank, shape, dtype kind, rows and finite values.

Messages read ``<file>: <problem>``, or ``<file>: <dataset>: <problem>`` for a dataset of
a file that holds several (see ``file_error``).

Example (a reader of a new format):

  >>> import numpy as np, pathlib, tempfile
  >>> from jaxgen.data._files import parse_csv, read_text
  >>> p = pathlib.Path(tempfile.mkdtemp()) / "jets.csv"
  >>> _ = p.write_text("mjj,tau21\n3.5,0.4\n")
  >>> cols = parse_csv(p, read_text(p), {"mjj": np.float32, "tau21": np.float32})
  >>> cols["mjj"].tolist()
  [3.5]
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pathlib
import warnings
import zlib
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

# What a damaged file raises from the standard library, numpy and h5py while it is read.
READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error, KeyError, IndexError,
               TypeError, RuntimeError)


def file_error(path: str | os.PathLike, problem: str, *, part: str | None = None) -> ValueError:
    """The ``ValueError`` of a damaged file: ``"<path>: [<part>: ]<problem>"``."""
    where = f"{path}: {part}: " if part else f"{path}: "
    return ValueError(where + problem)


@contextlib.contextmanager
def reading(path: str | os.PathLike, part: str | None = None) -> Iterator[None]:
    """Turns a low-level read error inside the block into ``file_error(path, ...)``.

    ``ValueError``s raised inside pass through unchanged (they already name the file).
    """
    try:
        yield
    except ValueError:
        raise
    except FileNotFoundError:
        raise file_error(path, "no such file", part=part) from None
    except READ_ERRORS as e:
        raise file_error(path, f"cannot be read, the file is damaged or not of this format "
                         f"({type(e).__name__}: {e})", part=part) from None


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a plain or gzip-compressed file (gzip detected by content).

    Raises:
      ValueError: naming the file, if it is missing or a truncated or damaged gzip stream.
    """
    path = pathlib.Path(path)
    with reading(path):
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except EOFError:
                raise file_error(path, "the gzip stream is truncated (the file ends early)"
                                 ) from None
            except (OSError, zlib.error) as e:
                raise file_error(path, f"the gzip stream is damaged ({e})") from None
    return raw


def read_text(path: str | os.PathLike) -> str:
    """The text (UTF-8) of a plain or gzip-compressed file (gzip detected by content).

    Raises:
      ValueError: naming the file, if it is missing, a truncated or damaged gzip stream,
        or not text.
    """
    path = pathlib.Path(path)
    raw = read_bytes(path)
    with reading(path):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise file_error(path, f"is not a text file (byte {e.start} is not UTF-8)"
                             ) from None


def parse_csv(
    path: str | os.PathLike,
    text: str,
    columns: Mapping[str, Any],
    *,
    optional: Sequence[str] = (),
    min_rows: int = 1,
    finite: Sequence[str] = (),
    table: str = "table",
) -> dict[str, np.ndarray | None]:
    """Parses a headed CSV table: ``{column: (rows,) array}`` for the wanted columns.

    Columns are matched by header name (any order); other columns are ignored but every
    row must have as many fields as the header.

    Args:
      path: the file (for messages).
      text: its text (see ``read_text``).
      columns: wanted column names and dtypes.
      optional: wanted columns that may be absent (returned as ``None``).
      min_rows: the fewest data rows the format allows.
      finite: float columns that must hold no NaN or inf.
      table: what the table is (for messages), e.g. ``"hits"``.

    Raises:
      ValueError: naming the file, for an empty file, a missing or
        duplicated column, a row with a different number of fields, too few rows, an
        unparsable or non-finite value.
    """
    raw = text.encode()
    header, newline, body = raw.partition(b"\n")
    if not header.strip():
        raise file_error(path, f"the file is empty (no header line of the {table} table)")
    names = [h.strip() for h in header.decode().split(",")]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise file_error(path, f"duplicated column(s) {dup} in the header")
    missing = [c for c in columns if c not in names and c not in optional]
    if missing:
        raise file_error(path, f"missing column(s) {missing}; header is {names}")
    width = len(names)
    fields, blank = _fields_per_line(body)
    n_rows = int((~blank).sum())
    bad = np.flatnonzero(~blank & (fields != width))
    if bad.size:
        i = int(bad[0])
        raise file_error(path, f"line {i + 2} has {int(fields[i])} fields, the header has "
                         f"{width}")
    if n_rows < min_rows:
        raise file_error(path, f"the {table} table has {n_rows} data row(s); the "
                         f"format requires at least {min_rows}")
    use = [c for c in columns if c in names]
    dtype = np.dtype([(c, np.dtype(columns[c])) for c in use])
    if n_rows:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # e.g. integer overflow: a bad value
                data = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=dtype, comments=None,
                                  usecols=[names.index(c) for c in use], ndmin=1)
        except (ValueError, Warning) as e:
            raise file_error(path, f"cannot parse the {table} table: {e}") from None
    else:
        data = np.zeros(0, dtype)
    out: dict[str, np.ndarray | None] = {c: np.ascontiguousarray(data[c]) for c in use}
    for c in optional:
        out.setdefault(c, None)
    for c in finite:
        check_finite(path, out[c], part=f"{table} column `{c}`")
    return out


def _fields_per_line(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Fields (commas + 1) and blankness of every line of ``body``, vectorised."""
    buf = np.frombuffer(body, np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if buf.size and buf[-1] != ord("\n"):
        ends = np.append(ends, buf.size)
    if not ends.size:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    commas = np.concatenate([[0], np.cumsum(buf == ord(","))])
    visible = np.concatenate([[0], np.cumsum(buf > ord(" "))])
    fields = commas[ends] - commas[starts] + 1
    blank = visible[ends] == visible[starts]
    return fields, blank


def check_finite(path: str | os.PathLike, a: np.ndarray | None, *, part: str) -> None:
    """Raises ``file_error`` if the float array ``a`` holds NaN or inf."""
    if a is None or a.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), a.shape)
        at = int(first[0]) if len(first) == 1 else tuple(int(i) for i in first)
        raise file_error(path, f"{int(bad.sum())} non-finite value(s) (first at row {at})",
                         part=part)


@contextlib.contextmanager
def open_hdf5(path: str | os.PathLike) -> Iterator[Any]:
    """Opens an HDF5 file for reading; any read error inside becomes ``file_error``.

    Raises:
      ValueError: naming the file, if it is missing, empty, truncated or not HDF5.
    """
    import h5py

    path = pathlib.Path(path)
    if not path.is_file():
        raise file_error(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise file_error(path, "the file is empty (0 bytes)")
    if not h5py.is_hdf5(path):
        raise file_error(path, f"is not an HDF5 file ({size} bytes without an HDF5 signature)")
    try:
        f = h5py.File(path, "r")
    except READ_ERRORS as e:
        raise file_error(path, f"cannot be opened: the file is truncated or damaged ({e})"
                         ) from None
    with f, reading(path):
        yield f


def read_dataset(
    f: Any,
    path: str | os.PathLike,
    name: str,
    *,
    kind: str,
    shape: Sequence[int | None],
    finite: bool = True,
) -> np.ndarray:
    """Reads one dataset of an open HDF5 file, checking what the format expects.

    Args:
      f: the open ``h5py.File``.
      path: the file (for messages).
      name: the dataset.
      kind: allowed numpy dtype kinds, e.g. ``"f"`` (float), ``"iu"`` (integer), ``"b"``.
      shape: the expected shape; ``None`` entries match any size (rank must match).
      finite: reject NaN and inf (float datasets).

    Raises:
      ValueError: naming the file and the dataset, if it is missing, not a dataset, of
        another dtype kind, rank or shape, unreadable or not finite.
    """
    if name not in f:
        raise file_error(path, "the dataset is missing", part=name)
    d = f[name]
    if not hasattr(d, "dtype") or not hasattr(d, "shape"):
        raise file_error(path, "is a group, not a dataset", part=name)
    if d.dtype.kind not in kind:
        raise file_error(path, f"dtype {d.dtype} is not of kind {kind!r} (numbers of the "
                         "expected type)", part=name)
    want = tuple(shape)
    got = tuple(d.shape)
    if len(got) != len(want) or any(
        w is not None and w != g for w, g in zip(want, got, strict=True)
    ):
        shown = tuple("any" if w is None else w for w in want)
        raise file_error(path, f"shape {got}; expected {shown}", part=name)
    with reading(path, part=name):
        a = d[...]
    if finite:
        check_finite(path, a, part=name)
    return a
