"""Smoke test: the LHCO R&D experiment runs end to end on the real data (one epoch, two
folds, one injection; the statistics are the main job's) and reports every check."""

import json

import pytest

from experiments import lhco_rnd
from experiments import make_config


@pytest.mark.filterwarnings("ignore:bump hunt")  # one-epoch taggers can leave an unfittable cut
def test_lhco_rnd_smoke(tmp_path):
    cfg = make_config(lhco_rnd.Config, lhco_rnd.QUICK, epochs=1, sr_epochs=1, ae_epochs=1,
                      n_folds=2, hidden=(8,), ae_hidden=(8,), injections=(0.0, 0.05),
                      efficiencies=(0.1,), batch_size=4096)
    metrics = lhco_rnd.run(cfg, tmp_path)
    sr = metrics["signal_region"]
    assert set(sr) >= {"supervised", "idealised", "autoencoder"}
    assert sr["n_signal_test"] == 27263 and sr["n_signal_in_data"] == 395
    rows = metrics["full_mjj"]["injections"]
    assert [r["s_over_b"] for r in rows] == [0.0, 0.05]
    assert rows[0]["n_signal_in_sr"] == 0 and rows[1]["n_signal_in_sr"] > 0
    assert len(rows[1]["cwola"]["z"]) == 1
    assert len(metrics["checks"]) == 5
    assert (tmp_path / "lhco_rnd.png").stat().st_size > 0
    json.dumps(metrics)


def test_config_validates():
    with pytest.raises(ValueError, match="n_folds"):
        lhco_rnd.Config(n_folds=1)
    with pytest.raises(ValueError, match="injections"):
        lhco_rnd.Config(injections=(-0.1,))
    with pytest.raises(ValueError, match="unknown config key"):
        make_config(lhco_rnd.Config, lhco_rnd.QUICK, nope=1)
