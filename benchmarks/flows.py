"""Normalizing-flow throughput: jaxgen against flowjax on the same spec, same run.

Spec (ANCHORS.md): RQS coupling flow, 8 layers, 8 bins, interval [-5, 5], conditioner
MLP 2x128, Adam 1e-3, batch 1024, float32; log_prob and sampling at batch 65536; 2D and
8D. Measures first-compile time of the training step, training steps/s (the bare jitted
step, and the engine's ``fit`` epoch, which adds batch gathering and bookkeeping),
log_prob and sampling events/s. Every rate is the median of ``--repeats`` timings after
warm-up, with ``block_until_ready``. flowjax (``pip install -e .[bench]``) is measured
with its own jitted step, loss and optimizer created once, and ``knots=7`` (= 8 bins).
The two libraries' timings of each quantity alternate (jaxgen, flowjax, jaxgen, ...), so
a ratio compares them under the same load even on a shared machine.

jaxgen's step is compiled as its training engine compiles it, with
``jaxgen.train.compiler_options()`` (on CPU: no YNNPACK fusions, see
``jaxgen/train/compiler.py``). flowjax's step is also timed compiled with the same
options (``flowjax_same_options``), so the share of the ratio that comes from the
compiler option and the share that comes from the library itself are both visible.

Usage::

    python benchmarks/flows.py [--repeats=5] [--dims=2,8] > flows.json

Prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.flows import coupling_flow
from jaxgen.train import FitConfig
from jaxgen.train import compiler_options
from jaxgen.train import fit

BATCH = 1024
EVAL_BATCH = 65536
STEPS = 20


def _rates(fns: dict, count: int, repeats: int) -> dict:
    """Median rates ``count / seconds`` of each callable, their timings interleaved.

    Each callable returns something to block on. Alternating the callables within each
    repeat exposes them all to the same background load.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t)
    return {name: count / float(np.median(ts)) for name, ts in times.items()}


def _train_loop(step, state, x):
    def run():
        s = state
        for _ in range(STEPS):
            s = step(*s, x)
        return s

    return run


def bench_jaxgen(dim: int, repeats: int) -> tuple[dict, dict]:
    """Returns ``(figures, timed)``: compile and ``fit`` figures, and the callables to time."""
    key = jax.random.key(0)
    flow, params = coupling_flow(key, dim=dim, num_layers=8, num_bins=8, tail_bound=5.0,
                                 hidden=(128, 128))
    opt = optax.adam(1e-3)
    x = jax.random.normal(jax.random.key(1), (BATCH, dim))

    def step_fn(p, s, xb):
        loss, g = jax.value_and_grad(lambda q: jnp.mean(flow.nll(q, xb)))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(step_fn, compiler_options=compiler_options())  # as in ``fit``

    state = (params, opt.init(params))
    t = time.perf_counter()
    jax.block_until_ready(step(*state, x))
    compile_s = time.perf_counter() - t
    # The engine: epochs of STEPS steps; time between epoch callbacks after the first.
    stamps = []
    data = jax.random.normal(jax.random.key(2), (BATCH * STEPS, dim))
    fit(lambda p, b, k: flow.nll(p, b), params, data, key=key,
        config=FitConfig(epochs=repeats + 2, batch_size=BATCH, val_fraction=0.0,
                         progress=False),
        callback=lambda e, info: stamps.append(time.perf_counter()))
    fit_rate = float(np.median(STEPS / np.diff(stamps[1:])))

    xe = jax.random.normal(jax.random.key(3), (EVAL_BATCH, dim))
    log_prob = jax.jit(flow.log_prob)
    sample = jax.jit(lambda p, k: flow.sample(p, k, EVAL_BATCH))
    timed = {"train": _train_loop(step, state, x), "log_prob": lambda: log_prob(params, xe),
             "sample": lambda: sample(params, key)}
    return {"compile_s": compile_s, "fit_steps_per_s": fit_rate}, timed


def bench_flowjax(dim: int) -> tuple[dict, dict] | None:
    """flowjax on the same spec: ``(figures, timed)`` as ``bench_jaxgen``, or None."""
    try:
        import equinox as eqx
        import paramax
        from flowjax.bijections import RationalQuadraticSpline
        from flowjax.distributions import Normal
        from flowjax.flows import coupling_flow as fj_coupling_flow
        from flowjax.train.losses import MaximumLikelihoodLoss
    except ImportError:
        return None
    key = jax.random.key(0)
    flow = fj_coupling_flow(key, base_dist=Normal(jnp.zeros(dim)),
                            transformer=RationalQuadraticSpline(knots=7, interval=5.0),
                            flow_layers=8, nn_width=128, nn_depth=2)
    params, static = eqx.partition(flow, eqx.is_inexact_array,
                                   is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
    loss_fn = MaximumLikelihoodLoss()
    opt = optax.adam(1e-3)
    x = jax.random.normal(jax.random.key(1), (BATCH, dim))

    def step_fn(p, s, xb):
        loss, g = eqx.filter_value_and_grad(loss_fn)(p, static, xb, key=key)
        u, s = opt.update(g, s, p)
        return eqx.apply_updates(p, u), s

    step = eqx.filter_jit(step_fn)
    same = jax.jit(step_fn, compiler_options=compiler_options())

    state = (params, opt.init(params))
    t = time.perf_counter()
    jax.block_until_ready(step(*state, x))
    compile_s = time.perf_counter() - t
    xe = jax.random.normal(jax.random.key(3), (EVAL_BATCH, dim))
    log_prob = eqx.filter_jit(lambda f, v: f.log_prob(v))
    sample = eqx.filter_jit(lambda f, k: f.sample(k, (EVAL_BATCH,)))
    timed = {"train": _train_loop(step, state, x), "log_prob": lambda: log_prob(flow, xe),
             "sample": lambda: sample(flow, key),
             "train_same_options": _train_loop(same, state, x)}
    return {"compile_s": compile_s}, timed


def main(argv: list[str]) -> None:
    repeats, dims = 5, (2, 8)
    for arg in argv:
        if arg.startswith("--repeats="):
            repeats = int(arg.split("=")[1])
        elif arg.startswith("--dims="):
            dims = tuple(int(d) for d in arg.split("=")[1].split(","))
        else:
            raise SystemExit(f"unknown argument {arg!r}")
    out = {
        "benchmark": "flows",
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "cpu": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "repeats": repeats,
        "results": {},
    }
    for dim in dims:
        figures, timed = bench_jaxgen(dim, repeats)
        row = {"jaxgen": figures}
        libs = {"jaxgen": timed}
        fj = bench_flowjax(dim)
        if fj is not None:
            import flowjax

            out["flowjax"] = getattr(flowjax, "__version__", "?")
            row["flowjax"], libs["flowjax"] = fj
        for what, count, key in (("train", STEPS, "train_steps_per_s"),
                                 ("log_prob", EVAL_BATCH, "log_prob_events_per_s"),
                                 ("sample", EVAL_BATCH, "sample_events_per_s")):
            fns = {lib: t[what] for lib, t in libs.items()}
            if what == "train" and fj is not None:
                fns["flowjax_same_options"] = libs["flowjax"]["train_same_options"]
            rates = _rates(fns, count, repeats)
            for lib, rate in rates.items():
                row.setdefault(lib, {})[key] = rate
        if fj is not None:
            row["ratio_jaxgen_over_flowjax"] = {
                k: row["jaxgen"][k] / row["flowjax"][k]
                for k in ("train_steps_per_s", "log_prob_events_per_s", "sample_events_per_s")
            }
            row["ratio_jaxgen_over_flowjax"]["compile_s"] = (
                row["jaxgen"]["compile_s"] / row["flowjax"]["compile_s"])
            row["ratio_jaxgen_over_flowjax"]["train_same_options"] = (
                row["jaxgen"]["train_steps_per_s"]
                / row["flowjax_same_options"]["train_steps_per_s"])
        out["results"][f"{dim}d"] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
