"""k-means: exact recovery of separated clusters, seeding, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.generative import assign
from jaxgen.generative import kmeans
from jaxgen.generative import kmeans_plus_plus

CENTRES = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 20.0]])


def _blobs(n_per=200, std=0.5, seed=0):
    noise = std * jax.random.normal(jax.random.key(seed), (5, n_per, 2))
    x = (CENTRES[:, None] + noise).reshape(-1, 2)
    return x, jnp.repeat(jnp.arange(5), n_per)


def test_recovers_separated_clusters_exactly():
    """Blobs of std 0.5 whose centres are >= 10 apart: every point is within 3 of its
    own centre (6 sigma in 2D has probability 1 - exp(-18)), so the optimal partition is
    the generating one. k-means with restarts must find it exactly, and its centroids
    are then the per-blob sample means."""
    x, truth = _blobs()
    res = kmeans(jax.random.key(1), x, 5)
    labels = np.asarray(res.labels)
    mapping = {int(t): int(labels[np.asarray(truth) == t][0]) for t in range(5)}
    assert len(set(mapping.values())) == 5
    np.testing.assert_array_equal(labels, [mapping[int(t)] for t in np.asarray(truth)])
    for t in range(5):
        np.testing.assert_allclose(res.centroids[mapping[t]], x[truth == t].mean(0), atol=1e-4)
    inertia = sum(float(jnp.sum((x[truth == t] - x[truth == t].mean(0)) ** 2)) for t in range(5))
    np.testing.assert_allclose(res.inertia, inertia, rtol=1e-4)
    np.testing.assert_array_equal(assign(res.centroids, x), res.labels)


def test_restarts_never_worse_than_one_run():
    x, _ = _blobs(std=3.0)
    one = kmeans(jax.random.key(2), x, 5, num_restarts=1)
    many = kmeans(jax.random.key(2), x, 5, num_restarts=8)
    assert float(many.inertia) <= float(one.inertia) + 1e-3


def test_plus_plus_seeds_are_distinct_data_points():
    x, _ = _blobs()
    seeds = jax.jit(kmeans_plus_plus, static_argnums=2)(jax.random.key(0), x, 5)
    dists = jnp.min(jnp.sum((seeds[:, None] - x[None]) ** 2, -1), -1)
    np.testing.assert_allclose(dists, 0.0, atol=1e-6)
    for a, b in itertools.combinations(range(5), 2):
        assert float(jnp.sum((seeds[a] - seeds[b]) ** 2)) > 0


def test_vmap_over_datasets_matches_loop():
    xs = jnp.stack([_blobs(n_per=20, seed=s)[0] for s in range(3)])
    fn = jax.jit(lambda k, x: kmeans_plus_plus(k, x, 5))
    batched = jax.vmap(fn, in_axes=(None, 0))(jax.random.key(0), xs)
    for i in range(3):
        np.testing.assert_allclose(batched[i], fn(jax.random.key(0), xs[i]), rtol=1e-6)


@pytest.mark.parametrize(
    "x, k, match",
    [
        (jnp.ones((10,)), 2, "x"),
        (jnp.ones((3, 2)), 4, "exceeds"),
        (jnp.ones((3, 2)), 0, "k"),
        (jnp.ones((3, 2)).at[0, 0].set(jnp.inf), 2, "NaN or inf"),
    ],
)
def test_errors(x, k, match):
    with pytest.raises(ValueError, match=match):
        kmeans(jax.random.key(0), x, k)
