r"""The TrackML score: accuracy (arXiv:1904.06778), Throughput-phase variant and S(A, t).

For each reconstructed track t take its majority particle p (most hits in t; among ties
the smallest particle id, as the challenge's ``score.py`` does). The track is *good* iff

.. math::

    n(t \cap p) / n(t) > 1/2 \quad\text{and}\quad n(t \cap p) / n(p) > 1/2,

with n(p) all hits of p in the truth (noise counts as "particle" 0). The score is the sum
over good tracks of the weights of their hits of p, divided by the total truth weight:

.. math::

    A = \sum_{t\ \mathrm{good}} \sum_{h \in t \cap p} w_h \Big/ \sum_h w_h .

The Throughput phase (arXiv:2105.01160) uses the same score with the weights of
secondary particles (``generation != 0``) set to zero; its combined score is
``S = sqrt(log(1 + 600 / t) * (A - 0.5)^2)`` with t the seconds per event, 0 if A < 0.5
and -1 if t <= 0 or t > 600.

Command line::

    python -m jaxgen.metrics.trackml path/to/event000000001 submission.csv [--throughput]
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

MAX_TIME_PER_EVENT = 600.0
"""Seconds per event above which a Throughput-phase submission is rejected."""


class TrackTable(NamedTuple):
    """Per reconstructed track, shape ``(n_tracks,)`` each."""

    track_id: np.ndarray
    nhits: np.ndarray
    major_particle_id: np.ndarray
    major_particle_nhits: np.ndarray
    major_nhits: np.ndarray
    major_weight: np.ndarray  # normalised by the total truth weight


def _check_1d(name: str, x: ArrayLike, n: int | None = None, integer: bool = False) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {a.shape}.")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"`{name}` must have length {n}; got {a.shape[0]}.")
    if integer and a.dtype.kind not in "iu":
        raise ValueError(f"`{name}` must hold integers; got dtype {a.dtype}.")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"`{name}` contains NaN or inf values.")
    return a


def analyze_tracks(particle_id: ArrayLike, weight: ArrayLike, track_id: ArrayLike) -> TrackTable:
    """Majority particle, hit counts and weight of every reconstructed track.

    Args:
      particle_id: ``(n,)`` the true particle of each hit (0 = noise).
      weight: ``(n,)`` the hits' score weights (non-negative).
      track_id: ``(n,)`` the submitted track of each hit (non-negative integers).

    Returns:
      A ``TrackTable`` sorted by track id.

    Raises:
      ValueError: for arrays of different lengths, non-integer ids, negative track ids or
        weights, non-finite weights or a zero total weight.
    """
    pid = _check_1d("particle_id", particle_id, integer=True).astype(np.int64)
    n = pid.shape[0]
    w = _check_1d("weight", weight, n).astype(np.float64)
    tid = _check_1d("track_id", track_id, n, integer=True).astype(np.int64)
    if (tid < 0).any():
        raise ValueError("`track_id` must be non-negative.")
    if (w < 0).any():
        raise ValueError("`weight` must be non-negative.")
    total = w.sum()
    if not total > 0:
        raise ValueError("`weight` sums to zero: nothing can be scored.")
    # Hits per particle.
    up, p_inv, p_count = np.unique(pid, return_inverse=True, return_counts=True)
    # Hits and weight per (track, particle) pair.
    order = np.lexsort((pid, tid))
    t_s, p_s = tid[order], pid[order]
    new_pair = np.r_[True, (t_s[1:] != t_s[:-1]) | (p_s[1:] != p_s[:-1])]
    starts = np.flatnonzero(new_pair)
    pair_t, pair_p = t_s[starts], p_s[starts]
    pair_n = np.diff(np.r_[starts, n])
    pair_w = np.add.reduceat(w[order], starts) if n else np.zeros(0)
    # Majority per track: most hits, then smallest particle id (sorted ascending already).
    best = np.lexsort((pair_p, -pair_n, pair_t))
    first = np.r_[True, pair_t[best][1:] != pair_t[best][:-1]]
    maj = best[first]
    t_hits = np.bincount(np.searchsorted(pair_t[maj], t_s), minlength=len(maj))
    maj_p = pair_p[maj]
    return TrackTable(
        track_id=pair_t[maj],
        nhits=t_hits,
        major_particle_id=maj_p,
        major_particle_nhits=p_count[np.searchsorted(up, maj_p)],
        major_nhits=pair_n[maj],
        major_weight=pair_w[maj] / total,
    )


def score_labels(particle_id: ArrayLike, weight: ArrayLike, track_id: ArrayLike) -> float:
    """The TrackML accuracy score from per-hit aligned arrays.

    Args:
      particle_id: ``(n,)`` true particle per hit (0 = noise).
      weight: ``(n,)`` score weight per hit.
      track_id: ``(n,)`` submitted track per hit.

    Returns:
      The score in [0, 1] (1 for a perfect submission).
    """
    t = analyze_tracks(particle_id, weight, track_id)
    good = (2 * t.major_nhits > t.nhits) & (2 * t.major_nhits > t.major_particle_nhits)
    return float(t.major_weight[good].sum())


def _align(truth_hit_id: np.ndarray, hit_id: np.ndarray, track_id: np.ndarray) -> np.ndarray:
    order = np.argsort(hit_id, kind="stable")
    sh = hit_id[order]
    if len(sh) > 1 and (sh[1:] == sh[:-1]).any():
        dup = np.unique(sh[1:][sh[1:] == sh[:-1]])[:5].tolist()
        raise ValueError(f"`submission` assigns hit(s) {dup} more than once.")
    pos = np.clip(np.searchsorted(sh, truth_hit_id), 0, max(len(sh) - 1, 0))
    found = (sh[pos] == truth_hit_id) if len(sh) else np.zeros(len(truth_hit_id), bool)
    if not found.all():
        miss = truth_hit_id[~found][:5].tolist()
        raise ValueError(f"`submission` has no track for {int((~found).sum())} hit(s), "
                         f"e.g. hit_id {miss}; every hit needs exactly one track.")
    return track_id[order[pos]]


def score_event(truth, submission, *, primaries_only: bool = False) -> float:
    """The TrackML score of one event's submission.

    Args:
      truth: the event's truth (``jaxgen.data.trackml.Truth`` or anything with
        ``hit_id``, ``particle_id`` and ``weight`` arrays).
      submission: anything with ``hit_id`` and ``track_id`` arrays (e.g. a
        ``Submission`` restricted to this event), one row per hit; hits not in the truth
        are ignored.
      primaries_only: the Throughput-phase variant: weights of hits of secondary
        particles (``generation != 0``) are set to 0 before normalising.

    Returns:
      The score in [0, 1].

    Raises:
      ValueError: for a hit without a track, a hit assigned twice or malformed arrays.
    """
    hit_id = _check_1d("truth.hit_id", truth.hit_id, integer=True)
    pid = _check_1d("truth.particle_id", truth.particle_id, len(hit_id), integer=True)
    w = _check_1d("truth.weight", truth.weight, len(hit_id)).astype(np.float64)
    sub_hit = _check_1d("submission.hit_id", submission.hit_id, integer=True)
    sub_track = _check_1d("submission.track_id", submission.track_id, len(sub_hit), integer=True)
    track = _align(hit_id.astype(np.int64), sub_hit.astype(np.int64), sub_track)
    if primaries_only:
        gen = (pid.astype(np.int64).view(np.uint64) >> np.uint64(24)) & np.uint64(0xFFF)
        w = np.where(gen == 0, w, 0.0)
    return score_labels(pid, w, track)


def throughput_score(accuracy: float, seconds_per_event: float) -> float:
    """The Throughput-phase combined score S(A, t) (arXiv:2105.01160).

    Args:
      accuracy: the mean accuracy score A (Throughput-phase weights).
      seconds_per_event: the mean wall time per event t (s).

    Returns:
      ``sqrt(log(1 + 600/t) * (A - 0.5)^2)``; 0 if A < 0.5; -1 if t <= 0 or t > 600.
    """
    if not (math.isfinite(accuracy) and math.isfinite(seconds_per_event)):
        raise ValueError("`accuracy` and `seconds_per_event` must be finite.")
    if seconds_per_event <= 0 or seconds_per_event > MAX_TIME_PER_EVENT:
        return -1.0
    if accuracy < 0.5:
        return 0.0
    return math.sqrt(math.log(1.0 + MAX_TIME_PER_EVENT / seconds_per_event)
                     * (accuracy - 0.5) ** 2)


def main(argv: Sequence[str] | None = None) -> int:
    """Scores a submission file against an event's truth; prints the score."""
    from jaxgen.data.trackml import read_event, read_submission

    args = list(sys.argv[1:] if argv is None else argv)
    throughput = "--throughput" in args
    args = [a for a in args if a != "--throughput"]
    if len(args) != 2 or any(a in ("-h", "--help") for a in args):
        print("usage: python -m jaxgen.metrics.trackml EVENT_PREFIX SUBMISSION.csv "
              "[--throughput]", file=sys.stderr)
        return 2
    try:
        event = read_event(args[0], parts=("hits", "truth"))
        sub = read_submission(args[1])
        mine = sub.event_id == event.event_id
        if not mine.any():
            raise ValueError(f"{args[1]}: no rows for event {event.event_id}.")
        score = score_event(event.truth, sub._replace(hit_id=sub.hit_id[mine],
                                                      track_id=sub.track_id[mine]),
                            primaries_only=throughput)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{score:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
