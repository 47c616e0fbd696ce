"""Smoke tests: the quick presets of the flow experiments run and report their metrics."""

import dataclasses
import json

import pytest

from experiments import density2d, flows4flows, make_config


def test_density2d_smoke(tmp_path):
    cfg = make_config(density2d.Config, density2d.QUICK, toys=("checkerboard", "two_moons"),
                      n_train=4000, n_test=2000, epochs=2, num_layers=2, hidden=(16,))
    metrics = density2d.run(cfg, tmp_path)
    assert set(metrics["toys"]) == {"checkerboard", "two_moons"}
    assert metrics["checkerboard_entropy_gap"] > -0.1  # cross-entropy >= entropy (+ noise)
    assert len(metrics["checks"]) == 2
    assert (tmp_path / "samples_density.png").stat().st_size > 0


def test_flows4flows_smoke(tmp_path):
    cfg = make_config(flows4flows.Config, flows4flows.QUICK, n_train=3000, n_test=1000,
                      base_layers=2, hidden=(16,), base_epochs=1, top_epochs=1)
    metrics = flows4flows.run(cfg, tmp_path)
    assert set(metrics["transport_cost"]) == {"f4f", "f4f_l2", "encode_decode"}
    assert len(metrics["checks"]) == 4
    assert (tmp_path / "transport.png").stat().st_size > 0
    json.dumps(metrics)  # JSON-serialisable as written


@pytest.mark.parametrize("module", [density2d, flows4flows])
def test_configs_validate(module):
    fields = {f.name for f in dataclasses.fields(module.Config)}
    assert set(module.QUICK) <= fields
    with pytest.raises(ValueError):
        module.Config(n_test=0)
