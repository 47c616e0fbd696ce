"""Smoke test of the TrackML simulation experiment's quick preset."""

from experiments import make_config, trackml_sim


def test_quick_preset_runs(tmp_path):
    config = make_config(trackml_sim.Config, trackml_sim.QUICK)
    metrics = trackml_sim.run(config, tmp_path)
    assert {"hits_per_layer_tv", "particles", "per_volume", "checks"} <= set(metrics)
    assert set(metrics["particles"]) == {"nhits", "pt", "eta"}
    assert set(metrics["per_volume"]) == {"7", "8", "9", "12", "13", "14", "16", "17", "18"}
    assert 0.0 <= metrics["hits_per_layer_tv"] <= 1.0
    assert all(set(c) >= {"claim", "measured", "passed"} for c in metrics["checks"])
    assert (tmp_path / "trackml_sim.png").exists()
