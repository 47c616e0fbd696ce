"""OmniFold wall time (ANCHORS.md spec) and a vmapped bootstrap ensemble vs a Python loop.

Spec: 1D Gaussian example, 1e5 MC + 1e5 data events, smearing 0.5, 4 iterations, MLP
3x50, batch 10000, at most 20 epochs, early stopping patience 10, Adam 1e-3 (constant),
80/20 split, warm start. Peer figure: the ``omnifold`` 0.1.36 package takes 245 s on 2
CPU cores (plain Keras: 40 s); goal < 25 s.

Prints one JSON line: device, versions, the median wall time of ``--repeats`` full runs
(every run includes the engine's per-fit compilation; the first, cold run is reported
separately), an estimate of the compile time per classifier fit, the unfolded moments
(quality, against the closed-form IBU recursion), and the time of one step-1 classifier
training as an 8-member Poisson-bootstrap ensemble in one ``vmap`` vs 8 fits in a loop.

Usage: ``python benchmarks/omnifold.py [--repeats=3] [--n=100000] [--members=8]``.
Profile: ``python -m cProfile -s cumtime benchmarks/omnifold.py --repeats=1``.
"""

import json
import statistics
import sys
import time

import jax
import numpy as np

from jaxgen.classifiers import train_classifier
from jaxgen.methods import omnifold as of
from jaxgen.train import poisson_bootstrap_weights


def _args(argv):
    out = {"repeats": 3, "n": 100_000, "members": 8}
    for a in argv:
        k, v = a.lstrip("-").split("=")
        if k not in out:
            raise SystemExit(f"unknown option {a}; options: {sorted(out)}")
        out[k] = int(v)
    return out


def _data(n):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    gen = jax.random.normal(k[0], (n,))
    sim = gen + 0.5 * jax.random.normal(k[1], (n,))
    truth = 0.2 + 0.8 * jax.random.normal(k[2], (n,))
    data = truth + 0.5 * jax.random.normal(k[3], (n,))
    return gen, sim, data


def _omnifold(gen, sim, data, seed):
    res = of.omnifold(jax.random.PRNGKey(seed), gen=gen, sim=sim, data=data, n_iterations=4)
    return jax.block_until_ready(res)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv):
    a = _args(argv)
    gen, sim, data = _data(a["n"])
    x0, x1 = sim[:, None], data[:, None]
    cfg = of.OMNIFOLD_FIT_CONFIG
    cold, res = _timed(lambda: _omnifold(gen, sim, data, 0))
    times = [_timed(lambda i=i: _omnifold(gen, sim, data, i + 1))[0] for i in range(a["repeats"])]
    mean, std = of.weighted_moments(gen, res.push_weights[:, 0])
    ref_m, ref_s = of.gaussian_ibu_moments(
        prior_mean=0.0, prior_std=1.0, data_mean=0.2, data_std=0.8, smearing=0.5, n_iterations=4
    )
    # Compile per fit: a 1-epoch fit minus one epoch's run time (from a 6-epoch fit).
    import dataclasses

    c1 = dataclasses.replace(cfg, epochs=1, patience=None)
    c6 = dataclasses.replace(cfg, epochs=6, patience=None)
    key = jax.random.PRNGKey(7)
    t1 = statistics.median(
        _timed(lambda: train_classifier(key, x0, x1, config=c1))[0] for _ in range(3)
    )
    t6 = statistics.median(
        _timed(lambda: train_classifier(key, x0, x1, config=c6))[0] for _ in range(3)
    )
    epoch_s = (t6 - t1) / 5
    k = a["members"]
    boot = poisson_bootstrap_weights(jax.random.PRNGKey(3), k, 2 * a["n"])

    def ensemble():
        clf, _ = train_classifier(key, x0, x1, config=cfg, ensemble_size=k, member_weights=boot)
        return jax.block_until_ready(clf.params)

    def loop():
        out = []
        for i in range(k):
            clf, _ = train_classifier(
                jax.random.fold_in(key, i),
                x0,
                x1,
                w0=boot[i, : a["n"]],
                w1=boot[i, a["n"] :],
                config=cfg,
            )
            out.append(clf.params)
        return jax.block_until_ready(out)

    ens_cold, _ = _timed(ensemble)
    ens = statistics.median(_timed(ensemble)[0] for _ in range(max(1, a["repeats"] - 1)))
    loop_t = _timed(loop)[0]
    single = statistics.median(
        _timed(lambda: jax.block_until_ready(train_classifier(key, x0, x1, config=cfg)[0].params))[
            0
        ]
        for _ in range(max(1, a["repeats"] - 1))
    )
    print(
        json.dumps(
            {
                "benchmark": "omnifold_gaussian_4iter",
                "device": str(jax.devices()[0].device_kind),
                "platform": jax.default_backend(),
                "jax": jax.__version__,
                "n_mc": a["n"],
                "n_data": a["n"],
                "omnifold_4iter_cold_s": round(cold, 2),
                "omnifold_4iter_median_s": round(statistics.median(times), 2),
                "omnifold_4iter_all_s": [round(t, 2) for t in times],
                "fits_per_run": 8,
                "compile_per_fit_est_s": round(t1 - epoch_s, 3),
                "epoch_step1_s": round(epoch_s, 4),
                "unfolded_mean": np.round(np.asarray(mean), 4).tolist(),
                "unfolded_std": np.round(np.asarray(std), 4).tolist(),
                "closed_form_mean": np.round(ref_m, 4).tolist(),
                "closed_form_std": np.round(ref_s, 4).tolist(),
                "ensemble_members": k,
                "single_fit_s": round(single, 2),
                "ensemble_vmap_s": round(ens, 2),
                "ensemble_vmap_cold_s": round(ens_cold, 2),
                "ensemble_loop_s": round(loop_t, 2),
                "peer_omnifold_package_s": 245,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
