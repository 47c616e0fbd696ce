"""Smoke tests: the quick presets of the funnel and flowification experiments run (with
sizes shrunk further for the test budget) and report their metrics."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import flowification
from experiments import funnels
from experiments import make_config


def test_funnels_smoke(tmp_path):
    # the quick preset on two of its four parts (the other two run the same _pair code)
    cfg = make_config(funnels.Config, funnels.QUICK, parts=("checkerboard", "digits"),
                      n_train=2000, n_test=1000, epochs=1, hidden=(16,), digits_hidden=(16,),
                      digits_epochs=1, num_layers=1, digits_layers=1)
    metrics = funnels.run(cfg, tmp_path)
    assert set(metrics) == {"checkerboard", "digits", "checks"}
    assert metrics["checkerboard"]["funnel_latent_dim"] == 1
    assert metrics["digits"]["funnel_latent_dim"] == 16
    assert metrics["digits"]["log_likelihood_is_bound"]
    assert len(metrics["checks"]) == 4
    assert (tmp_path / "checkerboard.png").stat().st_size > 0
    assert (tmp_path / "digits_samples.png").stat().st_size > 0
    json.dumps(metrics)


def test_flowification_smoke(tmp_path):
    # the overlapping CNN: its k = s layers are the plain CNN's code path
    cfg = make_config(flowification.Config, flowification.QUICK, epochs=1,
                      models=("flowified_cnn_overlap", "coupling_flow"), cnn_channels=(4,),
                      cnn_linear=(8,), coupling_layers=1, coupling_hidden=(16,))
    metrics = flowification.run(cfg, tmp_path)
    assert set(metrics["models"]) == {"flowified_cnn_overlap", "coupling_flow"}
    assert metrics["models"]["flowified_cnn_overlap"]["latent_dim"] == 8
    assert metrics["models"]["flowified_cnn_overlap"]["log_likelihood_is_bound"]
    assert all(np.isfinite(m["bits_per_dim"]) for m in metrics["models"].values())
    assert len(metrics["checks"]) == 2
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_hyper_checkerboard_support_and_entropy():
    """Every sample lies on a black cell (indices summing to an even number); the cells
    are covered uniformly: each of the 32 black cells of d=3 holds 1/32 of 32000 samples,
    binomial sd sqrt(1000 * 31/32) = 31, so 5 sd is 156."""
    x = funnels.hyper_checkerboard(jax.random.key(0), 32_000, 3)
    idx = np.floor((np.asarray(x) + 4.0) / 2.0).astype(int)
    assert np.all((idx >= 0) & (idx <= 3)) and np.all(idx.sum(1) % 2 == 0)
    counts = np.unique(idx[:, 0] * 16 + idx[:, 1] * 4 + idx[:, 2], return_counts=True)[1]
    assert counts.size == 32 and np.all(np.abs(counts - 1000) < 156)
    assert funnels.hyper_checkerboard_entropy(2) == pytest.approx(np.log(32.0))


@pytest.mark.parametrize("module", [funnels, flowification])
def test_configs_validate(module):
    fields = {f.name for f in dataclasses.fields(module.Config)}
    assert set(module.QUICK) <= fields
    with pytest.raises(ValueError):
        module.Config(epochs=0)
    with pytest.raises(ValueError):
        module.Config(val_fraction=1.0)
    if module is flowification:
        with pytest.raises(ValueError, match="`overlap_noise_scale` must be > 0"):
            module.Config(overlap_noise_scale=0.0)
    with pytest.raises(ValueError, match="must be a non-empty subset"):
        module.Config(**{"parts" if module is funnels else "models": ("nope",)})
