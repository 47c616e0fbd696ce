"""Surjective flows: a property battery over every surjective layer, funnel densities,
the padded bound, a Gaussian whose entropy is known, and argument errors."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import CouplingLayer
from jaxgen.flows import ElementwiseSpline
from jaxgen.flows import FlowifiedConv2d
from jaxgen.flows import FlowifiedLinear
from jaxgen.flows import FunnelConv2d
from jaxgen.flows import LeakyReLU
from jaxgen.flows import NoisePadding
from jaxgen.flows import SplineTransformer
from jaxgen.flows import Stack
from jaxgen.flows import SurjectiveFlow
from jaxgen.flows import UniformDequantization
from jaxgen.flows import coupling_funnel
from jaxgen.flows import flowify
from jaxgen.flows import funnel_flow
from jaxgen.flows import linear_funnel
from jaxgen.flows import slice_funnel
from jaxgen.train import FitConfig
from jaxgen.train import fit

H = (16,)
# name -> (layer, directions in which the layer is injective, so that the other
# direction with mean=True inverts it: "latent" means inverse(forward(z)) == z,
# "data" means forward(inverse(x)) == x)
LAYERS = {
    "slice_gaussian": (slice_funnel(3, 1, decoder_hidden=H), ("latent",)),
    "slice_flow2": (slice_funnel(4, 2, decoder="flow", decoder_hidden=H), ("latent",)),
    "coupling_funnel": (coupling_funnel(3, 1, hidden=H, decoder="flow", decoder_hidden=H),
                        ("latent",)),
    "linear_funnel": (linear_funnel(4, 2, decoder_hidden=H), ("latent",)),
    "funnel_conv": (FunnelConv2d(2, 4, 1, hidden=8), ("latent",)),
    "padding_gaussian": (NoisePadding(2, 1), ("data",)),
    "flowified_reduce": (FlowifiedLinear(3, 2, decoder_hidden=H), ("latent",)),
    "activations": (SurjectiveFlow(3, [ElementwiseSpline(3, 6, 2.0), LeakyReLU(3)]),
                    ("latent", "data")),
    "flowified_widen": (FlowifiedLinear(2, 3), ("data",)),
    "flowified_conv": (FlowifiedConv2d(2, 4, 1, 3, decoder_hidden=H), ("latent",)),
}


def _perturbed(init_params, key, scale=0.1):
    """Every parameter plus N(0, scale^2): away from the identity, still smooth. (Much
    larger perturbations make saturated spline conditioners whose bins of width 1e-4
    carry O(1) mass: exact, but no grid or importance sampler resolves them.)"""
    return _perturb(init_params, key, scale)


@jax.jit
def _perturb(init_params, key, scale):
    leaves, tree = jax.tree_util.tree_flatten(init_params)
    keys = jax.random.split(key, len(leaves)) if leaves else []
    leaves = [a + scale * jax.random.normal(k, a.shape, a.dtype)
              for a, k in zip(leaves, keys, strict=True)]
    return jax.tree_util.tree_unflatten(tree, leaves)


N_BATTERY = 20_000  # one batch size for every battery test: each layer compiles once


@functools.cache
def _battery(name):
    """Float64 flow of one layer, perturbed params and its jitted maps (cached)."""
    layer, injective = LAYERS[name]
    flow = layer if isinstance(layer, SurjectiveFlow) else SurjectiveFlow(layer.in_dim, [layer])
    with jax.enable_x64(True):
        params = _perturbed(flow.init(jax.random.key(0)), jax.random.key(1))
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    return (layer, injective, flow, params, jax.jit(flow.inverse), jax.jit(flow.log_prob),
            jax.jit(flow.forward, static_argnums=3))


def _data(name, key):
    return jax.random.normal(key, (N_BATTERY, _battery(name)[2].dim), jnp.float64)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_mean_inverse_in_injective_direction(name, x64):
    """Forward then mean-inverse reproduces inputs where the layer is injective."""
    layer, injective, _, params, inverse, _, forward = _battery(name)
    key = jax.random.key(2)
    if "latent" in injective:
        # mean=True is the paper's "mean" inverse; a sampled inverse differs only in the
        # decoder draw (same code path), so one compile covers the property
        z = jax.random.normal(key, (N_BATTERY, _battery(name)[2].latent_dim), jnp.float64)
        np.testing.assert_allclose(inverse(params, forward(params, z, key, True), key)[0],
                                   z, atol=1e-8)
    if "data" in injective:
        x = _data(name, key)
        np.testing.assert_allclose(forward(params, inverse(params, x, key)[0], key, True), x,
                                   atol=1e-8)


def test_dequantization_round_trip_on_integers():
    layer = UniformDequantization(5, 17)
    flow = SurjectiveFlow(5, [layer])
    x = jnp.floor(jax.random.uniform(jax.random.key(0), (50, 5)) * 17)
    y, c = flow.inverse({"steps": ({},)}, x, jax.random.key(1))
    np.testing.assert_array_equal(flow.forward({"steps": ({},)}, y, mean=True), x)
    np.testing.assert_allclose(c, 5 * math.log(1 / 17), rtol=1e-6)
    assert float(y.min()) >= 0.0 and float(y.max()) < 1.0


EXACT = sorted(n for n in LAYERS if LAYERS[n][0].exact)


@pytest.mark.parametrize("name", EXACT)
def test_exact_layers_are_normalised(name, x64):
    """Importance sampling of the integral of p over R^D: E_g[p/g] = 1 for a density.

    With g = N(0, 2^2 I) and n = 20000 draws, the estimate's standard error is
    sd(p/g)/sqrt(n), estimated from the same draws; 5 standard errors bound a two-sided
    miss probability of 6e-7 per case if the weights have finite variance (the perturbed
    layers stay within a factor of a few of a standard normal, lighter-tailed than g).
    A wrong log-determinant or an unnormalised decoder shifts the integral by O(1).
    """
    _, _, flow, params, inverse, _, _ = _battery(name)
    s = 2.0
    x = s * _data(name, jax.random.key(3))
    log_g = jnp.sum(-0.5 * (x / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi), axis=-1)
    z, contribution = inverse(params, x, jax.random.key(2))  # reuses the compiled inverse
    w = np.exp(np.asarray(flow.base.log_prob(z) + contribution - log_g))
    se = w.std() / math.sqrt(N_BATTERY)
    assert abs(w.mean() - 1.0) < 5 * se, (w.mean(), se)
    assert se < 0.05  # the check has power


def _funnel_pieces(name, module, x):
    """(bijective map x -> (dropped, kept), log q(dropped | kept)) of a funnel-type layer."""
    if name == "funnel_conv":
        def full(m, v):
            z, _ = m.inverse(v)
            return jnp.concatenate([z, m._patches(v)[1].reshape(v.shape[0], -1)], -1)

        def log_q(m, v):
            z, _ = m.inverse(v)
            retained, dropped = m._patches(v)
            mean, log_scale = m._decode(z.reshape(retained.shape))
            u = (dropped - mean) * jnp.exp(-log_scale)
            return jnp.sum(-0.5 * u * u - log_scale - 0.5 * math.log(2 * math.pi), (1, 2, 3))
    elif name == "flowified_reduce":
        def full(m, v):
            z, _ = m.inverse(v)
            return jnp.concatenate([(v @ flowify._rotation(m.a1).T)[:, :1], z], -1)

        def log_q(m, v):
            z, _ = m.inverse(v)
            return m.decoder.log_prob((v @ flowify._rotation(m.a1).T)[:, :1], z)
    else:
        def full(m, v):
            return v if m.bijection is None else m.bijection.inverse(v, None)[0]

        def log_q(m, v):
            y = full(m, v)
            return m.decoder.log_prob(y[:, : m.drop], y[:, m.drop :])
    return full, log_q


# the other funnels share Funnel's code path with coupling_funnel
FUNNEL_TYPES = ["coupling_funnel", "flowified_reduce", "funnel_conv"]


@pytest.mark.parametrize("name", FUNNEL_TYPES)
def test_funnel_contribution_is_logdet_plus_decoder(name, x64):
    """Exact likelihood of an inference surjection: c(x) = log|det d(y_d, z)/dx| +
    log q(y_d | z), with the determinant from ``jax.jacfwd`` (float64, exact to rounding)."""
    layer, _, _, params, _, _, _ = _battery(name)
    p = params["steps"][0]
    x = _data(name, jax.random.key(4))[:5]
    full, log_q = _funnel_pieces(name, layer, x)

    @jax.jit
    def pieces(v):
        jac = jax.vmap(jax.jacfwd(lambda u: layer.apply(p, u[None], method=full)[0]))(v)
        return (layer.apply(p, v, method=layer.inverse)[1], jac,
                layer.apply(p, v, method=log_q))

    contribution, jac, lq = pieces(x)
    logdet = np.linalg.slogdet(np.asarray(jac))[1]
    np.testing.assert_allclose(contribution, logdet + lq, atol=1e-8)


def _grid_mass(log_prob, half_width, num):
    h = 2 * half_width / num
    g = jnp.linspace(-half_width + h / 2, half_width - h / 2, num)
    pts = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
    return float(jnp.sum(jnp.exp(log_prob(pts))) * h * h)


@pytest.mark.parametrize("funnel, decoder", [("coupling", "flow")])
def test_funnel_flow_density_integrates_to_one_on_2d_grid(funnel, decoder, x64):
    """A funnel flow 2 -> 1 is a proper density: its 2D integral is 1, not a bound.

    Midpoint sum on [-10, 10]^2 with h = 0.05: the error of the rule is O(h^2 f''); for
    these mildly perturbed flows halving h moves the sum by < 1e-4 (measured: 9e-5 ->
    2e-5 for the coupling funnel, the O(h^2) ratio of 4), and the mass beyond the box is
    a Gaussian tail (the splines are the identity beyond +-3), < 1e-20. 1e-3 leaves room
    for both; an error in any log-determinant or decoder term moves the integral by
    O(10%).
    """
    flow, params = funnel_flow(jax.random.key(0), dim=2, latent_dims=(1,), layers_per_level=2,
                               funnel=funnel, decoder=decoder, hidden=H, decoder_hidden=H,
                               tail_bound=3.0)
    params = _perturbed(params, jax.random.key(1), 0.05)
    assert flow.exact and flow.latent_dim == 1
    mass = _grid_mass(jax.jit(lambda v: flow.log_prob(params, v)), 10.0, 400)
    assert abs(mass - 1.0) < 1e-3, mass


def test_noise_padded_bound_never_exceeds_exact_log_likelihood(x64):
    """log p(x) = log int p(x, u) du  >=  E_q[log p(x, u) - log q(u)] (Jensen).

    Model: pad 1-D x with u ~ N(0, 1), then a perturbed 2-layer coupling flow on (x, u).
    Both sides are computed by quadrature over u on [-15, 15] (600 points; the
    integrands are smooth and decay like Gaussians, so the quadrature error ~1e-6 is
    far below the gaps, which are > 1e-3 here). The flow's one-draw estimate averaged
    over 4000 noise draws must match the quadrature bound within 5 standard errors.
    """
    trans = SplineTransformer(6, 3.0)
    flow = SurjectiveFlow(1, [NoisePadding(1, 1), Stack(CouplingLayer(2, trans, H), 2,
                                                        np.array([[1, 0], [1, 0]]))])
    params = _perturbed(flow.init(jax.random.key(0)), jax.random.key(1), 0.2)
    joint = SurjectiveFlow(2, [Stack(CouplingLayer(2, trans, H), 2, np.array([[1, 0], [1, 0]]))])
    joint_params = {"steps": params["steps"][1:]}
    xs = jnp.linspace(-3.0, 3.0, 13)
    u = jnp.linspace(-15.0, 15.0, 600)
    du = float(u[1] - u[0])
    pts = jnp.stack([jnp.repeat(xs, u.size), jnp.tile(u, xs.size)], -1)
    log_joint = joint.log_prob(joint_params, pts).reshape(xs.size, u.size)
    log_q = -0.5 * u**2 - 0.5 * math.log(2 * math.pi)
    exact = jax.scipy.special.logsumexp(log_joint, axis=1) + math.log(du)
    weights = jnp.exp(log_q) / jnp.sum(jnp.exp(log_q))  # sums to 1: discrete Jensen holds
    bound = jnp.sum(weights * (log_joint - log_q), axis=1) + math.log(jnp.sum(jnp.exp(log_q)) * du)
    assert np.all(np.asarray(bound) <= np.asarray(exact))
    assert not flow.exact
    keys = jax.random.split(jax.random.key(2), 4000)
    draws = jax.vmap(lambda k: flow.log_prob(params, xs[:, None], k))(keys)
    se = draws.std(axis=0) / math.sqrt(keys.shape[0])
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - bound), 5 * se + 1e-9)


def test_gaussian_entropy_within_statistical_tolerance():
    """A linear funnel 3 -> 2 with a linear-Gaussian decoder contains every Gaussian
    (z = C^{-1} x_k whitens the kept part, and x_d | z is Gaussian with mean linear in z);
    trained by maximum likelihood on a correlated Gaussian its test NLL approaches the
    entropy 1/2 log det(2 pi e Sigma).

    Tolerance: the per-event NLL of the truth has variance d/2, so the test-set average
    differs from the entropy by N(0, d / (2 n_test)); the maximum-likelihood fit's excess
    risk KL(truth || fit) is ~ chi^2_k / (2 n_train) with k = d + d(d+1)/2 = 9 free
    parameters of a Gaussian (mean k / 2n, sd sqrt(2k) / 2n). Allowed: 4 sd of the first
    plus mean + 4 sd of the second.
    """
    d, n_train, n_test = 3, 20_000, 50_000
    sigma = jnp.array([[2.0, 1.2, 0.5], [1.2, 1.5, -0.4], [0.5, -0.4, 0.8]])
    mean = jnp.array([0.5, -1.0, 2.0])
    chol = jnp.linalg.cholesky(sigma)
    x = mean + jax.random.normal(jax.random.key(0), (n_train + n_test, d)) @ chol.T
    train, test = x[:n_train], x[n_train:]
    flow = SurjectiveFlow(d, [linear_funnel(d, 1, decoder_hidden=())])
    params = flow.init(jax.random.key(1))
    config = FitConfig(epochs=30, batch_size=500, learning_rate=2e-2, val_fraction=0.0,
                       patience=None, progress=False)
    fitted = fit(lambda p, b, k: flow.nll(p, b), params, train, key=jax.random.key(2),
                 config=config)
    nll = float(jnp.mean(flow.nll(fitted.params, test)))
    entropy = 0.5 * float(jnp.linalg.slogdet(2 * math.pi * math.e * sigma)[1])
    k = d + d * (d + 1) // 2
    tol = 4 * math.sqrt(d / 2 / n_test) + (k + 4 * math.sqrt(2 * k)) / (2 * n_train)
    assert abs(nll - entropy) < tol, (nll, entropy, tol)


def test_jit_and_vmap_equal_eager():
    """Eager (op-by-op) against jit and against a vmap over single events."""
    flow = SurjectiveFlow(3, [LeakyReLU(3), slice_funnel(3, 1, decoder_hidden=H)])
    params = _perturbed(flow.init(jax.random.key(0)), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (9, 3))
    eager = flow.log_prob(params, x)
    jitted = jax.jit(flow.log_prob)(params, x)
    per_event = jax.jit(jax.vmap(lambda v: flow.log_prob(params, v[None])[0]))(x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(per_event, eager, rtol=1e-5, atol=1e-5)
    padded = SurjectiveFlow(2, [NoisePadding(2, 2)])
    key = jax.random.key(4)
    np.testing.assert_allclose(jax.jit(padded.log_prob)({"steps": ({},)}, x[:, :2], key),
                               padded.log_prob({"steps": ({},)}, x[:, :2], key), rtol=1e-6)


def _flow_errors():
    exact = SurjectiveFlow(3, [slice_funnel(3, 1, decoder_hidden=H)])
    bound = SurjectiveFlow(2, [NoisePadding(2, 1)])
    p_exact, p_bound = exact.init(jax.random.key(0)), bound.init(jax.random.key(0))
    return [
        (lambda: exact.log_prob(p_exact, jnp.zeros((4, 2))), "last dimension 3"),
        (lambda: exact.log_prob(p_exact, jnp.zeros(3)), "dimension"),
        (lambda: exact.log_prob(p_exact, jnp.full((2, 3), jnp.nan)), "NaN"),
        (lambda: bound.log_prob(p_bound, jnp.zeros((4, 2))), "`key` is needed"),
        (lambda: exact.sample(p_exact, jax.random.key(0), 0), "`n`"),
        (lambda: exact.forward(p_exact, jnp.zeros((2, 2))), "`key` is needed"),
        (lambda: exact.forward(p_exact, jnp.zeros((2, 3)), mean=True), "last dimension 2"),
    ]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: slice_funnel(3, 3), "`drop` must be in"),
        (lambda: coupling_funnel(3, 0), "`drop` must be in"),
        (lambda: slice_funnel(3, 1, decoder="mixture"), "`decoder` must be one of"),
        (lambda: SurjectiveFlow(3, [slice_funnel(4, 1)]), "expects in_dim 4"),
        (lambda: SurjectiveFlow(3, [slice_funnel(3, 1), slice_funnel(3, 1)]), "in_dim 3"),
        (lambda: SurjectiveFlow(3, []), "at least one"),
        (lambda: SurjectiveFlow(3, ["coupling"]), "step 0 must be"),
        (lambda: SurjectiveFlow(3, [Stack(CouplingLayer(4, SplineTransformer()), 2)]),
         "has dim 4"),
        (lambda: SurjectiveFlow(3, [slice_funnel(3, 1)], base=linear_base(3)),
         "event shape \\(2,\\)"),
        (lambda: funnel_flow(jax.random.key(0), dim=4, latent_dims=(2, 3)), "latent_dims"),
        (lambda: funnel_flow(jax.random.key(0), dim=4, latent_dims=()), "latent_dims"),
        (lambda: funnel_flow(jax.random.key(0), dim=4, latent_dims=(2,), funnel="conv"),
         "`funnel` must be one of"),
        (lambda: SurjectiveFlow(6, [FunnelConv2d(3, 2, 1)]).init(jax.random.key(0)),
         "`height` must be even"),
        (lambda: SurjectiveFlow(2, [NoisePadding(2, 1, "laplace")]).init(jax.random.key(0)),
         "`noise` must be one of"),
        (lambda: SurjectiveFlow(2, [NoisePadding(2, 0)]).init(jax.random.key(0)), "`pad`"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("case", range(7))
def test_invalid_inputs(case):
    make, match = _flow_errors()[case]
    with pytest.raises(ValueError, match=match):
        make()


def linear_base(d):
    import distrax

    return distrax.MultivariateNormalDiag(jnp.zeros(d), jnp.ones(d))
