"""Smoke tests: the quick presets of the flow experiments run and report their metrics."""

import dataclasses
import json

import pytest

from experiments import density2d
from experiments import flows4flows
from experiments import make_config


def test_density2d_smoke(tmp_path):
    cfg = make_config(density2d.Config, density2d.QUICK, toys=("checkerboard", "two_moons"),
                      n_train=4000, n_test=2000, epochs=2, num_layers=2, hidden=(16,))
    metrics = density2d.run(cfg, tmp_path)
    assert set(metrics["toys"]) == {"checkerboard", "two_moons"}
    assert metrics["checkerboard_entropy_gap"] > -0.1  # cross-entropy >= entropy (+ noise)
    assert len(metrics["checks"]) == 2
    assert (tmp_path / "samples_density.png").stat().st_size > 0


def test_flows4flows_smoke(tmp_path):
    # Tiny on purpose (the pipeline runs, the checks are well-formed): the time is the
    # compilation of six fits, so every size is minimal; the floor check is exercised.
    cfg = make_config(flows4flows.Config, flows4flows.QUICK, n_train=600, n_test=200,
                      base_layers=1, top_layers=2, hidden=(8,), num_bins=4, base_epochs=1,
                      top_epochs=1, batch_size=128, top_batch_size=128,
                      max_sw_floor_multiple=3.0)
    metrics = flows4flows.run(cfg, tmp_path)
    assert set(metrics["transport_cost"]) == {"f4f", "f4f_l2", "encode_decode"}
    assert len(metrics["checks"]) == 5
    assert all(row["status"] in ("PASS", "FAIL") for row in metrics["checks"])
    assert (tmp_path / "transport.png").stat().st_size > 0
    json.dumps(metrics)  # JSON-serialisable as written


@pytest.mark.parametrize("module", [density2d, flows4flows])
def test_configs_validate(module):
    fields = {f.name for f in dataclasses.fields(module.Config)}
    assert set(module.QUICK) <= fields
    with pytest.raises(ValueError):
        module.Config(n_test=0)
