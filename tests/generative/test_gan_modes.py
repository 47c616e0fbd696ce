"""Mode-coverage metrics (``jaxgen.metrics.modes``) on hand-built sample sets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data import toys
from jaxgen.metrics import modes as M

CENTRES = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
STD = 0.05


def _at(counts, offset=(0.0, 0.0)):
    """``counts[k]`` copies of centre k, shifted by ``offset``."""
    return jnp.concatenate([jnp.tile(CENTRES[k] + jnp.asarray(offset), (c, 1))
                            for k, c in enumerate(counts) if c])


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit])
def test_balanced_samples_cover_every_mode_with_zero_kl(transform):
    x = _at([5, 5, 5, 5], offset=(0.1, 0.0))  # 2 sigma off centre: still high quality
    stats = transform(lambda s: M._statistics(s, CENTRES, STD, 0.1, 3.0))(x)
    assert int(stats.modes_covered) == 4
    np.testing.assert_allclose(stats.high_quality_fraction, 1.0)
    np.testing.assert_allclose(stats.mode_kl, 0.0, atol=1e-7)
    np.testing.assert_array_equal(stats.counts, [5, 5, 5, 5])


def test_hand_counted_mixture():
    """12 good samples in modes (6, 3, 3, 0) plus 4 bad ones 4 sigma off a centre.

    High-quality fraction 12/16; with min_fraction 3/16 modes 0-2 are covered (3 >= 3)
    and mode 3 is not; the KL of (1/2, 1/4, 1/4, 0) against uniform on 4 modes is
    1/2 log 2 + 2 * 1/4 log 1 = log(2)/2.
    """
    x = jnp.concatenate([_at([6, 3, 3, 0]), _at([0, 0, 0, 4], offset=(0.0, 4 * STD))])
    stats = M.mode_statistics(x, CENTRES, STD, min_fraction=3 / 16)
    assert int(stats.modes_covered) == 3
    np.testing.assert_allclose(stats.high_quality_fraction, 12 / 16)
    np.testing.assert_allclose(stats.mode_kl, math.log(2.0) / 2, rtol=1e-6)
    counts, good = M.high_quality_counts(x, CENTRES, STD)
    np.testing.assert_array_equal(counts, [6, 3, 3, 0])
    assert int(good.sum()) == 12
    # One more sample needed than mode 1 has: the threshold is inclusive.
    assert int(M.mode_statistics(x, CENTRES, STD, min_fraction=4 / 16).modes_covered) == 1


def test_total_collapse_and_no_good_sample():
    one = M.mode_statistics(_at([0, 0, 7, 0]), CENTRES, STD)
    assert int(one.modes_covered) == 1
    np.testing.assert_allclose(one.mode_kl, math.log(4.0), rtol=1e-6)
    far = M.mode_statistics(jnp.full((10, 2), 0.5), CENTRES, STD)
    assert int(far.modes_covered) == 0
    np.testing.assert_allclose(far.high_quality_fraction, 0.0)
    np.testing.assert_allclose(far.mode_kl, math.log(4.0), rtol=1e-6)


@pytest.mark.parametrize(
    "toy, centres, std",
    [(toys.ring_of_gaussians, M.ring_centres(), 0.02),
     (toys.grid_of_gaussians, M.grid_centres(), 0.05)],
)
def test_data_from_the_toys_scores_perfectly(toy, centres, std):
    """Draws from the toy itself. A 2D Gaussian puts exp(-9/2) = 1.1% of its mass beyond
    3 sigma, so the high-quality fraction is 0.989 with sd sqrt(0.011 * 0.989 / 2500) =
    0.002: > 0.98 is 4.5 sd below. Per mode, the count is Binomial(2500, 1/K): mean 312 and
    sd 16.5 for K = 8, mean 100 and sd 9.8 for K = 25, at least 8 sd above the threshold
    of 20. The mode
    histogram's KL against uniform is chi^2_{K-1} / (2n) to first order: mean
    (K-1)/5000 <= 0.0048, sd sqrt(2(K-1))/5000 <= 0.0014; 0.015 is 7 sd above."""
    x = jax.jit(toy, static_argnums=1)(jax.random.key(0), 2500)
    stats = M.mode_statistics(x, centres, std)
    assert int(stats.modes_covered) == centres.shape[0]
    assert float(stats.high_quality_fraction) > 0.98
    assert float(stats.mode_kl) < 0.015


def test_centres_match_the_toys():
    """Every toy sample lies within 6 std of some centre (the nearest-centre distance
    of a 2D Gaussian exceeds 6 sigma with probability exp(-18) = 1.5e-8)."""
    for toy, centres, std in ((toys.ring_of_gaussians, M.ring_centres(), 0.02),
                              (toys.grid_of_gaussians, M.grid_centres(), 0.05)):
        x = jax.jit(toy, static_argnums=1)(jax.random.key(1), 5000)
        assert int(M.high_quality_counts(x, centres, std, num_sigmas=6.0)[1].sum()) == 5000
    assert M.grid_centres().shape == (25, 2)
    np.testing.assert_allclose(jnp.linalg.norm(M.ring_centres(), axis=-1), 2.0, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(samples=jnp.ones((5, 3))), "samples"),
        (dict(samples=jnp.ones((5, 2)).at[0, 0].set(jnp.inf)), "samples"),
        (dict(centres=jnp.ones((3,))), "centres"),
        (dict(std=0.0), "std"),
        (dict(min_fraction=0.0), "min_fraction"),
        (dict(min_fraction=1.5), "min_fraction"),
    ],
)
def test_errors(kwargs, match):
    args = dict(samples=jnp.ones((5, 2)), centres=CENTRES, std=STD)
    min_fraction = kwargs.pop("min_fraction", M.PACGAN_MIN_FRACTION)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        M.mode_statistics(args["samples"], args["centres"], args["std"],
                          min_fraction=min_fraction)
