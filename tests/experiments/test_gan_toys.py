"""Smoke test of the GAN-toys experiment (quick preset, shrunk) and its config checks."""

import dataclasses
import json

import pytest

from experiments import gan_toys
from experiments import make_config


def test_gan_toys_smoke(tmp_path):
    # The quick preset (the ring), shrunk; the grid goes through the same code.
    cfg = make_config(gan_toys.Config, gan_toys.QUICK, steps=20, hidden=(8,), n_train=512,
                      n_eval=200, losses=("hinge", "wgan_gp"), seeds=2)
    metrics = gan_toys.run(cfg, tmp_path)
    assert set(metrics) == {"toys", "checks"}
    assert set(metrics["toys"]) == {"ring"}
    for rows in metrics["toys"].values():
        assert set(rows) == {"hinge", "wgan_gp"}
        for r in rows.values():
            assert set(r) == {"modes_covered", "high_quality_fraction", "mode_kl"}
            assert len(r["modes_covered"]) == 2
            assert all(0.0 <= h <= 1.0 for h in r["high_quality_fraction"])
    assert len(metrics["checks"]) == 2 * 2
    assert (tmp_path / "gan_toys.png").stat().st_size > 0
    json.dumps(metrics)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(toys=("spiral",)), "toys"),
        (dict(losses=("wasserstein",)), "losses"),
        (dict(seeds=0), "seeds"),
        (dict(hidden=()), "hidden"),
        (dict(min_grid_modes=26), "min_grid_modes"),
        (dict(max_kl=0.0), "max_kl"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gan_toys.Config(**kwargs)


def test_quick_keys_are_fields():
    assert set(gan_toys.QUICK) <= {f.name for f in dataclasses.fields(gan_toys.Config)}
