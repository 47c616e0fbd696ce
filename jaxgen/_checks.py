"""Input validation shared by the public entry points.

Checks run eagerly in Python, before anything is traced, and raise ``ValueError``
naming the argument, what was expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | Sequence[int] | None = None,
    last_dim: int | None = None,
    finite: bool = True,
) -> None:
    """Raises ``ValueError`` if ``x`` is not an array of the expected rank/width or not finite.

    Args:
      name: the argument's name, used in the message.
      x: the value to check. Tracers are checked for shape only.
      ndim: allowed rank(s).
      last_dim: required size of the last axis.
      finite: whether NaN/inf values are rejected (skipped for tracers).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"`{name}` must be an array; got {type(x).__name__}.")
    shape = tuple(x.shape)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"`{name}` must have {want} dimension(s); got shape {shape}.")
    if last_dim is not None and (len(shape) == 0 or shape[-1] != last_dim):
        raise ValueError(f"`{name}` must have last dimension {last_dim}; got shape {shape}.")
    if finite and not _is_tracer(x) and np.issubdtype(np.dtype(x.dtype), np.inexact):
        if not bool(np.all(np.isfinite(np.asarray(x)))):
            raise ValueError(f"`{name}` contains NaN or inf values.")


def check_positive(name: str, value: float | int, *, allow_zero: bool = False) -> None:
    """Raises ``ValueError`` unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or (isinstance(value, float) and not np.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}; got {value!r}.")


def check_in(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}; got {value!r}.")


def leading_size(name: str, tree: Any) -> int:
    """Returns the common leading dimension of every leaf of ``tree``."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"`{name}` holds no arrays.")
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            f"every array in `{name}` must share the leading (event) dimension; got sizes "
            f"{sorted(sizes)}."
        )
    return sizes.pop()
