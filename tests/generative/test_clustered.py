"""Clustered-latent generation: padding by cluster, sampling by cluster frequency, and the
paper's claim on the disjoint squares (the experiment's quick preset)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import discontinuous
from experiments import make_config
from jaxgen.generative import ClusteredConfig
from jaxgen.generative import ClusteredGenerator
from jaxgen.generative import fit_clustered_generator
from jaxgen.generative import mlp_gan
from jaxgen.generative import pad_by_cluster
from jaxgen.generative import sample_clustered


def test_pad_by_cluster_groups_rows():
    x = jnp.arange(12.0).reshape(6, 2)
    labels = jnp.array([2, 0, 2, 1, 2, 0])
    padded, counts = pad_by_cluster(x, labels, 4)
    np.testing.assert_array_equal(counts, [2, 1, 3, 0])
    assert padded.shape == (4, 3, 2)
    np.testing.assert_array_equal(padded[0, :2], x[jnp.array([1, 5])])
    np.testing.assert_array_equal(padded[1, :1], x[3:4])
    np.testing.assert_array_equal(padded[2], x[jnp.array([0, 2, 4])])
    np.testing.assert_array_equal(padded[3], 0.0)


def test_sampling_follows_cluster_weights():
    """Two generators placed (by loc/scale) at -5 and +5 with weights 0.2 / 0.8. The
    fraction of samples with x < 0 is Binomial(n, 0.2)/n, sd sqrt(0.16/20000) = 0.0028:
    5 sd is 0.014. Each cluster's samples are loc_k + scale_k * G_k(eps)."""
    spec, g0, _ = mlp_gan(jax.random.key(0), dim=2, g_hidden=(8,))
    g_params = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), g0)
    model = ClusteredGenerator(
        encoder=None, centroids=jnp.zeros((2, 2)), weights=jnp.array([0.2, 0.8]),
        labels=jnp.zeros(1, jnp.int32), spec=spec, g_params=g_params,
        loc=jnp.array([[-5.0, -5.0], [5.0, 5.0]]), scale=jnp.full((2, 2), 0.01), history={})
    s = sample_clustered(model, jax.random.key(2), 20_000)
    assert s.shape == (20_000, 2)
    assert abs(float(jnp.mean(s[:, 0] < 0)) - 0.2) < 0.014
    assert float(jnp.max(jnp.abs(jnp.abs(s) - 5.0))) < 0.5


def test_fit_errors():
    with pytest.raises(ValueError, match="fewer than num_clusters"):
        fit_clustered_generator(jax.random.key(0), jnp.ones((3, 2)), ClusteredConfig())
    with pytest.raises(ValueError, match="x"):
        fit_clustered_generator(jax.random.key(0), jnp.ones((30,)), ClusteredConfig())
    with pytest.raises(ValueError, match="num_clusters"):
        ClusteredConfig(num_clusters=0)


def test_experiment_clustered_beats_single_latent_on_disjoint_squares(tmp_path):
    """The quick preset on the four disjoint squares: the clustered generator's precision
    exceeds the single-latent GAN's by more than 3 standard errors of the difference
    (the experiment's own check), with exact cluster recovery and the multinomial
    mass-error bound; the plot is written."""
    config = make_config(discontinuous.Config, discontinuous.QUICK, toys=("disjoint_squares",))
    metrics = discontinuous.run(config, tmp_path)
    res = metrics["toys"]["disjoint_squares"]
    for key in ("clustered_precision", "single_precision", "clustered_mass_error_max",
                "single_mass_error_max", "cluster_purity", "mass_error_tolerance"):
        assert key in res
    se = res["precision_difference_se"]
    assert res["clustered_precision"] - res["single_precision"] > 3 * se
    assert all(c["passed"] for c in metrics["checks"]), metrics["checks"]
    assert (tmp_path / "discontinuous.png").exists()


def test_experiment_config_errors():
    with pytest.raises(ValueError, match="toys"):
        discontinuous.Config(toys=("checkerboard",))
    with pytest.raises(ValueError, match="loss"):
        discontinuous.Config(gan_loss="bce")
