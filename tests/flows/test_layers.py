"""Property battery for every flow layer and bijector, from one registry.

Each entry is checked for: inverse round trip, forward/inverse log-determinants that
cancel, log-determinant equal to ``slogdet`` of ``jax.jacfwd``, the same results with and
without ``jit``, and the identity at identity initialisation.
"""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import AffineTransformer
from jaxgen.flows import CouplingLayer
from jaxgen.flows import ElementwiseLayer
from jaxgen.flows import LULinearLayer
from jaxgen.flows import MaskedAutoregressiveLayer
from jaxgen.flows import Permute
from jaxgen.flows import RationalQuadraticSpline
from jaxgen.flows import SequentialLayer
from jaxgen.flows import SplineTransformer

DIM = 4
CTX = 3
RQS = SplineTransformer(num_bins=6, tail_bound=3.0)
AFF = AffineTransformer()

# name -> (module, uses_context)
LAYERS = {
    "coupling_rqs": (CouplingLayer(DIM, RQS, (16, 16)), False),
    "coupling_affine": (CouplingLayer(DIM, AFF, (16, 16)), False),
    "coupling_rqs_odd_split": (CouplingLayer(DIM, RQS, (16,), split=1),
                               False),
    "coupling_rqs_context": (CouplingLayer(DIM, RQS, (16, 16)), True),
    "maf_rqs": (MaskedAutoregressiveLayer(DIM, RQS, (16, 16)), False),
    "maf_affine": (MaskedAutoregressiveLayer(DIM, AFF, (16, 16)), False),
    "maf_rqs_context": (MaskedAutoregressiveLayer(DIM, RQS, (16, 16)),
                        True),
    "lu_linear": (LULinearLayer(DIM), False),
    # The layer of the 1-D flows (coupling_flow / masked_autoregressive_flow with dim=1):
    # learned knots, or knots from the context; also in DIM dimensions (marginal maps).
    "elementwise_rqs_1d": (ElementwiseLayer(1, RQS), False),
    "elementwise_rqs_1d_context": (ElementwiseLayer(1, RQS, True, (8,)), True),
    "elementwise_affine_1d": (ElementwiseLayer(1, AFF), False),
    "elementwise_rqs": (ElementwiseLayer(DIM, RQS), False),
    "elementwise_affine_context": (ElementwiseLayer(DIM, AFF, True, (16,)), True),
    "sequential": (SequentialLayer((CouplingLayer(DIM, RQS, (16,)),
                                    LULinearLayer(DIM))), False),
}

TRANSFORMS = [lambda f: f, jax.jit]


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _setup(name, identity=False):
    """Identity-initialised layer; unless ``identity``, every parameter is perturbed by
    N(0, 0.3^2) so the map is far from trivial but its splines stay well conditioned (a
    raw random output layer makes bins of height ~1e-4, whose float32 inverse is
    ill-conditioned for any implementation, distrax's included)."""
    module, uses_ctx = LAYERS[name]
    x = jax.random.normal(jax.random.key(1), (7, getattr(module, "dim", DIM))) * 1.5
    ctx = jax.random.normal(jax.random.key(2), (7, CTX)) if uses_ctx else None
    params = module.init(jax.random.key(0), x, ctx)
    if not identity:
        leaves, tree = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.key(3), len(leaves))
        leaves = [a + 0.3 * jax.random.normal(k, a.shape)
                  for a, k in zip(leaves, keys, strict=True)]
        params = jax.tree_util.tree_unflatten(tree, leaves)
    return module, params, x, ctx


@pytest.mark.parametrize("transform", TRANSFORMS, ids=["eager", "jit"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_round_trip_and_logdet_cancel(name, transform, x64):
    """In float64, where the inverse is exact up to rounding even for steep splines."""
    module, params, x, ctx = _setup(name)
    params, x, ctx = _f64(params), _f64(x), None if ctx is None else _f64(ctx)
    inv = transform(lambda p, v, c: module.apply(p, v, c, method=module.inverse))
    fwd = transform(lambda p, v, c: module.apply(p, v, c, method=module.forward))
    z, ld_inv = inv(params, x, ctx)
    x_back, ld_fwd = fwd(params, z, ctx)
    np.testing.assert_allclose(x_back, x, atol=1e-8)
    np.testing.assert_allclose(ld_inv, -ld_fwd, atol=1e-8)
    assert z.shape == x.shape and ld_inv.shape == (x.shape[0],)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_logdet_matches_jacobian(name, x64):
    module, params, x, ctx = _setup(name)
    params, x, ctx = _f64(params), _f64(x), None if ctx is None else _f64(ctx)

    def single(v, c):
        c = None if c is None else c[None]
        return module.apply(params, v[None], c, method=module.inverse)[0][0]

    if ctx is None:
        jac = jax.vmap(jax.jacfwd(lambda v: single(v, None)))(x)
    else:
        jac = jax.vmap(jax.jacfwd(single))(x, ctx)
    _, expected = np.linalg.slogdet(np.asarray(jac))
    _, ld = module.apply(params, x, ctx, method=module.inverse)
    np.testing.assert_allclose(ld, expected, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_jit_equals_eager(name):
    module, params, x, ctx = _setup(name)
    f = lambda p, v, c: module.apply(p, v, c, method=module.inverse)  # noqa: E731
    z0, l0 = f(params, x, ctx)
    z1, l1 = jax.jit(f)(params, x, ctx)
    np.testing.assert_allclose(z0, z1, atol=1e-5)
    np.testing.assert_allclose(l0, l1, atol=1e-5)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_identity_at_init(name):
    module, params, x, ctx = _setup(name, identity=True)
    z, ld = module.apply(params, x, ctx, method=module.inverse)
    np.testing.assert_allclose(z, x, atol=1e-5)
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)


def test_vmap_over_layer_parameters_equals_loop():
    module, _, x, _ = _setup("coupling_rqs")
    keys = jax.random.split(jax.random.key(5), 3)
    stacked = jax.vmap(lambda k: module.init(k, x, None))(keys)
    f = lambda p: module.apply(p, x, None, method=module.inverse)[1]  # noqa: E731
    batched = jax.vmap(f)(stacked)
    for i in range(3):
        p_i = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
        np.testing.assert_allclose(batched[i], f(p_i), atol=1e-5)


# ------------------------------------------------------------------ spline vs distrax


def _to_distrax_params(p):
    """Inserts the two (ignored) boundary slopes of distrax's layout."""
    zero = jnp.zeros(p.shape[:-1] + (1,))
    k = (p.shape[-1] + 1) // 3
    return jnp.concatenate([p[..., : 2 * k], zero, p[..., 2 * k :], zero], axis=-1)


@pytest.mark.parametrize("num_bins", [1, 4, 8])
def test_spline_equals_distrax(num_bins, x64):
    """Same values as distrax's spline, compared in float64 (both are exact there)."""
    p = jax.random.normal(jax.random.key(0), (500, 3, 3 * num_bins - 1), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (500, 3), jnp.float64) * 3.0  # some in tails
    ours = RationalQuadraticSpline(p, -4.0, 4.0)
    ref = distrax.RationalQuadraticSpline(_to_distrax_params(p), -4.0, 4.0,
                                          boundary_slopes="identity")
    y, ld = ours.forward_and_log_det(x)
    y_ref, ld_ref = ref.forward_and_log_det(x)
    np.testing.assert_allclose(y, y_ref, atol=1e-10)
    np.testing.assert_allclose(ld, ld_ref, atol=1e-9)
    xi, ldi = ours.inverse_and_log_det(y)
    xi_ref, ldi_ref = ref.inverse_and_log_det(y)
    np.testing.assert_allclose(xi, xi_ref, atol=1e-9)
    np.testing.assert_allclose(ldi, ldi_ref, atol=1e-8)
    np.testing.assert_allclose(xi, x, atol=1e-9)


@pytest.mark.parametrize("direction", ["forward", "inverse"])
@pytest.mark.parametrize("out", [0, 1], ids=["value", "logdet"])
@pytest.mark.parametrize("num_bins", [1, 2, 8])
def test_spline_derivatives_equal_distrax(num_bins, out, direction, x64):
    """The hand-written derivatives of both directions equal autodiff through distrax.

    Reverse mode (gradients of sums of the value and of the log-determinant with respect
    to the input and every parameter), forward mode (``jvp`` along random directions in
    the input and the parameters), and parameters shared over the batch (broadcast);
    float64, some points in the tails. The largest derivatives here are ~1e3, and float64
    rounding over a few dozen operations (the inverse's quadratic solve included) stays
    below 1e-13 relative: rtol 1e-9 is loose for rounding, tight for any formula error.
    """
    p = jax.random.normal(jax.random.key(0), (400, 3, 3 * num_bins - 1), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (400, 3), jnp.float64) * 3.0
    tp = jax.random.normal(jax.random.key(2), p.shape, jnp.float64)
    tx = jax.random.normal(jax.random.key(3), x.shape, jnp.float64)

    def ours(x, p):
        bij = RationalQuadraticSpline(p, -4.0, 4.0)
        return getattr(bij, f"{direction}_and_log_det")(x)

    def ref(x, p):
        p = jnp.broadcast_to(p, x.shape + p.shape[-1:])
        bij = distrax.RationalQuadraticSpline(_to_distrax_params(p), -4.0, 4.0,
                                              boundary_slopes="identity")
        return getattr(bij, f"{direction}_and_log_det")(x)

    # Compiled (op-by-op autodiff through distrax is ~10x slower and tests the same maths).
    def grads(f):
        return jax.jit(jax.grad(lambda x, q: f(x, q)[out].sum(), (0, 1)))

    def tangent(f):
        return jax.jit(lambda x, q, tx, tq: jax.jvp(lambda x, q: f(x, q)[out], (x, q),
                                                     (tx, tq))[1])

    for params in (p, p[0, 0]):  # per element, shared
        g = grads(ours)(x, params)
        g_ref = grads(ref)(x, params)
        for a, b in zip(g, g_ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    t = tangent(ours)(x, p, tx, tp)
    t_ref = tangent(ref)(x, p, tx, tp)
    np.testing.assert_allclose(t, t_ref, rtol=1e-9, atol=1e-9)


def test_spline_parameter_groups_equal_the_packed_array():
    """``(widths, heights, slopes)`` as a tuple gives what the packed array gives."""
    p = jax.random.normal(jax.random.key(0), (50, 3 * 5 - 1))
    x = jax.random.normal(jax.random.key(1), (50,)) * 2.0
    packed = RationalQuadraticSpline(p, -3.0, 3.0)
    grouped = RationalQuadraticSpline((p[:, :5], p[:, 5:10], p[:, 10:]), -3.0, 3.0)
    for a, b in zip(packed.forward_and_log_det(x), grouped.forward_and_log_det(x),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(packed.inverse_and_log_det(x), grouped.inverse_and_log_det(x),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_spline_identity_outside_interval_and_zero_params():
    p = jax.random.normal(jax.random.key(0), (4, 3 * 5 - 1))
    x = jnp.array([-9.0, -4.0, 4.0, 12.0])
    y, ld = RationalQuadraticSpline(p, -4.0, 4.0).forward_and_log_det(x)
    np.testing.assert_allclose(y, x)
    np.testing.assert_allclose(ld, 0.0)
    x = jnp.linspace(-3.9, 3.9, 11)
    y, ld = RationalQuadraticSpline(jnp.zeros((11, 14)), -4.0, 4.0).forward_and_log_det(x)
    np.testing.assert_allclose(y, x, atol=1e-5)
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)


def test_permute_round_trip_and_validation():
    perm = Permute(jnp.array([2, 0, 1]))
    x = jnp.arange(6.0).reshape(2, 3)
    y, ld = perm.forward_and_log_det(x)
    np.testing.assert_allclose(y, x[:, [2, 0, 1]])
    np.testing.assert_allclose(perm.inverse(y), x)
    assert ld.shape == (2,)
    with pytest.raises(ValueError, match="permutation"):
        Permute(jnp.array([0, 0, 1]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RationalQuadraticSpline(jnp.zeros((3, 7)), -1.0, 1.0), "3 \\* num_bins - 1"),
        (lambda: RationalQuadraticSpline(jnp.zeros((3, 8)), 1.0, -1.0), "range_min"),
        (lambda: RationalQuadraticSpline((jnp.zeros(3), jnp.zeros(3), jnp.zeros(3)), -1.0,
                                         1.0), "num_bins - 1"),
        (lambda: SplineTransformer(num_bins=0), "num_bins"),
        (lambda: SplineTransformer(tail_bound=-1.0), "tail_bound"),
        (lambda: AffineTransformer(max_log_scale=0.0), "max_log_scale"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("transformer", [AFF, RQS], ids=["affine", "rqs"])
def test_made_is_autoregressive(transformer):
    """Output row i of the MADE conditioner must not depend on inputs i..dim-1."""
    module = MaskedAutoregressiveLayer(5, transformer, (32, 32), nn.relu, identity_init=False)
    x = jax.random.normal(jax.random.key(0), (1, 5))
    params = module.init(jax.random.key(1), x, None)
    def made_out(v):  # all parameter groups, (dim, P)
        groups = module.apply(params, v[None], None, method=lambda m, u, c: m.made(u, c))
        return jnp.concatenate(groups, axis=-1)[0]

    jac = jax.jacfwd(made_out)(x[0])  # (dim, P, dim)
    dependence = np.abs(np.asarray(jac)).sum(axis=1)  # (output dim, input dim)
    assert np.all(np.triu(dependence) == 0.0)
    assert np.all(np.tril(dependence, -1)[1:, :][np.tril_indices(4)] > 0.0)
