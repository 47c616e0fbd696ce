"""Track finder seconds per event vs event size, with the accuracy; the seed filter's effect.

Simulated TrackML-like events (``jaxgen.data.trackml.simulate_event``, real geometry;
noise scaled with the particle count, 17000 per 9000 particles) of 1e3, 3e3 and 1e4
particles are reconstructed by ``jaxgen.methods.tracking.find_tracks``; per size the
median of ``--repeats`` timings (one warm-up call first; the one-time layer graph is
timed separately as ``setup_s``), the accuracy and Throughput-phase scores and S. A
combined (spatial + cluster) seed filter, trained on one 3000-particle event, is timed on
the same events, with the number of seed doublets it keeps. The Throughput phase's
winners: 0.944 at 0.56 s/event on 2 cores (S = 1.17).

Usage::

    python benchmarks/tracking.py [--repeats=3] [--sizes=1000,3000,10000] > tracking.json

Prints one JSON line. NumPy runs on one core; the filter's MLP in XLA on all of them.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import jax
import numpy as np

from jaxgen.data import trackml
from jaxgen.methods import trackseeding as ts
from jaxgen.methods.tracking import find_tracks
from jaxgen.methods.tracking import layer_table
from jaxgen.methods.tracking import prepare_hits
from jaxgen.metrics.trackml import score_event
from jaxgen.metrics.trackml import throughput_score


def _median_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def _sim(n: int, key) -> trackml.Event:
    cfg = trackml.SimConfig(n_particles=n, n_noise=round(17000 * n / 9000))
    return trackml.simulate_event(key, cfg)


def main(argv: list[str]) -> int:
    """Runs the benchmark; prints one JSON line."""
    opts = dict(a.lstrip("-").split("=", 1) for a in argv if "=" in a)
    repeats = int(opts.get("repeats", 3))
    sizes = [int(s) for s in opts.get("sizes", "1000,3000,10000").split(",")]
    t = time.perf_counter()
    layer_table()
    setup = time.perf_counter() - t
    train = _sim(3000, jax.random.key(100))
    fit_cfg = ts.SEED_FIT_CONFIG
    t = time.perf_counter()
    seed_filter, info = ts.train_seed_filter(jax.random.key(1), [train], "combined",
                                             fit_config=fit_cfg)
    train_s = time.perf_counter() - t
    rows = []
    for n in sizes:
        ev = _sim(n, jax.random.key(n))
        row = {"particles": n, "hits": len(ev.hits.hit_id)}
        for name, filt in (("no_filter", None), ("filter", seed_filter)):
            sec, track = _median_time(
                lambda filt=filt, ev=ev: find_tracks(ev.hits, ev.cells, seed_filter=filt),
                repeats)
            sub = trackml.Submission(np.zeros(len(track), np.int64),
                                     ev.hits.hit_id.astype(np.int64), track)
            acc = score_event(ev.truth, sub)
            thr = score_event(ev.truth, sub, primaries_only=True)
            row[name] = {"seconds": sec, "accuracy": acc, "throughput_accuracy": thr,
                         "S": throughput_score(thr, sec)}
        prep = prepare_hits(ev.hits)
        pairs = ts.seed_pairs(ev, prep)
        keep = seed_filter.keep(prep, seed_filter.hit_features(ev.hits, ev.cells),
                                pairs.h1, pairs.h2)
        row["seed_doublets"] = int(len(keep))
        row["seed_doublets_kept"] = int(keep.sum())
        row["true_doublets_kept"] = float(keep[pairs.label].mean())
        rows.append(row)
    print(json.dumps({
        "benchmark": "tracking",
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "repeats": repeats,
        "setup_s": setup,
        "filter_train_s": train_s,
        "filter_info": info,
        "sizes": rows,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
