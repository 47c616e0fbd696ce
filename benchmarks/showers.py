"""SUPA shower simulator throughput (arXiv:2202.05012): showers/s vs batch size.

Prints one JSON line: device, jax version, and per batch size the compile time, the
median of repeated timed runs (``block_until_ready``), showers/s, showers per second of
process CPU time (user + system, all threads: a steadier figure than wall time on a shared
machine) and the process's peak RSS after that size (sizes run in increasing order, so it
bounds that size's need). Also times the plain-Python reference
(``tests/data/supa_reference.py``) in the same run. Goal: >= 140,000 showers/s, 1000x the
released SUPA generator's ~140/s.

    python benchmarks/showers.py                      # 1e3, 1e4, 1e5, 3e5; 1e6 streamed
    python benchmarks/showers.py --sizes=1000,10000 --repeats=5

Large batches spend a fifth to a half of their time in page faults of the fresh output
buffer (9.2 kB of points per shower; the system time of a run, which varies from run to
run on a shared VM: compare ``showers_per_cpu_s``); with glibc, transparent huge pages for
malloc remove most of them:

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/showers.py
"""

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import statistics
import sys
import time

import jax

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxgen.data import showers as S  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_size(n: int, repeats: int) -> dict:
    key = jax.random.key(0)
    t0 = time.perf_counter()
    jax.block_until_ready(S.simulate(key, n))  # compiles (incl. any re-simulation shapes)
    compile_s = time.perf_counter() - t0
    times, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), cpu_s()
        jax.block_until_ready(S.simulate(key, n))
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_s() - c0)
    med = statistics.median(times)
    return {"n": n, "compile_plus_first_run_s": round(compile_s, 3), "median_s": round(med, 4),
            "showers_per_s": round(n / med),
            "showers_per_cpu_s": round(n / statistics.median(cpus)),
            "peak_rss_gb": round(peak_rss_gb(), 2)}


def time_stream(total: int, per_call: int) -> dict:
    """The rate of a production of ``total`` showers as calls of ``per_call``.

    Outputs are dropped; this is how millions of showers are streamed (one batch of 1e6
    would hold about 20 GB of padded points at its peak).
    """
    key = jax.random.key(0)
    jax.block_until_ready(S.simulate(key, per_call))  # compiles
    t0, c0 = time.perf_counter(), cpu_s()
    for start in range(0, total, per_call):
        jax.block_until_ready(S.simulate(key, per_call, first_index=start))
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    return {"n": total, "per_call": per_call, "showers_per_s": round(total / wall),
            "showers_per_cpu_s": round(total / cpu), "peak_rss_gb": round(peak_rss_gb(), 2)}


def time_grids(n: int, repeats: int) -> float:
    s = S.simulate(jax.random.key(0), n)
    jax.block_until_ready(S.to_grids(s))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(S.to_grids(s))
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def reference_rate(n: int) -> float:
    path = ROOT / "tests" / "data" / "supa_reference.py"
    spec = importlib.util.spec_from_file_location("supa_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    t0 = time.perf_counter()
    mod.simulate(0, n)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000,300000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", type=int, default=300)
    parser.add_argument("--stream", type=int, default=1_000_000,
                        help="showers of the streamed production (0: skip)")
    parser.add_argument("--stream-call", type=int, default=250_000)
    args = parser.parse_args()
    sizes = [int(float(v)) for v in args.sizes.split(",")]
    rows = [time_size(n, args.repeats) for n in sizes]
    best = max(r["showers_per_s"] for r in rows)
    ref = reference_rate(args.reference) if args.reference else None
    out = {
        "benchmark": "showers",
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.devices()[0].platform,
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "config": "SUPA default: E0=65 GeV, 24 steps, dz=2",
        "sizes": rows,
        "stream": time_stream(args.stream, args.stream_call) if args.stream else None,
        "grids_showers_per_s_1e4": round(time_grids(10_000, args.repeats)),
        "best_showers_per_s": best,
        "goal_showers_per_s": 140_000,
        "plain_python_reference_showers_per_s": round(ref, 1) if ref else None,
        "speedup_vs_supa_140_per_s": round(best / 140.0),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
