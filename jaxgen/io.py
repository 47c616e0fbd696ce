"""Atomic file writing: a result is either fully written or not there at all.

A file is written under a temporary name beside its target, ``.<name>.<host>-<pid>.<random>.tmp``,
and renamed onto the target when complete. A process killed while writing leaves its
temporary file behind; the next write of the same target removes it (only temporary files
of this host whose process is gone, so concurrent writers are never disturbed).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import socket
import tempfile
from collections.abc import Iterator
from typing import IO
from typing import Any

import numpy as np

_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _process_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's live process
        return False
    return False


def remove_stale_temporaries(path: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the temporary files that killed writes of ``path`` left beside it.

    Only files named by this module for ``path``, written on this host by a process that
    no longer runs, are removed (and those of the older ``.<name>.<random>.tmp`` form,
    which carry no process id).

    Returns:
      The removed paths.
    """
    path = pathlib.Path(path)
    prefix = f".{path.name}."
    removed = []
    if not path.parent.is_dir():
        return removed
    for p in path.parent.iterdir():
        if not (p.name.startswith(prefix) and p.name.endswith(".tmp")):
            continue
        owner = p.name[len(prefix):].split(".")[0]
        host, _, pid = owner.rpartition("-")
        if pid.isdigit() and host:
            if host != _HOST or not _process_gone(int(pid)):
                continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside ``path``, renamed onto ``path`` when the block ends.

    For writers that open files themselves (HDF5). The temporary files of earlier killed
    writes of ``path`` are removed first. A crash or exception inside the block leaves any
    previous file at ``path`` untouched.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp"
    )
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary file beside ``path`` and renames it onto ``path`` on success.

    A crash or exception inside the block leaves any previous file at ``path`` untouched
    (see ``atomic_path``).
    """
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/jax scalars and arrays (recursively) to plain Python for JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, pathlib.Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2, sort_keys=False)
        f.write("\n")
