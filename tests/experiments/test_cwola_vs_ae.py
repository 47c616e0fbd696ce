"""Smoke test: the CWoLa-vs-autoencoder injection scan runs end to end (one epoch, two
folds, tiny nets and sample; the statistics are the main job's) and reports every check."""

import json

import pytest

from experiments import cwola_vs_ae
from experiments import make_config


@pytest.mark.filterwarnings("ignore:bump hunt")  # one-epoch taggers can leave an unfittable cut
def test_cwola_vs_ae_smoke(tmp_path):
    cfg = make_config(cwola_vs_ae.Config, cwola_vs_ae.QUICK, n_background=30_000,
                      n_test_signal=500, epochs=1, ae_epochs=1, n_folds=2, cwola_members=1,
                      hidden=(8,), ae_hidden=(8,), injections=(0.0, 0.05),
                      efficiencies=(0.1,), batch_size=4096)
    metrics = cwola_vs_ae.run(cfg, tmp_path)
    rows = metrics["injections"]
    assert [r["s_over_b"] for r in rows] == [0.0, 0.05]
    assert rows[0]["n_signal"] == 0 and rows[1]["n_signal"] > 0
    # The background is the same sample at every injection.
    assert len({r["n_background_in_sr"] for r in rows}) == 1
    assert 0 < rows[0]["cwola_sr_vs_sb_auc_se"] < 0.02
    assert len(rows[1]["cwola"]["z"]) == 1 and len(rows[1]["autoencoder"]["z"]) == 1
    assert len(metrics["checks"]) == 6  # the "AE can win" row needs a third injection
    assert (tmp_path / "cwola_vs_ae.png").stat().st_size > 0
    json.dumps(metrics)


def test_config_validates():
    with pytest.raises(ValueError, match="n_folds"):
        cwola_vs_ae.Config(n_folds=1)
    with pytest.raises(ValueError, match="injections"):
        cwola_vs_ae.Config(injections=(-0.1,))
    with pytest.raises(ValueError, match="efficiencies"):
        cwola_vs_ae.Config(efficiencies=(0.0,))
    with pytest.raises(ValueError, match="unknown config key"):
        make_config(cwola_vs_ae.Config, cwola_vs_ae.QUICK, nope=1)
