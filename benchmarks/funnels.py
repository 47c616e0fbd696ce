"""Funnel flow against a bijective flow on the 8x8 digits: training throughput and memory.

Models (as in ``experiments/funnels.py``, part c): dequantise (17 levels) -> logit ->
``L`` RQ-spline coupling layers at 64 dimensions -> a 2x2 funnel convolution 64 -> 16 ->
``L`` coupling layers at 16 dimensions (the funnel flow), against the same preprocessing
and ``2L`` coupling layers at 64 dimensions (the bijective flow). Conditioner MLP 2x128,
8 bins, Adam 1e-3, float32, batch 128 (the experiment's) and 1024.

Measures, per model and batch size: first compile of the jitted training step, training
steps/s and events/s (median of ``--repeats`` timings of 20 steps after warm-up,
``block_until_ready``), and memory: XLA's compiled estimate for the step (arguments,
outputs and temporaries, from ``memory_analysis``) and, on accelerators, the device's
peak bytes in use.

Usage::

    python benchmarks/funnels.py [--repeats=5] [--layers=4] > funnels.json

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

from jaxgen.data.digits import load_digits
from jaxgen.flows import CouplingLayer
from jaxgen.flows import FunnelConv2d
from jaxgen.flows import Logit
from jaxgen.flows import SplineTransformer
from jaxgen.flows import Stack
from jaxgen.flows import SurjectiveFlow
from jaxgen.flows import UniformDequantization

STEPS = 20


def _stack(dim: int, num: int) -> Stack:
    layer = CouplingLayer(dim, SplineTransformer(8, 5.0), (128, 128))
    return Stack(layer, num, np.arange(dim)[::-1][None].repeat(num, axis=0))


def build(kind: str, layers: int) -> SurjectiveFlow:
    """The funnel or the bijective digits flow."""
    pre = [UniformDequantization(64, 17), Logit(64)]
    if kind == "funnel":
        return SurjectiveFlow(64, pre + [_stack(64, layers), FunnelConv2d(8, 8, 1),
                                         _stack(16, layers)])
    return SurjectiveFlow(64, pre + [_stack(64, 2 * layers)])


def _digits(n: int) -> jax.Array:
    data = load_digits()[0].reshape(-1, 64).astype(np.float32)
    return jnp.asarray(data[np.arange(n) % data.shape[0]])


def bench(kind: str, layers: int, batch: int, repeats: int) -> dict:
    flow = build(kind, layers)
    params = flow.init(jax.random.key(0))
    opt = optax.adam(1e-3)
    x = _digits(batch)

    def step(p, s, k, xb):
        k, sub = jax.random.split(k)
        loss, g = jax.value_and_grad(lambda q: jnp.mean(flow.nll(q, xb, sub)))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, k

    state = (params, opt.init(params), jax.random.key(1))
    t = time.perf_counter()
    compiled = jax.jit(step).lower(*state, x).compile()
    jax.block_until_ready(compiled(*state, x))
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    step_bytes = None
    if mem is not None:
        step_bytes = int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                         + mem.temp_size_in_bytes)

    def run():
        s = state
        for _ in range(STEPS):
            s = compiled(*s, x)
        return s

    jax.block_until_ready(run())
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(run())
        rates.append(STEPS / (time.perf_counter() - t))
    steps_per_s = float(np.median(rates))
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "compile_s": compile_s,
        "train_steps_per_s": steps_per_s,
        "train_events_per_s": steps_per_s * batch,
        "step_memory_bytes": step_bytes,
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "params": int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params))),
        "latent_dim": flow.latent_dim,
    }


def main(argv: list[str]) -> None:
    repeats, layers, batches = 5, 4, (128, 1024)
    for arg in argv:
        if arg.startswith("--repeats="):
            repeats = int(arg.split("=")[1])
        elif arg.startswith("--layers="):
            layers = int(arg.split("=")[1])
        elif arg.startswith("--batches="):
            batches = tuple(int(b) for b in arg.split("=")[1].split(","))
        else:
            raise SystemExit(f"unknown argument {arg!r}")
    out = {
        "benchmark": "funnels",
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "cpu": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "repeats": repeats,
        "layers": layers,
        "results": {},
    }
    for batch in batches:
        row = {kind: bench(kind, layers, batch, repeats) for kind in ("funnel", "bijective")}
        row["speedup_funnel_over_bijective"] = (row["funnel"]["train_steps_per_s"]
                                                / row["bijective"]["train_steps_per_s"])
        out["results"][f"batch{batch}"] = row
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
