"""Cluster shapes for track seeding (Fox, Huang, Isaacson, Ju, Nachman; arXiv:2012.04533).

Claim: a doublet classifier that sees the pixel clusters of both hits ("combined" =
spatial + cluster features) reaches a higher purity at 98 % efficiency than one on the
spatial features alone, in every bin of pT x |eta| (the paper: 1.5-4x, e.g. 0.068 vs
0.025 at pT > 1 GeV, |eta| < 1), starting from purities of 0.0003-0.01 before selection;
and a single cluster predicts the particle's direction.

Here: pairs of hits on consecutive pixel-barrel layers (volume 8) within a loose window
(``trackseeding.barrel_pairs``) of simulated full-scale events
(``jaxgen.data.trackml.simulate_event``, real geometry, cells digitised from the path
through the sensor) train three classifiers (spatial, cluster, combined); they are
evaluated on a held-out simulated event and on the real TrackML subset event (which has
cells). The singlet regressor predicts the direction of a pixel-barrel hit's particle.

Command::

    python -m experiments.trackseeding            # 2 train + 1 test full-scale events
    python -m experiments.trackseeding --quick    # 1 full-scale training event, 12 epochs

Expected (full run, seed 0, 67 s on the quiet 2-core machine): 2.2 M training and
1.1 M test pairs, purity before selection 0.015; purity at 98 % efficiency overall
spatial 0.198, cluster 0.072, combined 0.264; combined > spatial in 12/12 bins (e.g.
pT > 1 GeV, |eta| < 1: 0.171 -> 0.243; pT < 0.5, |eta| 2.1-3: 0.314 -> 0.412). Real
subset (classifiers trained on simulation): overall spatial 0.232, cluster 0.423,
combined 0.389 from 0.185 before selection. Singlet mean cos(true, predicted): spatial
0.844, combined 0.966.
The absolute purities are higher than the paper's because the pair window (|dphi| <=
0.12, |z0| <= 200 mm) is already a selection and the simulated beam spot is narrow.

The quick preset is one full-density training event and 12 epochs (the default's
density; about 35 s quiet): at a sixth of the pile-up (the former quick preset, 1500
particles) the spatial features alone are already pure and the overall claim failed
(0.51 vs 0.55), while at full density with one training event and 12 epochs it holds
(0.236 vs 0.219). The per-bin claim needs the full run's two training events and 20
epochs (one event, 12 epochs: 9 of the 10 bins with >= 500 true pairs), so the quick
preset reports it as NOT CHECKED. Quick run (seed 0, 310 s on the 2-core machine shared
with ~6 other jobs): 11/12 bins, overall combined 0.247 vs spatial 0.217, singlet mean
cos 0.911 vs 0.760, real subset 0.265 vs 0.215.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from experiments import not_checked
from jaxgen.data import trackml
from jaxgen.methods import trackseeding as ts
from jaxgen.methods.tracking._tracker import prepare_hits
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "trackml_samples"


@dataclasses.dataclass(frozen=True)
class Config:
    """Event sizes, training and evaluation settings (defaults: full TrackML scale)."""

    n_train_events: int = 2
    n_test_events: int = 1
    n_particles: int = 9000
    n_noise: int = 17000
    efficiency: float = 0.98
    epochs: int = 20
    hidden: tuple[int, ...] = (64, 64, 64)
    max_fakes_per_true: float = 20.0
    min_true_per_bin: int = 20
    singlet_hits: int = 20000
    real_event: bool = True
    seed: int = 0

    def __post_init__(self):
        check_positive_fields(self, ("n_train_events", "n_test_events", "n_particles", "epochs",
                                     "min_true_per_bin", "singlet_hits"))
        if self.n_noise < 0:
            raise ValueError(f"`n_noise` must be >= 0; got {self.n_noise}.")
        if not 0.0 < self.efficiency < 1.0:
            raise ValueError(f"`efficiency` must be in (0, 1); got {self.efficiency}.")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"`hidden` must be positive widths; got {self.hidden}.")
        if self.max_fakes_per_true <= 0:
            raise ValueError("`max_fakes_per_true` must be > 0.")


# full density (the claims are about full pile-up), one training event, 12 epochs
QUICK = {"n_train_events": 1, "epochs": 12, "singlet_hits": 5000}

# the per-bin claim needs the full run's statistics: measured, one training event and 12
# epochs hold it in 9 of 10 well-populated bins, two events and 20 epochs in 12/12
PER_BIN_MIN_TRAIN_EVENTS, PER_BIN_MIN_EPOCHS = 2, 20


def _pairs(events):
    out = []
    for ev in events:
        prep = prepare_hits(ev.hits)
        cluster = ts.hit_cluster_features(ev.hits, ev.cells)
        sample = ts.barrel_pairs(ev, prep)
        feats = {k: ts.pair_features(prep, cluster, sample.h1, sample.h2, k)
                 for k in ts.FEATURE_SETS}
        out.append((sample, feats))
    return out


def _concat(parts):
    samples = [p[0] for p in parts]
    sample = ts.PairSample(*(np.concatenate(c) for c in zip(*samples, strict=True)))
    feats = {k: np.concatenate([p[1][k] for p in parts]) for k in ts.FEATURE_SETS}
    return sample, feats


def _singlets(events, n_max: int, key):
    xs = {k: [] for k in ts.FEATURE_SETS}
    us = []
    for ev in events:
        prep = prepare_hits(ev.hits)
        cluster = ts.hit_cluster_features(ev.hits, ev.cells)
        sel = np.flatnonzero((ev.hits.volume_id == 8) & (ev.truth.particle_id != 0))
        for k in ts.FEATURE_SETS:
            xs[k].append(ts.singlet_inputs(prep, cluster, k)[sel])
        t = ev.truth
        us.append(np.stack([t.tpx, t.tpy, t.tpz], 1)[sel].astype(np.float64))
    u = np.concatenate(us)
    pick = np.asarray(jax.random.permutation(key, len(u)))[:n_max]
    return {k: np.concatenate(v)[pick] for k, v in xs.items()}, u[pick]


def run(config: Config, workdir: pathlib.Path | None = None) -> dict:
    """Trains and evaluates the seed classifiers and the singlet regressor."""
    key = jax.random.key(config.seed)
    sim = trackml.SimConfig(n_particles=config.n_particles, n_noise=config.n_noise)
    n_ev = config.n_train_events + config.n_test_events
    events = [trackml.simulate_event(jax.random.fold_in(key, i), sim, event_id=i)
              for i in range(n_ev)]
    train, test = events[:config.n_train_events], events[config.n_train_events:]
    tr_sample, tr_feats = _concat(_pairs(train))
    te_sample, te_feats = _concat(_pairs(test))
    fit_cfg = dataclasses.replace(ts.SEED_FIT_CONFIG, epochs=config.epochs)
    clfs = {}
    for i, k in enumerate(ts.FEATURE_SETS):
        clfs[k] = ts.train_doublet_classifier(
            jax.random.fold_in(key, 100 + i), tr_feats[k], tr_sample.label,
            hidden=config.hidden, config=fit_cfg,
            max_fakes_per_true=config.max_fakes_per_true)

    def evaluate(sample, feats):
        tables = {k: ts.purity_table(ts.logits(clfs[k], feats[k]), sample, config.efficiency,
                                     config.min_true_per_bin) for k in ts.FEATURE_SETS}
        overall = {k: ts.purity_at_efficiency(ts.logits(clfs[k], feats[k]), sample.label,
                                              config.efficiency) for k in ts.FEATURE_SETS}
        return tables, overall, float(sample.label.mean())

    sim_tables, sim_overall, sim_orig = evaluate(te_sample, te_feats)
    metrics = {
        "n_train_pairs": int(len(tr_sample.label)),
        "n_test_pairs": int(len(te_sample.label)),
        "sim": {"overall_purity": sim_overall, "original_purity": sim_orig,
                "bins": _rows(sim_tables)},
    }
    real_rows = None
    if config.real_event:
        if not SAMPLES.is_dir():
            raise ValueError(f"real TrackML samples not found at {SAMPLES}.")
        real = trackml.read_event(SAMPLES / "event000000001")
        r_sample, r_feats = _concat(_pairs([real]))
        real_tables, real_overall, real_orig = evaluate(r_sample, r_feats)
        real_rows = _rows(real_tables)
        metrics["real"] = {"overall_purity": real_overall, "original_purity": real_orig,
                           "n_pairs": int(len(r_sample.label)), "bins": real_rows}

    # Singlets: direction from one cluster.
    k_s = jax.random.fold_in(key, 200)
    s_tr, u_tr = _singlets(train, config.singlet_hits, k_s)
    s_te, u_te = _singlets(test, config.singlet_hits, jax.random.fold_in(k_s, 1))
    s_cfg = FitConfig(epochs=config.epochs, batch_size=256, learning_rate=1e-3,
                      schedule="constant", clip_norm=None, val_fraction=0.2, patience=5,
                      progress=False)
    singlet = {}
    for i, k in enumerate(ts.FEATURE_SETS):
        reg = ts.train_direction_regressor(jax.random.fold_in(k_s, 10 + i), s_tr[k], u_tr,
                                           config=s_cfg)
        pred = ts.predict_direction(reg, s_te[k])
        cos = np.sum(pred * u_te / np.linalg.norm(u_te, axis=1, keepdims=True), 1)
        singlet[k] = {"mean_cos": float(cos.mean()), "median_angle_rad":
                      float(np.median(np.arccos(np.clip(cos, -1, 1))))}
    metrics["singlet"] = singlet

    populated = [r for r in metrics["sim"]["bins"]
                 if np.isfinite(r["spatial"]) and np.isfinite(r["combined"])]
    better = [r["combined"] >= r["spatial"] for r in populated]
    per_bin_claim = ("combined >= spatial purity at 98% efficiency in every populated "
                     f"pT x |eta| bin (simulated, >= {config.min_true_per_bin} true pairs)")
    per_bin = f"{sum(better)}/{len(better)} bins"
    paper_bins = "combined best in every bin, 1.5-4x spatial"
    if config.n_train_events >= PER_BIN_MIN_TRAIN_EVENTS and config.epochs >= PER_BIN_MIN_EPOCHS:
        checks = [check(per_bin_claim, per_bin, bool(better) and all(better), paper=paper_bins)]
    else:
        checks = [not_checked(per_bin_claim, f"needs >= {PER_BIN_MIN_TRAIN_EVENTS} training "
                              f"events and >= {PER_BIN_MIN_EPOCHS} epochs (the full preset)",
                              per_bin, paper=paper_bins)]
    # Directional claims, strict comparisons: at 1e6 test pairs the purity at 98 %
    # efficiency has a binomial error of ~1e-3, far below the measured differences
    # (0.264 vs 0.198 full, 0.236 vs 0.219 quick), and the comparison did fail at a sixth
    # of the pile-up (0.51 vs 0.55).
    checks += [
        check("cluster shapes raise the overall purity at 98% efficiency (simulated)",
              f"combined {sim_overall['combined']:.4f} vs spatial "
              f"{sim_overall['spatial']:.4f}", sim_overall["combined"] > sim_overall["spatial"],
              paper="0.068 vs 0.025 at pT > 1 GeV, |eta| < 1"),
        check("a single cluster predicts the direction: combined beats spatial-only "
              "(mean cos)", f"{singlet['combined']['mean_cos']:.4f} vs "
              f"{singlet['spatial']['mean_cos']:.4f}",
              singlet["combined"]["mean_cos"] > singlet["spatial"]["mean_cos"]),
    ]
    if real_rows is not None:
        ro = metrics["real"]["overall_purity"]
        checks.append(check("on the real subset, combined >= spatial overall purity at 98% "
                            "efficiency", f"{ro['combined']:.4f} vs {ro['spatial']:.4f}",
                            ro["combined"] >= ro["spatial"],
                            paper="0.068 vs 0.025 at pT > 1 GeV, |eta| < 1"))
    metrics["checks"] = checks
    if workdir is not None:
        _plot(workdir, metrics)
    return metrics


def _rows(tables: dict) -> list[dict]:
    rows = []
    for i, base in enumerate(tables["spatial"]):
        row = {"pt": list(base["pt"]), "eta": list(base["eta"]), "n_true": base["n_true"],
               "n_pairs": base["n_pairs"], "original": base["original"]}
        for k in ts.FEATURE_SETS:
            row[k] = tables[k][i]["purity"]
        rows.append(row)
    return rows


def _plot(workdir, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("sim", "simulated (held out)")] + (
        [("real", "real TrackML subset")] if "real" in metrics else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (name, title) in zip(axes[0], panels, strict=True):
        rows = metrics[name]["bins"]
        x = np.arange(len(rows))
        for j, k in enumerate(("original", *ts.FEATURE_SETS)):
            ax.bar(x + (j - 1.5) * 0.2, [r[k] for r in rows], 0.2, label=k)
        ax.set_yscale("log")
        ax.set_xticks(x, [f"pT{r['pt'][0]:g}-{r['pt'][1]:g}\n|eta|{r['eta'][0]:g}-"
                          f"{r['eta'][1]:g}" for r in rows], fontsize=6, rotation=60)
        ax.set_ylabel("doublet purity at 98% efficiency")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, pathlib.Path(workdir) / "trackseeding_purity.png", dpi=90)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
