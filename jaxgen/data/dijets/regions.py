"""Signal region, sidebands and mjj bins of a resonant (bump-hunt) search.

The convention every resonant anomaly-detection method of jaxgen codes against: the signal
region (SR) ``3.3 < mjj < 3.7`` TeV of the LHC Olympics R&D analyses (CATHODE,
arXiv:2109.00546; CURTAINs, arXiv:2203.09470) with short sidebands (SB) of 0.2 TeV on each
side (the CWoLa benchmark of CATHODE, ``outer_range = SR +- 0.2``), and region labels

==========  =======================
label       region
==========  =======================
0           outside (not used)
1           low sideband
2           signal region
3           high sideband
==========  =======================

Intervals are half-open, ``lo <= mjj < hi``, so a bin edge belongs to exactly one region.
The scan of CWoLa hunting (arXiv:1805.02664, 2104.02092) slides an SR of a few
log-uniform bins (``log_uniform_bins``) across the spectrum (``Regions.from_bins``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen._checks import check_array

OUTSIDE = 0
LOW_SIDEBAND = 1
SIGNAL_REGION = 2
HIGH_SIDEBAND = 3


@dataclasses.dataclass(frozen=True)
class Regions:
    """Signal region and the sidebands around it (TeV).

    Attributes:
      sr: ``(lo, hi)`` of the signal region; default ``(3.3, 3.7)`` TeV.
      sideband_width: width of the low sideband ``[sr[0] - w, sr[0])``; default 0.2 TeV.
      high_sideband_width: width of the high sideband ``[sr[1], sr[1] + w)``; ``None``
        (default) means ``sideband_width``. Log-uniform bins give unequal widths.

    Example:
      >>> import jax.numpy as jnp
      >>> Regions().region_labels(jnp.array([3.0, 3.2, 3.5, 3.8, 4.0])).tolist()
      [0, 1, 2, 3, 0]
    """

    sr: tuple[float, float] = (3.3, 3.7)
    sideband_width: float = 0.2
    high_sideband_width: float | None = None

    def __post_init__(self):
        if len(self.sr) != 2:
            raise ValueError(f"`sr` must be a pair (lo, hi); got {self.sr!r}.")
        lo, hi = (float(v) for v in self.sr)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            raise ValueError(f"`sr` must satisfy 0 < lo < hi; got {self.sr!r}.")
        object.__setattr__(self, "sr", (lo, hi))
        for name in ("sideband_width", "high_sideband_width"):
            w = getattr(self, name)
            if w is not None and not (math.isfinite(w) and w > 0):
                raise ValueError(f"`{name}` must be > 0; got {w!r}.")
        if self.sr[0] - self.sideband_width <= 0:
            raise ValueError(
                f"`sideband_width` {self.sideband_width} puts the low sideband below mjj = 0 "
                f"(sr = {self.sr})."
            )

    @property
    def low_sideband(self) -> tuple[float, float]:
        """``(lo, hi)`` of the low sideband."""
        return (self.sr[0] - self.sideband_width, self.sr[0])

    @property
    def high_sideband(self) -> tuple[float, float]:
        """``(lo, hi)`` of the high sideband."""
        w = self.sideband_width if self.high_sideband_width is None else self.high_sideband_width
        return (self.sr[1], self.sr[1] + w)

    @property
    def window(self) -> tuple[float, float]:
        """``(lo, hi)`` of sidebands and SR together."""
        return (self.low_sideband[0], self.high_sideband[1])

    def region_labels(self, mjj: jax.typing.ArrayLike) -> jax.Array:
        """Region label of every event: 0 outside, 1 low SB, 2 SR, 3 high SB (int32, jit-able).

        Args:
          mjj: ``(n,)`` dijet masses in TeV.

        Returns:
          ``(n,)`` int32 labels.
        """
        m = jnp.asarray(mjj)
        edges = jnp.asarray(
            [self.low_sideband[0], self.sr[0], self.sr[1], self.high_sideband[1]], m.dtype
        )
        # searchsorted(side="right") - 1 gives the interval [e_i, e_{i+1}) holding m.
        idx = jnp.searchsorted(edges, m, side="right")
        return jnp.where((idx >= 1) & (idx <= 3), idx, OUTSIDE).astype(jnp.int32)

    def in_sr(self, mjj: jax.typing.ArrayLike) -> jax.Array:
        """Boolean mask of the events in the signal region (jit-able)."""
        return self.region_labels(mjj) == SIGNAL_REGION

    def in_sidebands(self, mjj: jax.typing.ArrayLike) -> jax.Array:
        """Boolean mask of the events in either sideband (jit-able)."""
        r = self.region_labels(mjj)
        return (r == LOW_SIDEBAND) | (r == HIGH_SIDEBAND)

    def check_covers(self, mjj: jax.typing.ArrayLike, name: str = "mjj") -> None:
        """Raises ``ValueError`` unless the signal region lies inside the range of ``mjj``.

        Use at the entry of a method that needs events on both sides of the SR.
        """
        m = np.asarray(mjj)
        check_array(name, m, ndim=1)
        if m.size == 0:
            raise ValueError(f"`{name}` is empty.")
        lo, hi = float(m.min()), float(m.max())
        if not (lo < self.sr[0] and self.sr[1] < hi):
            raise ValueError(
                f"the signal region {self.sr} TeV lies outside the range of `{name}` "
                f"[{lo:.4g}, {hi:.4g}] TeV."
            )

    @classmethod
    def from_bins(
        cls, edges: jax.typing.ArrayLike, first_sr_bin: int, *, sr_bins: int = 4,
        sideband_bins: int = 3,
    ) -> Regions:
        """Regions of whole bins: ``sr_bins`` from ``first_sr_bin``, sidebands of ``sideband_bins``.

        The CWoLa scan of arXiv:2104.02092 uses 30 log-uniform bins on [2.8, 5.2] TeV, an
        SR of 4 bins and sidebands of 3 (SR = bins 9-12, counted from 0: ``first_sr_bin=9``,
        [3.371, 3.661] TeV).

        Example:
          >>> r = Regions.from_bins(log_uniform_bins(2.8, 5.2, 30), 9)
          >>> [round(v, 3) for v in r.window]
          [3.169, 3.895]
        """
        e = np.asarray(edges, np.float64)
        check_array("edges", e, ndim=1)
        lo_bin, hi_bin = first_sr_bin - sideband_bins, first_sr_bin + sr_bins + sideband_bins
        if min(sr_bins, sideband_bins) < 1 or lo_bin < 0 or hi_bin > e.size - 1:
            raise ValueError(
                f"`first_sr_bin`={first_sr_bin} with sr_bins={sr_bins} and "
                f"sideband_bins={sideband_bins} does not fit in {e.size - 1} bins."
            )
        s0, s1 = e[first_sr_bin], e[first_sr_bin + sr_bins]
        return cls(sr=(float(s0), float(s1)), sideband_width=float(s0 - e[lo_bin]),
                   high_sideband_width=float(e[hi_bin] - s1))


def log_uniform_bins(lo: float = 2.8, hi: float = 5.2, n_bins: int = 30) -> np.ndarray:
    """``n_bins + 1`` log-uniform mjj bin edges on ``[lo, hi]`` (float64, TeV).

    The defaults are the 30 bins of the CWoLa scan of arXiv:2104.02092.

    Example:
      >>> log_uniform_bins(1.0, 4.0, 2).tolist()
      [1.0, 2.0, 4.0]
    """
    if not (0 < lo < hi) or n_bins < 1:
        raise ValueError(f"need 0 < lo < hi and n_bins >= 1; got lo={lo}, hi={hi}, "
                         f"n_bins={n_bins}.")
    return np.exp(np.linspace(math.log(lo), math.log(hi), n_bins + 1))


def scan_regions(
    edges: jax.typing.ArrayLike, *, sr_bins: int = 4, sideband_bins: int = 3
) -> list[Regions]:
    """Every SR of ``sr_bins`` consecutive bins that has full sidebands inside ``edges``.

    Example:
      >>> len(scan_regions(log_uniform_bins(2.8, 5.2, 30)))
      21
    """
    n = np.asarray(edges).size - 1
    return [Regions.from_bins(edges, b, sr_bins=sr_bins, sideband_bins=sideband_bins)
            for b in range(sideband_bins, n - sr_bins - sideband_bins + 1)]


def select(tree, mask: jax.typing.ArrayLike):
    """Rows of every array of ``tree`` (e.g. ``DijetEvents``) where ``mask`` is true.

    Not jit-able (the result's size depends on the data); use masks or weights inside jit.

    Example:
      >>> import jax.numpy as jnp
      >>> select({"m": jnp.arange(4.0)}, jnp.array([True, False, True, False]))["m"].tolist()
      [0.0, 2.0]
    """
    idx = np.flatnonzero(np.asarray(mask))
    return jax.tree_util.tree_map(lambda a: a[idx], tree)
