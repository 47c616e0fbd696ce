"""Flowified layers (arXiv:2205.15209): the rotation-scale-slice parametrisation,
activation log-determinants, the patch convolution, dequantisation, bits/dim, the MLP
helper and argument errors. (Round trips, normalisation and the exact-likelihood
decomposition of the flowified layers run in the battery of test_surjections.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import ElementwiseSpline
from jaxgen.flows import FlowifiedConv2d
from jaxgen.flows import FlowifiedLinear
from jaxgen.flows import LeakyReLU
from jaxgen.flows import Logit
from jaxgen.flows import SurjectiveFlow
from jaxgen.flows import UniformDequantization
from jaxgen.flows import bits_per_dim
from jaxgen.flows import flowify_mlp
from jaxgen.flows.flowify import _rotation
from jaxgen.flows.flowify import expm
from jaxgen.flows.flowify import paper_decoder_hidden


@jax.jit
def _perturb(params, key):
    """Parameters (cast to the default float, float64 under x64) plus N(0, 0.2^2)."""
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.result_type(float)), params)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [a + 0.2 * jax.random.normal(k, a.shape, a.dtype)
               for a, k in zip(leaves, keys, strict=True)])


@pytest.mark.parametrize("d1, d2", [(5, 3), (3, 5)])
def test_linear_is_rotation_scale_slice(d1, d2, x64):
    """z = W x + b with W = U2 diag(e^s) [0 | I] U1: its singular values are e^s (those
    of the kept or, when widening, of the first D1 coordinates) and U is orthogonal."""
    layer = FlowifiedLinear(d1, d2, decoder_hidden=(8,))
    params = _perturb(layer.init(jax.random.key(0), jnp.zeros((1, d1))), jax.random.key(1))
    p = params["params"]
    u1 = _rotation(p["rotation_in"])
    np.testing.assert_allclose(u1 @ u1.T, np.eye(d1), atol=1e-12)
    key = jax.random.key(2)  # the padding noise enters additively: W does not depend on it

    @jax.jit
    def weight_and_contribution(v):
        w = jax.jacfwd(lambda u: layer.apply(params, u[None], key, method=layer.inverse)[0][0])
        return w(v[0]), layer.apply(params, v, key, method=layer.inverse)[1]

    w, contribution = weight_and_contribution(jnp.ones((2, d1)))
    scales = np.exp(np.asarray(p["log_scale"]))
    kept = scales if d2 <= d1 else scales[:d1]
    np.testing.assert_allclose(np.linalg.svd(np.asarray(w), compute_uv=False),
                               np.sort(kept)[::-1], rtol=1e-10)
    if d2 >= d1:  # no decoder term: the contribution is log|det| of the scale
        np.testing.assert_allclose(contribution, np.sum(p["log_scale"]), rtol=1e-12)
    assert layer.exact == (d2 <= d1)


def test_expm_equals_scipy_expm_with_gradient(x64):
    """Our scaling-and-squaring expm against jax.scipy's Pade one, over norms 1e-2..1e2."""
    for scale in (0.01, 1.0, 30.0):
        m = jax.random.normal(jax.random.key(0), (12, 12), jnp.float64) * scale
        ref = jax.scipy.linalg.expm(m)
        np.testing.assert_allclose(expm(m), ref, rtol=1e-11, atol=1e-11 * np.abs(ref).max())
    m = jax.random.normal(jax.random.key(1), (12, 12), jnp.float64)
    grads = jax.jit(lambda a: [jax.grad(lambda b, f=f: jnp.sum(jnp.sin(f(b - b.T))))(a)
                               for f in (expm, jax.scipy.linalg.expm)])(m)
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-11)


def test_activation_log_dets_match_jacobian(x64):
    flow = SurjectiveFlow(3, [Logit(3), ElementwiseSpline(3, 10, 2.0), LeakyReLU(3, 0.5)])
    params = _perturb(flow.init(jax.random.key(0)), jax.random.key(1))
    x = jax.random.uniform(jax.random.key(2), (50, 3), jnp.float64)

    @jax.jit
    def check(v):
        z, ld = flow.inverse(params, v)
        jac = jax.vmap(jax.jacfwd(lambda u: flow.inverse(params, u[None])[0][0]))(v)
        return z, ld, jac, flow.forward(params, z, mean=True)

    z, ld, jac, x_back = check(x)
    np.testing.assert_allclose(ld, np.linalg.slogdet(np.asarray(jac))[1], atol=1e-9)
    assert np.any(np.asarray(z) < 0)  # the leaky ReLU's negative branch is exercised
    np.testing.assert_allclose(x_back, x, atol=1e-10)


def test_conv_is_the_kernel_on_each_patch():
    conv = FlowifiedConv2d(4, 6, 2, 5, kernel_size=2, decoder_hidden=(8,))
    flow = SurjectiveFlow(conv.in_dim, [conv])
    params = _perturb(flow.init(jax.random.key(0)), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (3, 4 * 6 * 2))
    z, c = jax.jit(flow.inverse)(params, x)
    img = np.asarray(x).reshape(3, 2, 2, 3, 2, 2)  # (n, h', k, w', k, C)
    patches = img.transpose(0, 1, 3, 2, 4, 5).reshape(3 * 2 * 3, 8)
    kernel = FlowifiedLinear(8, 5, decoder_hidden=(8,))
    kp = {"params": params["steps"][0]["params"]["kernel"]}
    zk, ck = jax.jit(lambda p, v: kernel.apply(p, v, method=kernel.inverse))(
        kp, jnp.asarray(patches))
    np.testing.assert_allclose(z, np.asarray(zk).reshape(3, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, np.asarray(ck).reshape(3, 6).sum(1), rtol=1e-5, atol=1e-4)
    assert conv.out_dim == 2 * 3 * 5 and conv.exact


def test_paper_decoder_rule():
    assert paper_decoder_hidden(784, 512) == ()  # N = 2352 > 200: linear
    assert paper_decoder_hidden(64, 32) == (192, 192)
    assert paper_decoder_hidden(8, 4) == (64,) * 4  # N = 64 (the minimum)


def test_dequantisation_and_bits_per_dim():
    """A flow of dequantisation alone onto a U(0,1)^D 'base' scores every integer point
    log P = D log(1/L): exactly log2(L) bits/dim, the uniform model's entropy."""
    d, levels = 4, 17
    flow = SurjectiveFlow(d, [UniformDequantization(d, levels)])
    x = jnp.floor(jax.random.uniform(jax.random.key(0), (10, d)) * levels)
    y, c = flow.inverse({"steps": ({},)}, x, jax.random.key(1))
    np.testing.assert_allclose(bits_per_dim(c, d), math.log2(levels), rtol=1e-6)
    assert not flow.exact


def test_flowify_mlp_structure_and_bound_flag():
    flow, params = flowify_mlp(jax.random.key(0), sizes=(6, 4, 2), decoder_hidden=(8,))
    assert flow.exact and flow.latent_dim == 2
    x = jax.random.normal(jax.random.key(1), (5, 6))
    lp = jax.jit(flow.log_prob)(params, x)
    assert lp.shape == (5,) and bool(jnp.all(jnp.isfinite(lp)))
    assert jax.jit(flow.sample, static_argnums=2)(params, jax.random.key(2), 3).shape == (3, 6)
    assert not SurjectiveFlow(2, [FlowifiedLinear(2, 4), LeakyReLU(4),
                                  FlowifiedLinear(4, 2)]).exact  # 2 -> 4 pads: a bound
    assert not SurjectiveFlow(6, [UniformDequantization(6, 17), FlowifiedLinear(6, 2)]).exact


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: flowify_mlp(jax.random.key(0), sizes=(4,)), "`sizes`"),
        (lambda: flowify_mlp(jax.random.key(0), sizes=(4, 0)), "`sizes`"),
        (lambda: flowify_mlp(jax.random.key(0), sizes=(4, 2), activation="tanh"),
         "`activation` must be one of"),
        (lambda: SurjectiveFlow(12, [FlowifiedConv2d(3, 4, 1, 2)]).init(jax.random.key(0)),
         "`height` plus padding"),
        (lambda: SurjectiveFlow(2, [Logit(2, 0.5)]).init(jax.random.key(0)), "`alpha`"),
        (lambda: SurjectiveFlow(2, [LeakyReLU(2, 0.0)]).init(jax.random.key(0)), "`alpha`"),
        (lambda: SurjectiveFlow(2, [UniformDequantization(2, 1)]).init(jax.random.key(0)),
         "`num_levels`"),
        (lambda: SurjectiveFlow(2, [FlowifiedLinear(2, 0)]).init(jax.random.key(0)),
         "`out_features`"),
        (lambda: bits_per_dim(jnp.zeros(3), 0), "`dim`"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_widening_layer_needs_a_key():
    flow = SurjectiveFlow(2, [FlowifiedLinear(2, 3)])
    params = flow.init(jax.random.key(0))
    with pytest.raises(ValueError, match="`key` is needed"):
        flow.log_prob(params, jnp.zeros((1, 2)))
