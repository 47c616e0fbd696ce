"""CWoLa-hunting k-fold ensemble: all folds x members in one vmap vs a Python loop of fits.

Spec (issue 19): 5 folds x 10 members = 50 classifiers, the 64-32-16-4 network of
arXiv:2104.02092 (dropout 0.2, Adam b1 0.8, b2 0.99), 120k events with 4 features, the
CWoLa class weights, the engine's 20 % validation split, wall time for 100 epochs.
Goal: the 50-model ensemble in under 2 minutes on 2 CPU cores and >= 5x the loop.

Timing: each variant is trained for ``--e0`` and ``--e1`` epochs (early stopping off),
warm (compiled once before); the per-epoch time is the slope ``(t1 - t0) / (e1 - e0)``
and the per-fit overhead the intercept, each a median over ``--repeats``. The 100-epoch
figures are extrapolated from them (``*_extrapolated_*`` keys), unless ``--full=1``,
which also times the vmapped 100-epoch fit itself. The loop runs ``--loop_members`` of
the 50 fits (the same fits: same loss, optimizer, weights and data, one member each) and
is extrapolated to 50. The machine's 1-minute load average is reported: on a shared
machine timings measure the other jobs too.

The generator's events/s (also asked for in issue 19) belongs with the dijet generator
(``jaxgen.data``) and is not measured here.

Usage, from the repository root: ``python -m benchmarks.anomaly [--n=120000]
[--batch=20480] [--repeats=3] [--e0=2] [--e1=5] [--loop_members=2] [--full=0]``.
"""

import dataclasses
import functools
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.methods import cwola
from jaxgen.train import fit
from jaxgen.train import fit_ensemble

N_FOLDS, N_MEMBERS = 5, 10


def _args(argv):
    out = {"n": 120_000, "batch": 20480, "repeats": 3, "e0": 2, "e1": 5, "loop_members": 2,
           "full": 0, "epochs": 100}
    for a in argv:
        k, v = a.lstrip("-").split("=")
        if k not in out:
            raise SystemExit(f"unknown option {a}; options: {sorted(out)}")
        out[k] = int(v)
    return out


def _setup(n):
    k = jax.random.split(jax.random.key(0), 5)
    # A falling mjj spectrum and 4 features; only shapes and weights matter for timing.
    mjj = 3.5 + 0.2 * jax.random.normal(k[0], (n,))
    region = jnp.select([mjj < 3.1, mjj < 3.3, mjj < 3.7, mjj < 3.9], [0, 1, 2, 3], 0)
    x = jax.random.normal(k[1], (n, 4))
    folds = cwola.assign_folds(k[2], n, N_FOLDS)
    mf = cwola.member_folds(N_FOLDS, N_MEMBERS)
    weights = jax.vmap(functools.partial(cwola._cwola_weights, region))(
        folds[None, :] != mf[:, None]
    )
    xs = (x - x.mean(0)) / x.std(0)
    model = cwola.cwola_network()
    params = jax.vmap(model.init, in_axes=(0, None))(jax.random.split(k[3], mf.shape[0]), xs[:1])
    data = {"x": xs, "y": (region == cwola.SR).astype(jnp.float32)}
    return model, params, data, weights


CPU_S = []  # process CPU seconds of every _timed call, in order


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    CPU_S.append(time.process_time() - c)
    return time.perf_counter() - t


def main(argv):
    a = _args(argv)
    model, params, data, weights = _setup(a["n"])
    loss = cwola._loss(model, True)
    base = dataclasses.replace(cwola.CWOLA_FIT_CONFIG, batch_size=a["batch"], patience=None)
    opt = cwola.cwola_optimizer(base.learning_rate)
    key = jax.random.key(1)

    def vmapped(epochs):
        cfg = dataclasses.replace(base, epochs=epochs)
        return fit_ensemble(loss, params, data, key=key, config=cfg, weights=weights,
                            optimizer=opt).params

    def loop(epochs, members):
        cfg = dataclasses.replace(base, epochs=epochs)
        out = []
        for i in range(members):
            p = jax.tree_util.tree_map(lambda t, i=i: t[i], params)
            out.append(fit(loss, p, data, key=jax.random.fold_in(key, i), config=cfg,
                           weights=weights[i], optimizer=opt).params)
        return out

    e0, e1, m = a["e0"], a["e1"], a["loop_members"]
    vmap_cold = _timed(lambda: vmapped(1))
    loop_cold = _timed(lambda: loop(1, 1))

    def slope(fn):
        t0s, t1s, c0s, c1s = [], [], [], []
        for _ in range(a["repeats"]):  # interleaved, so a load change hits both
            t0s.append(_timed(lambda: fn(e0)))
            c0s.append(CPU_S[-1])
            t1s.append(_timed(lambda: fn(e1)))
            c1s.append(CPU_S[-1])
        t0, t1 = statistics.median(t0s), statistics.median(t1s)
        per_epoch = (t1 - t0) / (e1 - e0)
        cpu_epoch = (statistics.median(c1s) - statistics.median(c0s)) / (e1 - e0)
        return per_epoch, t0 - e0 * per_epoch, t0s, t1s, cpu_epoch

    v_epoch, v_over, v0, v1, v_cpu = slope(vmapped)
    l_epoch, l_over, l0, l1, l_cpu = slope(lambda e: loop(e, m))
    n_models = N_FOLDS * N_MEMBERS
    ep = a["epochs"]
    vmap_total = v_over + ep * v_epoch
    loop_total = n_models / m * (l_over + ep * l_epoch)
    out = {
        "benchmark": "cwola_kfold_ensemble",
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.default_backend(),
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "load_avg_1min_start_end": None,
        "n_events": a["n"],
        "features": 4,
        "network": "64-32-16-4, dropout 0.2",
        "models": n_models,
        "batch_size": a["batch"],
        "val_fraction": base.val_fraction,
        "vmap_cold_1epoch_s (compile + 1 epoch)": round(vmap_cold, 2),
        "loop_cold_1fit_1epoch_s": round(loop_cold, 2),
        "vmap_epoch_s (50 models)": round(v_epoch, 3),
        "vmap_overhead_s": round(v_over, 3),
        "vmap_times_e0_e1_s": [[round(t, 2) for t in v0], [round(t, 2) for t in v1]],
        "loop_epoch_per_model_s": round(l_epoch / m, 4),
        "loop_overhead_per_fit_s": round(l_over / m, 3),
        "loop_times_e0_e1_s": [[round(t, 2) for t in l0], [round(t, 2) for t in l1]],
        f"vmap_{ep}_epochs_extrapolated_s": round(vmap_total, 1),
        f"loop_{ep}_epochs_extrapolated_s": round(loop_total, 1),
        "speedup_vmap_over_loop": round(loop_total / vmap_total, 2),
        # CPU seconds are steadier than wall time on a shared machine.
        "vmap_epoch_cpu_s (50 models)": round(v_cpu, 3),
        "loop_epoch_cpu_s (50 models)": round(l_cpu * n_models / m, 3),
        "speedup_per_epoch_cpu": round(l_cpu * n_models / m / v_cpu, 2),
        "goal": "vmap < 120 s on 2 CPU cores and >= 5x the loop",
    }
    if a["full"]:
        out[f"vmap_{ep}_epochs_measured_s"] = round(_timed(lambda: vmapped(ep)), 1)
    out["load_avg_1min_start_end"] = [round(START_LOAD, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out))


START_LOAD = os.getloadavg()[0]

if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main(sys.argv[1:])
