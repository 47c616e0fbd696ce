"""Command line: ``python -m jaxgen.methods.tracking EVENT_PREFIX --out SUBMISSION.csv``.

Reads an event in the TrackML format (hits alone are enough; cells and truth are read
when present), reconstructs its tracks with ``find_tracks`` (with ``--seed-filter
FILE``, a learned seed filter saved by ``trackseeding.save_seed_filter``, e.g. the
``seed_filter.npz`` that ``python -m experiments.tracking`` writes), writes the submission
(``event_id,hit_id,track_id``) and prints the seconds per event (file reading and the
one-time layer-graph set-up excluded) and, when the truth is present, the accuracy score
and the Throughput-phase score (arXiv:2105.01160).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from jaxgen.data.trackml import Submission
from jaxgen.data.trackml import read_event
from jaxgen.data.trackml import write_submission
from jaxgen.methods.tracking._tracker import find_tracks
from jaxgen.methods.tracking._tracker import layer_table
from jaxgen.methods.trackseeding import load_seed_filter
from jaxgen.metrics.trackml import score_event
from jaxgen.metrics.trackml import throughput_score


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the track finder on one event; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m jaxgen.methods.tracking",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("event", help="event prefix, e.g. some/dir/event000001000")
    ap.add_argument("--out", required=True, help="submission CSV to write (.gz to compress)")
    ap.add_argument("--seed-filter", default=None,
                    help="learned seed filter (.npz from trackseeding.save_seed_filter)")
    args = ap.parse_args(argv)
    try:
        event = read_event(args.event)
        seed_filter = None if args.seed_filter is None else load_seed_filter(args.seed_filter)
        if seed_filter is not None:
            seed_filter.hit_features(event.hits, event.cells)  # cells present if needed
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    layer_table()
    if seed_filter is not None:  # compile the filter's network outside the timing
        find_tracks(event.hits, event.cells, seed_filter=seed_filter)
    t0 = time.perf_counter()
    track = find_tracks(event.hits, event.cells, seed_filter=seed_filter)
    seconds = time.perf_counter() - t0
    n = len(track)
    sub = Submission(np.full(n, event.event_id, np.int64),
                     event.hits.hit_id.astype(np.int64), track)
    write_submission(args.out, sub)
    print(f"event {event.event_id}: {n} hits, {len(np.unique(track[track > 0]))} tracks, "
          f"{seconds:.3f} s/event")
    if event.truth is not None:
        acc = score_event(event.truth, sub)
        thr = score_event(event.truth, sub, primaries_only=True)
        print(f"score {acc:.4f}  throughput-phase score {thr:.4f}  "
              f"S = {throughput_score(thr, seconds):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
