"""Networks: the MLP family's initialisation options, grouped outputs and set invariance."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn import MLP
from jaxgen.nn import DeepSets
from jaxgen.nn import GroupedDense
from jaxgen.nn import ResidualMLP
from jaxgen.nn.mlp import SEPARATE_PRODUCT_MIN_WIDTH

X = jax.random.normal(jax.random.key(0), (5, 3))


@pytest.mark.parametrize("make", [lambda init: MLP((16, 16, 4), last_layer_init=init),
                                  lambda init: ResidualMLP(16, 2, 4, last_layer_init=init)])
def test_zero_last_layer_outputs_zero(make):
    """A zero output kernel (and zero bias) makes the network output exactly zero."""
    net = make("zeros")
    params = net.init(jax.random.key(1), X)
    np.testing.assert_array_equal(net.apply(params, X), 0.0)
    assert jnp.any(make("default").apply(make("default").init(jax.random.key(1), X), X) != 0)


def test_identity_last_layer():
    """``identity`` makes the output layer the identity on the last hidden features."""
    net = MLP((8, 8), activation=lambda h: h, last_layer_init="identity")
    params = net.init(jax.random.key(1), X)
    hidden = nn.Dense(8).apply({"params": params["params"]["Dense_0"]}, X)
    np.testing.assert_allclose(net.apply(params, X), hidden, rtol=1e-6)
    with pytest.raises(ValueError, match="square"):
        MLP((8, 5), last_layer_init="identity").init(jax.random.key(1), X)


@pytest.mark.parametrize("groups", [(8, 8, 7), (32, 32, 28)])  # one product / one per block
def test_grouped_output_equals_sliced_dense(groups):
    """Same parameter tree as the plain MLP, and its output sliced into the blocks."""
    assert (min(groups) >= SEPARATE_PRODUCT_MIN_WIDTH) == (groups[0] == 32)  # both paths
    plain = MLP((16, sum(groups)))
    grouped = MLP((16, sum(groups)), output_groups=groups)
    params = plain.init(jax.random.key(1), X)
    assert (jax.tree.structure(grouped.init(jax.random.key(1), X))
            == jax.tree.structure(params))
    out = plain.apply(params, X)
    blocks = grouped.apply(params, X)
    # Each output is the same 16-term dot product plus bias, summed in a possibly different
    # order: each float32 evaluation is within 17 u sum|terms| of the exact value (Higham's
    # bound, u = 2^-24), so the two differ by at most twice that.
    p = params["params"]
    h = jax.nn.relu(X @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    out_layer = p["Dense_1"]
    bound = 2 * 17 * 2.0**-24 * (jnp.abs(h) @ jnp.abs(out_layer["kernel"])
                                 + jnp.abs(out_layer["bias"]))
    bounds = np.cumsum((0, *groups))
    assert len(blocks) == len(groups)
    for block, a, b in zip(blocks, bounds[:-1], bounds[1:], strict=True):
        assert block.shape == (X.shape[0], b - a)
        assert jnp.all(jnp.abs(block - out[:, a:b]) <= bound[:, a:b])


def test_grouped_dense_rejects_bad_groups():
    with pytest.raises(ValueError, match="groups"):
        GroupedDense(10, (4, 4)).init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="groups"):
        GroupedDense(4, (4, 0)).init(jax.random.key(0), X)


def test_deep_sets_ignore_order_and_masked_elements(x64):
    """Invariance is exact up to the order of a sum: float64 rounding, far below 1e-10."""
    net = DeepSets((16, 16), (16, 2), pooling="mean")
    x = jax.random.normal(jax.random.key(2), (3, 6, 4), jnp.float64)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(3), x))
    perm = jax.random.permutation(jax.random.key(4), 6)
    np.testing.assert_allclose(net.apply(params, x), net.apply(params, x[:, perm]), atol=1e-10)
    mask = jnp.broadcast_to(jnp.arange(6) < 4, (3, 6))
    garbage = x.at[:, 4:].set(1e3)
    np.testing.assert_allclose(net.apply(params, garbage, mask), net.apply(params, x[:, :4]),
                               atol=1e-10)
    with pytest.raises(ValueError, match="pooling"):
        DeepSets((4,), (2,), pooling="max").init(jax.random.key(0), x)
