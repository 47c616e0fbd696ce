"""SUPA showers (arXiv:2202.05012): the vectorised simulator against a plain reference.

Claim: SUPA's discrete process (E0 = 65 GeV, 24 steps of dz = 2; per step each particle
stops, splits or passes; readout layers 5-8, 9-17, 18-27) gives calorimeter point clouds
cheaply. The released generator runs about 140 showers/s on one core; jaxgen's vectorised
simulator (one draw per particle for its whole path, pooled over the generations of the
split trees of a batch) should give the same statistics as the plain reference
implementation ``tests/data/supa_reference.py`` on the same configuration, conserve
energy exactly (read-out + escaped + unread = E0), and reach 1000x (140,000 showers/s,
timed at 100,000 showers per call: the rate of a large production).

Command::

    python -m experiments.showers            # 10,000 showers, 2,000 reference showers
    python -m experiments.showers --quick    # 8,192 showers, 400 reference showers

Expected (default configuration, measured here): points per layer about 19.9 / 50.6 /
1.7 (std 10 / 30 / 3.2); P(layer empty) about 0.001 / 0.006 / 0.68, so about 32% of
showers are kept by the reference's empty-layer cut; energy per layer about
40 / 25 / 0.009 GeV; read-out energy equal to E0 in 99.9% of showers; all agreement
z-scores below 5 (max 2.0 in the quick run; 3.4 in the default run, P(layer 1 empty)
0.0032 against the reference's 0.0085 there, while 200,000 against 20,000 showers give
0.00518 and 0.0053, z = 0.2); energy conserved to 1.4e-7. Throughput
depends on the machine: 160,000 showers/s (quick run in ``experiments.reproduce``) on 2
CPU cores of a shared VM, where the page faults of the fresh output buffer vary from run
to run and push single runs down to about 95,000/s (see ``benchmarks/showers.py``);
22 s in all (--quick: 17 s). When the 1-minute load average exceeds 1.5x the cores
(other jobs share the machine; 39,000/s was measured at load 8 on 2 cores), the
throughput claim is reported NOT CHECKED; the quick preset always reports it so (one
timing is too noisy to test an absolute rate).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import pathlib
import time

import jax
import numpy as np

from experiments import check
from experiments import main
from experiments import not_checked
from jaxgen.data import showers as S
from jaxgen.plot import save_figure

SUPA_SHOWERS_PER_S = 140.0  # the released generator on one core (ANCHORS.md)


@dataclasses.dataclass(frozen=True)
class Config:
    """Simulation size and the SUPA process parameters that are commonly changed."""

    n_showers: int = 10_000
    n_reference: int = 2_000  # showers from the plain Python reference (0: skip)
    throughput_showers: int = 100_000  # batch size of the throughput measurement (0: skip)
    seed: int = 0
    energy: float = 65.0
    n_steps: int = 24
    orientation: str = "reference"
    drop_empty: bool = True  # the reference's cut: keep showers with every layer hit
    throughput_goal: float = 1000 * SUPA_SHOWERS_PER_S
    # Test the throughput claim (else it is measured and reported NOT CHECKED): one
    # timing of the quick preset varies 77k-160k showers/s between runs on one machine.
    check_throughput: bool = True
    z_max: float = 5.0  # agreement threshold of the two-sample z-tests

    def __post_init__(self) -> None:
        if self.n_showers < 2:
            raise ValueError(f"`n_showers` must be >= 2; got {self.n_showers}.")
        if self.n_reference < 0 or self.n_reference == 1:
            raise ValueError(f"`n_reference` must be 0 or >= 2; got {self.n_reference}.")
        if self.throughput_showers < 0:
            raise ValueError(
                f"`throughput_showers` must be >= 0; got {self.throughput_showers}.")
        if self.throughput_goal <= 0 or self.z_max <= 0:
            raise ValueError("`throughput_goal` and `z_max` must be > 0.")
        self.shower_config()  # validates energy, n_steps, orientation

    def shower_config(self) -> S.ShowerConfig:
        """The simulator configuration."""
        return S.ShowerConfig(energy=self.energy, n_steps=self.n_steps,
                              orientation=self.orientation)


QUICK = {"n_showers": 8192, "n_reference": 400, "check_throughput": False}


def _reference_module():
    path = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "supa_reference.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("supa_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _throughput(key: jax.Array, n: int, cfg: S.ShowerConfig,
                repeats: int = 3) -> tuple[float, float]:
    """``(showers/s, compile + first call s)`` at batch size ``n`` (NaNs for ``n == 0``).

    The rate is the median of ``repeats`` timed calls after the first, compiling, one
    (with the same key, it also compiles any re-simulation shapes).
    """
    if n == 0:
        return math.nan, math.nan
    print(f"timing {n} showers per call (compiling)...", flush=True)
    t0 = time.perf_counter()
    jax.block_until_ready(S.simulate(key, n, cfg))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(S.simulate(key, n, cfg))
        times.append(time.perf_counter() - t0)
    return n / float(np.median(times)), compile_s


def _z(a: np.ndarray, b: np.ndarray) -> float:
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return abs(a.mean() - b.mean()) / se if se > 0 else float(a.mean() != b.mean()) * 1e9


def _z_frac(a: np.ndarray, b: np.ndarray) -> float:
    p = (a.sum() + b.sum()) / (a.size + b.size)
    se = math.sqrt(p * (1 - p) * (1 / a.size + 1 / b.size))
    return abs(a.mean() - b.mean()) / se if se > 0 else 0.0


def run(config: Config, workdir: pathlib.Path | None = None) -> dict:
    """Simulates, compares with the reference, and writes plots to ``workdir``."""
    cfg = config.shower_config()
    key = jax.random.key(config.seed)
    print(f"simulating {config.n_showers} showers...", flush=True)
    s = S.simulate(key, config.n_showers, cfg)
    rate, compile_s = _throughput(key, config.throughput_showers, cfg)
    # 1-minute load average over the timing; the simulator itself keeps every core busy
    load = os.getloadavg()[0]
    n_cpu = len(os.sched_getaffinity(0))
    counts = np.asarray(s.counts, np.float64)
    energy = np.asarray(s.layer_energy, np.float64)
    e0 = np.asarray(s.energy, np.float64)
    kept = np.asarray(s.kept)
    readout = energy.sum(-1)
    balance = np.abs(readout + np.asarray(s.escaped) + np.asarray(s.unread) - e0) / e0
    metrics = {
        "n_showers": config.n_showers,
        "p_empty": (counts == 0).mean(0),
        "points_mean": counts.mean(0),
        "points_std": counts.std(0),
        "points_mean_kept": counts[kept].mean(0) if kept.any() else [math.nan] * 3,
        "points_std_kept": counts[kept].std(0) if kept.any() else [math.nan] * 3,
        "energy_mean": energy.mean(0),
        "energy_std": energy.std(0),
        # read-out energy equals E0 exactly when nothing escaped or stopped unread
        "frac_full_energy": float(((np.asarray(s.escaped) == 0)
                                   & (np.asarray(s.unread) == 0)).mean()),
        "kept_fraction": float(kept.mean()),
        "dropped_fraction": float(1 - kept.mean()) if config.drop_empty else 0.0,
        "showers_per_s": rate,
        "load_average_1min": load,
        "compile_s": compile_s,
        "max_energy_imbalance": float(balance.max()),
    }
    speed = f"{rate:.0f} showers/s; " if config.throughput_showers else ""
    print(f"{speed}points/layer {np.round(counts.mean(0), 2)}; kept {kept.mean():.3f}",
          flush=True)
    checks = []
    ref = _reference_module() if config.n_reference else None
    if ref is not None:
        print(f"reference: {config.n_reference} showers (plain Python)...", flush=True)
        t0 = time.perf_counter()
        r = ref.simulate(config.seed + 1, config.n_reference, cfg)
        metrics["reference_showers_per_s"] = config.n_reference / (time.perf_counter() - t0)
        zs = {}
        for k in range(cfg.n_layers):
            zs[f"points_{k}"] = _z(counts[:, k], r["counts"][:, k].astype(float))
            zs[f"energy_{k}"] = _z(energy[:, k], r["layer_energy"][:, k])
            zs[f"empty_{k}"] = _z_frac(counts[:, k] == 0, r["counts"][:, k] == 0)
        zs["kept"] = _z_frac(kept, (r["counts"] > 0).all(-1))
        metrics["reference_z"] = zs
        worst = max(zs.values())
        # 10 two-sample z-tests (3 layers x points, energy, P(empty); the kept fraction):
        # if the simulators agree, P(max |z| > 5) <= 10 * 5.7e-7; a difference of 5
        # standard errors of the comparison (e.g. 2.6 of the ~20 points in layer 0 at
        # the quick preset's 400 reference showers) fails it.
        checks.append(check(
            f"per-layer points, energy, P(empty) and kept fraction agree with the plain "
            f"reference (max two-sample z <= {config.z_max})", worst, worst <= config.z_max))
    # float32 bookkeeping: every split rounds each daughter's energy (relative 6e-8), and
    # the read-out sum adds up to ~1e2 points per layer, so the relative imbalance is at
    # most ~1e2 unit roundoffs (6e-6); measured 1.4e-7, any lost particle is >= 1e-3.
    checks.append(check("energy conserved: read-out + escaped + unread = E0 (rel. <= 1e-5)",
                        metrics["max_energy_imbalance"],
                        metrics["max_energy_imbalance"] <= 1e-5))
    if config.throughput_showers:
        claim = (f"throughput >= {config.throughput_goal:.0f} showers/s at "
                 f"{config.throughput_showers} per call (1000x SUPA's 140/s; machine-dependent, "
                 f"{jax.devices()[0].platform})")
        paper = f"{SUPA_SHOWERS_PER_S:.0f} showers/s (released generator, one core)"
        # A throughput is only measured on a machine the run has to itself: with a load
        # above 1.5x the cores (the simulator alone accounts for ~1x), other jobs take
        # the cores and the timing says nothing about the simulator.
        if not config.check_throughput:
            checks.append(not_checked(
                claim, "an absolute, machine-dependent rate: one timing varies 77k-160k/s "
                "between runs on one 2-core machine; the full preset and "
                "benchmarks/showers.py (beside the SUPA code) test it", rate, paper=paper))
        elif load > 1.5 * n_cpu:
            checks.append(not_checked(claim, f"machine shared: load {load:.1f} on {n_cpu} "
                                      "cores during the timing", rate, paper=paper))
        else:
            checks.append(check(claim, rate, rate >= config.throughput_goal, paper=paper))
    metrics["checks"] = checks
    if workdir is not None:
        _plots(s, cfg, kept, workdir)
    return metrics


def _plots(s: S.Showers, cfg: S.ShowerConfig, kept: np.ndarray, workdir: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, _ = S.to_grids(s, cfg)
    sel = kept if kept.any() else np.ones_like(kept)
    fig, axes = plt.subplots(1, cfg.n_layers, figsize=(4 * cfg.n_layers, 3.5))
    for k, ax in enumerate(np.atleast_1d(axes)):
        mean = np.asarray(images[k])[sel].mean(0)
        half = cfg.grid_extent[k]
        im = ax.imshow(np.log10(mean.T + 1e-3), origin="lower", aspect="auto",
                       interpolation="nearest",
                       extent=(-half, half, -half, half))
        fig.colorbar(im, ax=ax, label="log10 mean E [MeV]")
        ax.set_title(f"layer {k}: mean image ({sel.sum()} showers)")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.tight_layout()
    save_figure(fig, workdir / "mean_images.png", dpi=90)

    pts, counts = np.asarray(s.points), np.asarray(s.counts)
    idx = np.flatnonzero(sel)[:3]
    fig, axes = plt.subplots(len(idx), cfg.n_layers, figsize=(4 * cfg.n_layers, 3.3 * len(idx)),
                             squeeze=False)
    for row, i in enumerate(idx):
        for k in range(cfg.n_layers):
            p = pts[i, k, : counts[i, k]]
            ax = axes[row, k]
            ax.scatter(p[:, 0], p[:, 1], s=200 * p[:, 2] / max(p[:, 2].max(), 1e-9) + 2,
                       alpha=0.6)
            ax.set_title(f"shower {i}, layer {k}: {len(p)} points")
    fig.tight_layout()
    save_figure(fig, workdir / "point_clouds.png", dpi=80)

    energy = np.asarray(s.layer_energy)
    fig, axes = plt.subplots(2, cfg.n_layers, figsize=(4 * cfg.n_layers, 6.5))
    for k in range(cfg.n_layers):
        edges = np.arange(counts[:, k].max() + 2) - 0.5  # one bin per integer count
        axes[0, k].hist(counts[:, k], bins=edges, histtype="step", label="all")
        axes[0, k].hist(counts[sel, k], bins=edges, histtype="step", label="kept")
        axes[0, k].set_xlabel(f"points in layer {k}")
        axes[0, k].legend()
        axes[1, k].hist(energy[:, k], bins=40, histtype="step", log=True)
        axes[1, k].set_xlabel(f"energy in layer {k} [GeV]")
    fig.tight_layout()
    save_figure(fig, workdir / "distributions.png", dpi=80)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
