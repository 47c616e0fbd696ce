"""Checkpoints of ``fit``: orbax steps that resume exactly, and survive damaged files.

A checkpoint directory holds ``fit_config.json`` (the fingerprint of the run that owns it)
and ``state/<epochs done>/`` (orbax steps; the last two are kept). After orbax has
finished a step, ``jaxgen_files.json`` is written into it (atomically): the size and
SHA-256 of every file of the step. On resume the newest step is checked against it and
then restored; a step that is damaged (a file missing, truncated or altered) or that
orbax cannot restore is skipped for the next older one; once one restores, each skipped
step is reported in one warning line (step, file, why) and moved to ``damaged/``. When no
step restores, ``ValueError`` says so, why, and what to do.
Steps written before the file list existed are restored by orbax alone (its OCDBT store
checksums the array data, so flipped bytes there are still detected).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import shutil
import warnings
from typing import Any

from jaxgen.io import atomic_open

FILE_LIST = "jaxgen_files.json"
CONFIG_FILE = "fit_config.json"
_PATH_IN_MESSAGE = re.compile(r"(?:local file |at )\"?(/[^\"\s:]+)")


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _step_files(step_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(step_dir)): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(step_dir.rglob("*"))
        if p.is_file() and p.name != FILE_LIST
    }


def _check_files(step_dir: pathlib.Path) -> tuple[str, str] | None:
    """``(file, problem)`` for the first file of the step that is not as written, else None.

    A step without a readable file list is left to orbax (``None``).
    """
    try:
        listed = json.loads((step_dir / FILE_LIST).read_text())
        files = listed["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for rel, want in sorted(files.items()):
        p = step_dir / rel
        if not p.is_file():
            return str(p), "the file is missing"
        size = p.stat().st_size
        if size != want["size"]:
            return str(p), f"the file has {size} bytes, {want['size']} were written (truncated)"
        if _sha256(p) != want["sha256"]:
            return str(p), "the file's content differs from what was written (checksum)"
    return None


def _orbax_reason(step_dir: pathlib.Path, err: BaseException) -> tuple[str, str]:
    """``(file, why)`` from an orbax / TensorStore error: its first line, shortened."""
    text = " ".join(str(err).split()) or type(err).__name__
    m = _PATH_IN_MESSAGE.search(text)
    where = m.group(1).rstrip(".") if m else str(step_dir)
    if len(text) > 200:
        text = text[:197] + "..."
    return where, f"{type(err).__name__}: {text}"


class Checkpointer:
    """Orbax checkpoints of ``fit``'s whole loop state, keyed by completed epochs.

    Args:
      directory: the checkpoint directory (created if needed).
      fingerprint: JSON-able description of the run; a directory holding another run's
        fingerprint is refused.

    Raises:
      ValueError: if the directory belongs to a run with a different configuration, or
        its ``fit_config.json`` is damaged.
    """

    def __init__(self, directory: str, fingerprint: dict):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.path = pathlib.Path(directory).absolute()
        self.path.mkdir(parents=True, exist_ok=True)
        meta_path = self.path / CONFIG_FILE
        meta = json.dumps(fingerprint, sort_keys=True, default=str)
        if meta_path.exists():
            try:
                stored = json.loads(meta_path.read_text())
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"`checkpoint_dir` {self.path}: {meta_path.name} is damaged ({e}); it "
                    "names the run that the checkpoints belong to, so they cannot be "
                    f"trusted. Delete {self.path} to start afresh."
                ) from None
            if stored != json.loads(meta):
                raise ValueError(
                    f"`checkpoint_dir` {self.path} holds a run with a different "
                    "configuration; use a new directory."
                )
        else:
            with atomic_open(meta_path) as f:
                f.write(meta)
        options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.path / "state", options=options)

    def _step_dir(self, step: int) -> pathlib.Path:
        return self.path / "state" / str(step)

    def save(self, epochs_done: int, loop: dict) -> None:
        """Saves the loop state as step ``epochs_done``, then its file list."""
        import jax

        self.manager.save(epochs_done, args=self._ocp.args.StandardSave(loop))
        self.manager.wait_until_finished()
        step_dir = self._step_dir(epochs_done)
        if jax.process_index() == 0 and step_dir.is_dir():
            listing = {"step": epochs_done, "files": _step_files(step_dir)}
            with atomic_open(step_dir / FILE_LIST) as f:
                json.dump(listing, f)

    def restore_latest(self, template: dict) -> tuple[int, dict] | None:
        """Restores the newest step that is intact, as ``(epochs_done, loop)``.

        Newer steps that cannot be restored are moved to ``<directory>/damaged/`` (a
        damaged newest step would otherwise stay orbax's latest and every older save
        would be skipped), each with one warning line.

        Returns:
          ``None`` when the directory holds no step.

        Raises:
          ValueError: when steps exist but none can be restored (nothing is moved).
        """
        failed = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            step_dir = self._step_dir(step)
            problem = _check_files(step_dir)
            if problem is None:
                try:
                    loop = self.manager.restore(
                        step, args=self._ocp.args.StandardRestore(template)
                    )
                except Exception as e:  # noqa: BLE001 - orbax and TensorStore raise many types
                    problem = _orbax_reason(step_dir, e)
                else:
                    self._set_aside(failed, step)
                    return step, loop
            failed.append((step, *problem))
        if failed:
            why = "; ".join(f"step {s}: {f}: {w}" for s, f, w in failed)
            raise ValueError(
                f"`checkpoint_dir` {self.path}: no checkpoint step can be restored ({why}). "
                f"Delete {self.path} to train from the start."
            )
        return None

    def _set_aside(self, failed: list[tuple[int, str, str]], good: int) -> None:
        for step, where, why in failed:
            dest = self.path / "damaged" / str(step)
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(exist_ok=True)
            shutil.move(self._step_dir(step), dest)
            warnings.warn(
                f"fit: checkpoint step {step} in {self.path} cannot be restored ({where}: "
                f"{why}); moved to {dest}, resuming from step {good}.",
                RuntimeWarning,
                stacklevel=5,
            )
        if failed:
            self.manager.reload()
