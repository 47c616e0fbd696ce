"""A fast TrackML track finder with learned seed filtering (arXiv:2105.01160, arXiv:2012.04533).

Claim (TrackML Throughput phase, arXiv:2105.01160): the winners reached an accuracy score
of about 0.944 at 0.56 s per event on 2 CPU cores (combined score S = 1.17), 0.944 at
1.1 s and 0.93 at 7.4 s; the state of the art when the challenge was designed was about
10 s per event. The cluster-shape paper (arXiv:2012.04533) removes most fake seed
doublets at 98 % efficiency, which makes combinatorial seeding cheaper. The goal set
for jaxgen: accuracy >= 0.93 at <= 1 s per event on 2 cores (S >= 1.1).

Here: full-scale simulated events (``jaxgen.data.trackml.simulate_event``, real
geometry) are reconstructed by ``jaxgen.methods.tracking.find_tracks`` with and without
the learned seed filter (a combined spatial + cluster doublet classifier trained on other
simulated events, cut at 98 % efficiency). Reported: the accuracy score, the
Throughput-phase score (primaries only), efficiency and fake rate vs pT and eta, seconds
per event (simulation excluded, everything else included; NumPy is single-threaded, the
filter's MLP runs in XLA on the available cores) and S; the real TrackML subset event is
scored against its truth and the complete real event 1001 (93,680 hits) is timed.

Command::

    python -m experiments.tracking            # 2 training + 3 test full-scale events
    python -m experiments.tracking --quick    # small events, < 1 min

Expected (full run, seed 0, 2 worker threads, 53 s in all on the quiet 2-core machine,
2026-11-24): without the filter accuracy 0.878, Throughput-phase score 0.950, efficiency
0.86 (particles with >= 4 hits, secondaries included), fake rate 0.059, 0.84 s per
event, S = 1.154; with the filter (2x32 MLP, trained on a 60 mm luminous region)
accuracy 0.885, Throughput-phase score 0.958, fake rate 0.007, 0.67 s per event
(0.64-0.73 s across events), S = 1.193, above the winners' 1.17. The filter keeps
7.9 % of the fake and 97.8 % of the true seed doublets of the test events. Real subset:
0.840 without the filter, 0.824 with it; the filter keeps 96.8 % of its true seed
doublets (per layer pair as on the simulated events, e.g. 92 % of the barrel-barrel
ones in both; the real event has more of those) and 4.6 % of its fakes. That is with
the digitisation calibrated on the real clusters (see ``jaxgen.data.trackml._simulate``);
before the calibration the filter lost ~20 % of the real barrel doublets and scored
0.745. Timing: 0.67-0.73 s per event with the filter over two quiet runs. Real event
1001: 0.64 s, 6046 tracks.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from experiments import not_checked
from jaxgen.data import trackml
from jaxgen.methods import trackseeding as ts
from jaxgen.methods.tracking import find_tracks
from jaxgen.methods.tracking import layer_table
from jaxgen.methods.tracking import prepare_hits
from jaxgen.metrics.trackml import analyze_tracks
from jaxgen.metrics.trackml import score_event
from jaxgen.metrics.trackml import throughput_score
from jaxgen.plot import save_figure

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "trackml_samples"
PT_EDGES = (0.1, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 100.0)
ETA_EDGES = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)


@dataclasses.dataclass(frozen=True)
class Config:
    """Event sizes and settings (defaults: full TrackML scale)."""

    n_events: int = 3
    n_train_events: int = 2
    n_particles: int = 9000
    n_noise: int = 17000
    filter_efficiency: float = 0.98
    filter_epochs: int = 20
    filter_vertex_sigma_z: float = 60.0
    real_subset: bool = True
    real_full: bool = True
    seed: int = 0

    def __post_init__(self):
        check_positive_fields(self, ("n_events", "n_train_events", "n_particles", "filter_epochs"))
        if self.n_noise < 0:
            raise ValueError(f"`n_noise` must be >= 0; got {self.n_noise}.")
        if not self.filter_vertex_sigma_z > 0:
            raise ValueError("`filter_vertex_sigma_z` must be > 0; got "
                             f"{self.filter_vertex_sigma_z}.")
        if not 0.0 < self.filter_efficiency < 1.0:
            raise ValueError(f"`filter_efficiency` must be in (0, 1); got "
                             f"{self.filter_efficiency}.")


QUICK = {"n_events": 1, "n_train_events": 1, "n_particles": 1000, "n_noise": 1900,
         "filter_epochs": 40, "real_full": False}


def _submission(event, track):
    n = len(track)
    return trackml.Submission(np.full(n, event.event_id, np.int64),
                              event.hits.hit_id.astype(np.int64), track)


def _timed(event, seed_filter):
    t0 = time.perf_counter()
    track = find_tracks(event.hits, event.cells, seed_filter=seed_filter)
    return track, time.perf_counter() - t0


def _performance(event, track, min_hits: int = 4):
    """Per-particle efficiency and per-track fake flags."""
    truth, parts = event.truth, event.particles
    tt = analyze_tracks(truth.particle_id, truth.weight, track)
    real_track = (tt.track_id > 0) & (tt.nhits >= min_hits)
    good = real_track & (2 * tt.major_nhits > tt.nhits) \
        & (2 * tt.major_nhits > tt.major_particle_nhits)
    sel = parts.nhits >= min_hits
    pt = np.hypot(parts.px, parts.py).astype(float)
    eta = np.arcsinh(parts.pz / np.maximum(pt, 1e-9))
    found = np.isin(parts.particle_id, tt.major_particle_id[good])
    # Track eta from its hits' mean position.
    rows = track > 0
    tid, inv = np.unique(track[rows], return_inverse=True)
    h = event.hits
    r = np.hypot(h.x[rows], h.y[rows])
    hit_eta = np.arcsinh(h.z[rows] / np.maximum(r, 1e-3))
    t_eta = np.bincount(inv, hit_eta) / np.bincount(inv)
    pos = np.searchsorted(tid, tt.track_id[real_track])
    return {"pt": pt[sel], "eta": eta[sel], "found": found[sel],
            "track_eta": t_eta[pos], "fake": ~good[real_track]}


def _binned(x, flag, edges):
    idx = np.digitize(x, edges) - 1
    out = []
    for i in range(len(edges) - 1):
        m = idx == i
        out.append(float(flag[m].mean()) if m.any() else float("nan"))
    return out


def run(config: Config, workdir: pathlib.Path | None = None) -> dict:
    """Reconstructs simulated and real events with and without the seed filter."""
    key = jax.random.key(config.seed)
    sim = trackml.SimConfig(n_particles=config.n_particles, n_noise=config.n_noise)
    layer_table()  # one-time set-up (the layer graph), not part of the time per event
    # The filter trains on a wide luminous region so that it cannot learn the test
    # events' vertex z (z0 is one of its features): trained at the default 5.5 mm it
    # keeps only 28 % of the true doublets of the real subset event, whose primary
    # vertices spread over +-100 mm.
    train_sim = dataclasses.replace(sim, vertex_sigma_z=config.filter_vertex_sigma_z)
    train = [trackml.simulate_event(jax.random.fold_in(key, 1000 + i), train_sim, event_id=i)
             for i in range(config.n_train_events)]
    fit_cfg = dataclasses.replace(ts.SEED_FIT_CONFIG, epochs=config.filter_epochs)
    seed_filter, filter_info = ts.train_seed_filter(
        jax.random.fold_in(key, 1), train, "combined", efficiency=config.filter_efficiency,
        fit_config=fit_cfg)
    events = [trackml.simulate_event(jax.random.fold_in(key, i), sim, event_id=100 + i)
              for i in range(config.n_events)]
    # Warm-up call: compiles the filter's classifier for the bucketed batch sizes.
    find_tracks(events[0].hits, events[0].cells, seed_filter=seed_filter)

    results = {}
    perf = {}
    for name, filt in (("no_filter", None), ("filter", seed_filter)):
        acc, thr, sec, perfs = [], [], [], []
        for i, ev in enumerate(events):
            track, dt = _timed(ev, filt)
            if i == 0 and filt is None:
                display_track = track
            sub = _submission(ev, track)
            acc.append(score_event(ev.truth, sub))
            thr.append(score_event(ev.truth, sub, primaries_only=True))
            sec.append(dt)
            perfs.append(_performance(ev, track))
        cat = {k: np.concatenate([p[k] for p in perfs]) for k in perfs[0]}
        perf[name] = cat
        a_thr, t_mean = float(np.mean(thr)), float(np.mean(sec))
        results[name] = {
            "accuracy": float(np.mean(acc)), "throughput_accuracy": a_thr,
            "seconds_per_event": t_mean, "seconds": sec,
            "S": throughput_score(a_thr, t_mean),
            "efficiency": float(cat["found"].mean()),
            "fake_rate": float(cat["fake"].mean()),
            "efficiency_vs_pt": _binned(cat["pt"], cat["found"], PT_EDGES),
            "efficiency_vs_eta": _binned(cat["eta"], cat["found"], ETA_EDGES),
            "fake_rate_vs_eta": _binned(cat["track_eta"], cat["fake"], ETA_EDGES),
        }

    # Seed counts and the filter's efficiency on the test events' doublets.
    filter_test = _filter_counts(events, seed_filter)
    n_true, filt_eff = filter_test["true_doublets"], filter_test["efficiency"]
    fake_kept = filter_test["fake_kept_fraction"]
    n_all = filter_test["doublets"]
    metrics = {"sim": results, "filter_training": filter_info, "filter_test": filter_test,
               "pt_edges": list(PT_EDGES), "eta_edges": list(ETA_EDGES)}

    timings = {"sim (no filter)": results["no_filter"]["seconds_per_event"],
               "sim (filter)": results["filter"]["seconds_per_event"]}
    if config.real_subset or config.real_full:
        if not SAMPLES.is_dir():
            raise ValueError(f"real TrackML samples not found at {SAMPLES}.")
    if config.real_subset:
        real = trackml.read_event(SAMPLES / "event000000001")
        real_m = {}
        for name, filt in (("no_filter", None), ("filter", seed_filter)):
            track, dt = _timed(real, filt)
            sub = _submission(real, track)
            real_m[name] = {"accuracy": score_event(real.truth, sub),
                            "throughput_accuracy": score_event(real.truth, sub,
                                                               primaries_only=True),
                            "seconds": dt}
        real_m["filter_doublets"] = _filter_counts([real], seed_filter)
        metrics["real_subset"] = real_m
        timings["real subset"] = real_m["no_filter"]["seconds"]
    if config.real_full:
        full = trackml.read_event(SAMPLES / "event000001001")
        track, dt = _timed(full, None)
        metrics["real_full"] = {"hits": len(track), "seconds": dt,
                                "tracks": int(len(np.unique(track[track > 0]))),
                                "assigned_fraction": float((track > 0).mean())}
        timings["real event 1001"] = dt
    metrics["timings"] = timings

    best = max(results.values(), key=lambda r: r["S"])
    # The speed claims are about full-scale events; a smaller run (the quick preset) does
    # not test them, so they are only checked at full scale.
    full_scale = config.n_particles >= 8000
    checks = []
    # The goal (A >= 0.93 at <= 1 s, S >= 1.1) is the 3rd winner's accuracy at the 2nd's
    # time; the winners' figures are those of the project's ANCHORS.md, 10 s is the abstract's.
    claim_winners = ("Throughput-phase winners' level on full-scale events: accuracy >= 0.93 "
                     "at <= 1 s/event, S >= 1.1")
    paper_winners = "A = 0.944 at 0.56 s, S = 1.17 (Throughput-phase winner, per ANCHORS.md)"
    claim_speed = "faster than the design-time state of the art (10 s/event) at full scale"
    measured_best = (f"A={best['throughput_accuracy']:.3f} t={best['seconds_per_event']:.2f}s "
                     f"S={best['S']:.3f} ({config.n_particles} particles)")
    if full_scale:
        checks += [
            check(claim_winners, measured_best,
                  best["throughput_accuracy"] >= 0.93 and best["seconds_per_event"] <= 1.0
                  and best["S"] >= 1.1, paper=paper_winners),
            check(claim_speed, f"{best['seconds_per_event']:.2f} s",
                  best["seconds_per_event"] < 10.0, paper="~10 s/event"),
        ]
    else:
        reason = "needs full-scale events (>= 8000 particles; the full preset)"
        checks += [not_checked(claim_winners, reason, measured_best, paper=paper_winners),
                   not_checked(claim_speed, reason, f"{best['seconds_per_event']:.2f} s",
                               paper="~10 s/event")]
    checks += [
        # Two binomial errors: the threshold is the e-quantile of the N_val true doublets
        # of the training events' held-out part, so its efficiency on the population has
        # sigma^2 = e (1 - e) / N_val, and the test events measure it with another
        # e (1 - e) / N_test.
        check(f"the seed filter keeps >= {config.filter_efficiency:.0%} of true doublets on "
              "held-out events (within 3 sigma)", f"{filt_eff:.4f} of {n_true}",
              filt_eff >= config.filter_efficiency - 3 * np.sqrt(
                  config.filter_efficiency * (1 - config.filter_efficiency)
                  * (1 / max(n_true, 1) + 1 / max(filter_info["val_true_doublets"], 1)))),
        # "most" taken literally (more than half); measured 0.08 at full scale. The
        # binomial error of the kept fraction, sqrt(0.25 / n_fakes) < 0.005 for the > 1e4
        # fakes of even the quick event, is negligible at this threshold.
        check("the seed filter removes most fake seed doublets",
              f"kept {fake_kept:.3f} of {n_all - n_true} fakes", fake_kept < 0.5),
    ]
    if config.real_subset:
        ra = metrics["real_subset"]["no_filter"]["accuracy"]
        # 0.75 is no statistical bound: a floor below the measured 0.84 (and above the
        # 0.745 the filtered tracker scored before the digitisation was calibrated)
        checks.append(check("the tracker transfers to real TrackML data (subset score > 0.75; "
                            "smoke check)", f"{ra:.3f}", ra > 0.75))
        # A track is lost only if all its seed doublets go, so the score may fall by at
        # most the fraction of true doublets that the filter drops on this event
        # (measured: 1 - its efficiency there).
        rf = metrics["real_subset"]["filter"]["accuracy"]
        lost = 1.0 - metrics["real_subset"]["filter_doublets"]["efficiency"]
        checks.append(check("the filter trained on simulation transfers to the real subset "
                            "(score within the share of true doublets it drops there)",
                            f"{rf:.3f} vs {ra:.3f} - {lost:.3f}", rf >= ra - lost))
    if config.real_full:
        checks.append(check("runs on the complete real event (93,680 hits) in < 10 s",
                            f"{metrics['real_full']['seconds']:.2f} s",
                            metrics["real_full"]["seconds"] < 10.0, paper="~10 s/event"))
    metrics["checks"] = checks
    if workdir is not None:
        _plot(workdir, events[0], display_track, metrics)
        # For the command line: python -m jaxgen.methods.tracking EVENT --out X.csv
        # --seed-filter RUN_DIR/seed_filter.npz
        ts.save_seed_filter(pathlib.Path(workdir) / "seed_filter.npz", seed_filter)
    return metrics


def _filter_counts(events, seed_filter) -> dict:
    """The filter's decisions on the events' seed doublets: efficiency and kept shares."""
    n_true = n_kept_true = n_all = n_kept = 0
    for ev in events:
        prep = prepare_hits(ev.hits)
        s = ts.seed_pairs(ev, prep)
        keep = seed_filter.keep(prep, seed_filter.hit_features(ev.hits, ev.cells), s.h1, s.h2)
        n_true += int(s.label.sum())
        n_kept_true += int(keep[s.label].sum())
        n_all += len(keep)
        n_kept += int(keep.sum())
    return {"true_doublets": n_true, "efficiency": n_kept_true / max(n_true, 1),
            "doublets": n_all, "kept_fraction": n_kept / max(n_all, 1),
            "fake_kept_fraction": (n_kept - n_kept_true) / max(n_all - n_true, 1)}


def _plot(workdir, event, track, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(13, 6))
    h = event.hits
    r = np.hypot(h.x, h.y)
    ax[0].scatter(h.x, h.y, s=0.2, c="0.8", rasterized=True)
    ax[1].scatter(h.z, r, s=0.2, c="0.8", rasterized=True)
    ids = np.unique(track[track > 0])
    show = ids[np.asarray(jax.random.permutation(jax.random.key(0), len(ids)))[:300]]
    cmap = plt.get_cmap("tab20")
    for i, t in enumerate(show):
        m = np.flatnonzero(track == t)
        m = m[np.argsort(r[m])]
        ax[0].plot(h.x[m], h.y[m], "-", lw=0.6, color=cmap(i % 20))
        ax[1].plot(h.z[m], r[m], "-", lw=0.6, color=cmap(i % 20))
    ax[0].set(xlabel="x (mm)", ylabel="y (mm)", title="found tracks (300 shown), x-y")
    ax[1].set(xlabel="z (mm)", ylabel="r (mm)", title="r-z")
    fig.tight_layout()
    save_figure(fig, pathlib.Path(workdir) / "tracking_event_display.png", dpi=90)

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.5))
    pt_c = np.sqrt(np.array(PT_EDGES[:-1]) * np.array(PT_EDGES[1:]))
    eta_c = 0.5 * (np.array(ETA_EDGES[:-1]) + np.array(ETA_EDGES[1:]))
    for name, style in (("no_filter", "o-"), ("filter", "s--")):
        res = metrics["sim"][name]
        ax[0].semilogx(pt_c, res["efficiency_vs_pt"], style, label=name)
        ax[1].plot(eta_c, res["efficiency_vs_eta"], style, label=f"efficiency, {name}")
        ax[1].plot(eta_c, res["fake_rate_vs_eta"], style, alpha=0.5,
                   label=f"fake rate, {name}")
    ax[0].set(xlabel="pT (GeV)", ylabel="efficiency", title="efficiency vs pT (>= 4 hits)")
    ax[1].set(xlabel="eta", title="efficiency and fake rate vs eta")
    ax[0].legend()
    ax[1].legend(fontsize=7)
    names = list(metrics["timings"])
    ax[2].bar(np.arange(len(names)), [metrics["timings"][n] for n in names])
    ax[2].set_xticks(np.arange(len(names)), names, rotation=20, fontsize=8)
    ax[2].set(ylabel="s / event", title="time per event (contended 2-core machine)")
    fig.tight_layout()
    save_figure(fig, pathlib.Path(workdir) / "tracking_performance.png", dpi=90)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
