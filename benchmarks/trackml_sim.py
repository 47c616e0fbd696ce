"""TrackML: simulation events/s at full scale, score and read times (one JSON line).

    python benchmarks/trackml_sim.py [--repeats 5] [--particles 9000] [--noise 17000]

Reports the first call (compile + run) separately from the medians of repeated calls:
the jit kernel alone (``block_until_ready``), the whole ``simulate_event`` (kernel + host
compaction into the Event arrays), the score of a full event (truth as submission and a
20 % shuffled one) and reading / writing the real 93,680-hit event.
"""

import argparse
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxgen.data import trackml  # noqa: E402
from jaxgen.data.trackml import simulate as sim  # noqa: E402
from jaxgen.metrics import trackml as score  # noqa: E402


def _median(f, repeats):
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        f(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--particles", type=int, default=9000)
    ap.add_argument("--noise", type=int, default=17000)
    args = ap.parse_args()
    cfg = trackml.SimConfig(n_particles=args.particles, n_noise=args.noise)
    _, _, geo = sim.make_geometry()
    key = jax.random.key(0)

    t = time.perf_counter()
    jax.block_until_ready(sim.simulate_arrays(key, geo, cfg))
    first = time.perf_counter() - t
    kernel = _median(lambda i: jax.block_until_ready(
        sim.simulate_arrays(jax.random.fold_in(key, i + 1), geo, cfg)), args.repeats)
    events = []
    full = _median(lambda i: events.append(
        trackml.simulate_event(jax.random.fold_in(key, i + 1), cfg)), args.repeats)
    ev = events[-1]

    tr = ev.truth
    rng = np.random.default_rng(0)
    shuffled = tr.particle_id.copy()
    idx = rng.choice(len(shuffled), len(shuffled) // 5, replace=False)
    shuffled[idx] = rng.permutation(shuffled[idx])
    sub = trackml.Submission(np.zeros_like(tr.hit_id), tr.hit_id, tr.particle_id)
    perfect = score.score_event(tr, sub)
    noisy = score.score_event(tr, sub._replace(track_id=shuffled))
    score_s = _median(lambda i: score.score_event(tr, sub._replace(track_id=shuffled)),
                      args.repeats)

    real = ROOT / "tests" / "data" / "trackml_samples" / "event000001001"
    read_s = _median(lambda i: trackml.read_event(real), args.repeats)
    with tempfile.TemporaryDirectory() as d:
        write_s = _median(lambda i: trackml.write_event(d, ev), max(1, args.repeats // 2))

    print(json.dumps({
        "benchmark": "trackml_sim",
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "n_particles": args.particles,
        "n_noise": args.noise,
        "hits_per_event": len(ev.hits.hit_id),
        "cells_per_event": len(ev.cells.hit_id),
        "first_call_s": first,
        "kernel_median_s": kernel,
        "simulate_event_median_s": full,
        "events_per_s": 1.0 / full,
        "score_median_s": score_s,
        "score_truth": perfect,
        "score_20pct_shuffled": noisy,
        "read_real_event_93680_hits_s": read_s,
        "write_event_s": write_s,
        "repeats": args.repeats,
    }))


if __name__ == "__main__":
    main()
