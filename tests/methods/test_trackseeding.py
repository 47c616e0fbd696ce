"""Cluster-shape seeding: hit features against a direct per-hit computation, pair features
against their definitions, purity-at-efficiency arithmetic, the seed filter's efficiency on
held-out events, the singlet regressor, bad inputs and the experiment's quick preset."""

import pathlib

import jax
import numpy as np
import pytest

from experiments import make_config
from jaxgen.data import trackml
from jaxgen.methods import trackseeding as ts
from jaxgen.methods.tracking import find_tracks
from jaxgen.methods.tracking import prepare_hits
from jaxgen.methods.tracking.__main__ import main as cli_main
from jaxgen.train import FitConfig

SAMPLES = pathlib.Path(__file__).resolve().parents[1] / "data" / "trackml_samples"
# The tracking tests' medium config (the simulation kernel compiles once per config).
SIM = trackml.SimConfig(n_particles=1200, n_noise=6600)
FAST_FIT = FitConfig(epochs=4, batch_size=512, learning_rate=2e-3, schedule="constant",
                     clip_norm=None, val_fraction=0.2, patience=3, progress=False)


@pytest.fixture(scope="module")
def events():
    return [trackml.simulate_event(jax.random.key(20 + i), SIM, event_id=i) for i in range(2)]


def test_hit_cluster_features_match_per_hit_loop(events):
    ev = events[0]
    feats = ts.hit_cluster_features(ev.hits, ev.cells)
    assert feats.shape == (len(ev.hits.hit_id), len(ts.HIT_FEATURES))
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ev.hits.hit_id), 30, replace=False):
        m = ev.cells.hit_id == ev.hits.hit_id[i]
        c0, c1 = ev.cells.ch0[m], ev.cells.ch1[m]
        want = [c0.min(), c1.min(), c0.max(), c1.max(), np.ptp(c0) + 1, np.ptp(c1) + 1,
                ev.cells.value[m].sum()]
        np.testing.assert_allclose(feats[i], want, rtol=1e-5)


def test_pair_features_definitions(events):
    ev = events[0]
    prep = prepare_hits(ev.hits)
    cluster = ts.hit_cluster_features(ev.hits, ev.cells)
    h1, h2 = np.array([10, 20]), np.array([300, 400])
    sp = ts.pair_features(prep, cluster, h1, h2, "spatial")
    r1, r2 = prep.r[h1], prep.r[h2]
    z1, z2 = prep.xyz[h1, 2], prep.xyz[h2, 2]
    np.testing.assert_allclose(sp[:, 1], z2 - z1, rtol=1e-5)
    np.testing.assert_allclose(sp[:, 2], r2 - r1, rtol=1e-5)
    np.testing.assert_allclose(sp[:, 4], z1 - r1 * (z2 - z1) / (r2 - r1), rtol=1e-4,
                               atol=1e-3)
    comb = ts.pair_features(prep, cluster, h1, h2, "combined")
    assert comb.shape == (2, 6 + 14)
    np.testing.assert_array_equal(comb[:, 6:13], cluster[h1])
    ctx = ts.pair_features(prep, cluster, h1, h2, "cluster", context=True)
    assert ctx.shape == (2, 14 + 4)
    tri = ts.triplet_features(prep, cluster, np.array([[10, 300, 500]]), "combined")
    assert tri.shape == (1, 14 + 21)


def test_purity_at_efficiency_arithmetic():
    # 100 true scores 1..100, 900 fakes at 0.5 and 100 fakes at 50.5: the 98 % cut is the
    # third-smallest true score (3), which passes 98 trues and the 100 fakes at 50.5.
    true = np.arange(1.0, 101.0)
    scores = np.r_[true, np.full(900, 0.5), np.full(100, 50.5)]
    labels = np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    assert ts.threshold_at_efficiency(scores, labels, 0.98) == 3.0
    assert ts.purity_at_efficiency(scores, labels, 0.98) == pytest.approx(98 / 198)


def test_purity_table_bins(events):
    ev = events[0]
    sample = ts.barrel_pairs(ev)
    assert 0 < sample.label.mean() < 0.5
    rows = ts.purity_table(sample.label.astype(float), sample, 0.98, min_true=1)
    assert len(rows) == 12
    # A perfect classifier has purity 1 wherever there are true pairs.
    for r in rows:
        if r["n_true"] >= 1:
            assert r["purity"] == 1.0
            assert r["original"] <= 1.0


def test_seed_filter_keeps_98_percent_on_held_out_events(events, tmp_path):
    train, test = events
    filt, info = ts.train_seed_filter(jax.random.key(0), [train], "combined",
                                      fit_config=FAST_FIT)
    assert info["kept_fraction"] < 0.7
    prep = prepare_hits(test.hits)
    s = ts.seed_pairs(test, prep)
    keep = filt.keep(prep, filt.hit_features(test.hits, test.cells), s.h1, s.h2)
    n_true = int(s.label.sum())
    eff = keep[s.label].mean()
    # The cut is the 2 % quantile of the training event's held-out true doublets (N_val
    # of them); on an independent event the efficiency scatters around 0.98 by the
    # binomial errors of both samples, sigma = sqrt(0.98 * 0.02 * (1/N_val + 1/N_test)).
    n_val = info["n_doublets"] * info["true_fraction"] / 5
    sigma = np.sqrt(0.98 * 0.02 * (1 / n_val + 1 / n_true))
    assert eff >= 0.98 - 3 * sigma
    # The filtered tracker still reconstructs the event.
    track = find_tracks(test.hits, test.cells, seed_filter=filt)
    assert (track > 0).mean() > 0.5
    # Saved and loaded, the filter is the same function of the doublets.
    path = tmp_path / "filter.npz"
    ts.save_seed_filter(path, filt)
    again = ts.load_seed_filter(path)
    assert (again.kind, again.threshold) == (filt.kind, filt.threshold)
    x = ts.pair_features(prep, filt.hit_features(test.hits, test.cells), s.h1, s.h2,
                         filt.kind, context=True)
    np.testing.assert_array_equal(ts.logits(again.classifier, x), ts.logits(filt.classifier, x))
    np.testing.assert_array_equal(find_tracks(test.hits, test.cells, seed_filter=again), track)
    # The command line reads it.
    out = tmp_path / "sub.csv"
    assert cli_main([str(SAMPLES / "event000000001"), "--out", str(out),
                     "--seed-filter", str(path)]) == 0
    assert cli_main([str(SAMPLES / "event000000001"), "--out", str(out),
                     "--seed-filter", str(tmp_path / "missing.npz")]) == 2
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="header"):
        ts.load_seed_filter(tmp_path / "other.npz")


def test_direction_regressor_learns_from_clusters(events):
    ev = events[0]
    prep = prepare_hits(ev.hits)
    cluster = ts.hit_cluster_features(ev.hits, ev.cells)
    sel = np.flatnonzero((ev.hits.volume_id == 8) & (ev.truth.particle_id != 0))
    t = ev.truth
    u = np.stack([t.tpx, t.tpy, t.tpz], 1)[sel].astype(float)
    sel = sel[:3000]
    x = ts.singlet_inputs(prep, cluster, "combined")[sel]
    u = u[:3000]
    fit_cfg = FitConfig(epochs=5, batch_size=128, learning_rate=2e-3, schedule="constant",
                        clip_norm=None, val_fraction=0.2, patience=3, progress=False)
    reg = ts.train_direction_regressor(jax.random.key(1), x, u, config=fit_cfg)
    pred = ts.predict_direction(reg, x)
    np.testing.assert_allclose(np.linalg.norm(pred, axis=1), 1.0, rtol=1e-6)
    cos = np.sum(pred * u / np.linalg.norm(u, axis=1, keepdims=True), 1)
    # A random direction has mean cos 0 (sd 1/sqrt(3) per hit); hits point outwards, so
    # position alone gives ~0.8; we only require clearly better than random.
    assert cos.mean() > 0.5


def test_bad_inputs(events):
    ev = events[0]
    with pytest.raises(ValueError, match="cells"):
        ts.hit_cluster_features(ev.hits, None)
    with pytest.raises(ValueError, match="kind"):
        ts.pair_features(prepare_hits(ev.hits), None, np.array([0]), np.array([1]), "shape")
    with pytest.raises(ValueError, match="cluster"):
        ts.pair_features(prepare_hits(ev.hits), None, np.array([0]), np.array([1]), "combined")
    with pytest.raises(ValueError, match="efficiency"):
        ts.threshold_at_efficiency(np.ones(3), np.ones(3, bool), 1.5)
    with pytest.raises(ValueError, match="labels"):
        ts.train_doublet_classifier(jax.random.key(0), np.ones((4, 2)), np.ones(4, bool))
    with pytest.raises(ValueError, match="features"):
        ts.train_doublet_classifier(jax.random.key(0), np.full((4, 2), np.nan),
                                    np.array([0, 1, 0, 1], bool))
    with pytest.raises(ValueError, match="directions"):
        ts.train_direction_regressor(jax.random.key(0), np.ones((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="truth"):
        ts.barrel_pairs(ev._replace(truth=None))


def test_experiment_quick(tmp_path):
    from experiments import trackseeding

    config = make_config(trackseeding.Config, trackseeding.QUICK, n_particles=SIM.n_particles,
                         n_noise=SIM.n_noise, epochs=1, singlet_hits=500)
    metrics = trackseeding.run(config, tmp_path)
    for key in ("sim", "real", "singlet", "checks"):
        assert key in metrics
    assert len(metrics["sim"]["bins"]) == 12
    assert set(metrics["singlet"]) == set(ts.FEATURE_SETS)
    assert (tmp_path / "trackseeding_purity.png").exists()
