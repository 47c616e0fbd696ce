"""The overlapping flowified convolution (arXiv:2205.15209, Sec. 3 "Conv2d"): pad -> tile
(duplicated pixels with orthogonal noise) -> per-patch flowified linear kernel.

Geometry against brute-force counts and ``lax.conv_general_dilated_patches``; the tile
noise (orthogonal, chi radius, hand-computed contribution); the bound against the exact
marginal of a linear-Gaussian model; k = s against the previous reshape implementation;
jit/vmap; argument errors."""

import functools
import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxgen.flows import FlowifiedConv2d
from jaxgen.flows import FlowifiedLinear
from jaxgen.flows import SurjectiveFlow
from jaxgen.flows.flowify import conv_geometry

# (H, W, C_in, C_out, k, s, padding)
GEOMETRIES = [
    (4, 6, 2, 5, 2, 2, 0),  # non-overlapping (the old case)
    (8, 8, 1, 4, 3, 2, ((0, 1), (0, 1))),  # the paper's conv1 first layer, reference padding
    (5, 5, 1, 3, 3, 1, 1),  # "same"-size stride-1 convolution
    (6, 4, 2, 6, 4, 2, ((1, 1), (0, 0))),  # N in {1, 2} along rows, 1 along columns
    (4, 4, 1, 2, 2, 2, 1),  # k = s with padding: padded, no duplicates
]


def _float64(params):
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)


def _pairs(p):
    return ((p, p), (p, p)) if isinstance(p, int) else p


def _set(params, **values):
    """Params of a one-conv flow with top-level scalars/kernel leaves replaced."""
    inner = dict(params["steps"][0]["params"])
    kernel = dict(inner["kernel"])
    for name, v in values.items():
        if name in kernel:
            kernel[name] = jnp.full_like(kernel[name], v)
        else:
            inner[name] = jnp.asarray(v, jnp.result_type(float))
    inner["kernel"] = kernel
    return {"steps": ({"params": inner},)}


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_shapes_and_multiplicity_against_brute_force(geometry):
    """out_dim from lax's own convolution shape rule; N from counting, for every padded
    pixel, the windows containing it; tiles equal to lax's patch extraction."""
    h, w, c_in, c_out, k, s, p = geometry
    (top, bottom), (left, right) = _pairs(p)
    conv = FlowifiedConv2d(h, w, c_in, c_out, kernel_size=k, stride=s, padding=p)
    out = jax.eval_shape(lambda v, f: jax.lax.conv_general_dilated(
        v, f, (s, s), ((top, bottom), (left, right))),
        jax.ShapeDtypeStruct((1, c_in, h, w), jnp.float32),
        jax.ShapeDtypeStruct((c_out, c_in, k, k), jnp.float32)).shape
    assert (conv.in_dim, conv.out_dim) == (h * w * c_in, out[1] * out[2] * out[3])
    g = conv.geometry
    hp, wp = g.padded
    count = np.zeros((hp, wp), int)
    for r in range(hp):
        for col in range(wp):
            rows = sum(1 for o in range(0, hp - k + 1, s) if o <= r < o + k)
            cols = sum(1 for o in range(0, wp - k + 1, s) if o <= col < o + k)
            count[r, col] = rows * cols
    np.testing.assert_array_equal(g.multiplicity.reshape(hp, wp, c_in),
                                  np.repeat(count[..., None], c_in, -1))
    assert conv.exact == (k == s and p == 0 and c_out <= k * k * c_in)
    padded = np.arange(hp * wp * c_in, dtype=np.float32)
    ref = jax.lax.conv_general_dilated_patches(
        jnp.asarray(padded.reshape(1, hp, wp, c_in).transpose(0, 3, 1, 2)), (k, k), (s, s),
        "VALID")  # (1, C*k*k, Ph, Pw), features ordered (c, i, j)
    ref = np.asarray(ref)[0].reshape(c_in, k, k, *g.grid).transpose(3, 4, 1, 2, 0)
    np.testing.assert_array_equal(padded[g.tiles], ref.reshape(g.tiles.shape))
    crop = np.zeros((hp, wp, c_in), bool)
    crop[top:top + h, left:left + w] = True
    np.testing.assert_array_equal(np.sort(g.crop), np.flatnonzero(crop.ravel()))


def test_tile_noise_is_orthogonal_and_mean_inverse_exact(x64):
    """Copies of a pixel differ from it by noise summing to zero over the copies (orthogonal
    to their mean); N = 1 values are copied exactly. With a square kernel (a bijection per
    patch) forward(mean) o inverse reproduces the input to float64 rounding."""
    h, w, c_in, c_out, k, s, p = GEOMETRIES[1]
    conv = FlowifiedConv2d(h, w, c_in, k * k * c_in, kernel_size=k, stride=s, padding=p)
    flow = SurjectiveFlow(conv.in_dim, [conv])
    params = _set(_float64(flow.init(jax.random.key(0))), tile_log_scale=math.log(0.5))
    x = jax.random.normal(jax.random.key(1), (7, conv.in_dim), jnp.float64)
    tiles, _ = jax.jit(lambda v, key: conv.apply(params["steps"][0], v, key,
                                                 method=conv.tile))(x, jax.random.key(2))
    g = conv.geometry
    padded = np.zeros((7, g.multiplicity.size))
    np.add.at(padded.T, g.tiles.ravel(), np.asarray(tiles).reshape(7, -1).T)
    padded /= g.multiplicity
    np.testing.assert_allclose(padded[:, g.crop], x, atol=1e-12)  # the copies' mean is x
    dev = np.asarray(tiles) - padded[:, g.tiles]
    single = g.multiplicity[g.tiles] == 1
    np.testing.assert_array_equal(dev[:, single], 0.0)
    assert np.all(np.abs(dev[:, ~single]) > 0)
    z, _ = jax.jit(flow.inverse)(params, x, jax.random.key(3))
    np.testing.assert_allclose(jax.jit(flow.forward, static_argnums=3)(params, z, None, True),
                               x, atol=1e-10)


def test_tile_contribution_by_hand(x64):
    """2x3 image, k=2, s=1: the middle column's two pixels each lie in 2 patches. For one
    such pixel v with copies (y_a, y_b) = v + sqrt(2) (u, -u), the noise coordinate in the
    1-dim complement of (1, 1) is w = sqrt(2) u ~ N(0, A^2), so -log q = log(2 pi A^2)/2 +
    w^2 / (2 A^2), and the Jacobian of (v, w) -> y is sqrt(2)^2 = 2: contribution log 2 -
    log q. The layer's value is the sum over the two pixels."""
    a = 0.3
    conv = FlowifiedConv2d(2, 3, 1, 4, kernel_size=2, stride=1)
    flow = SurjectiveFlow(6, [conv])
    params = _set(flow.init(jax.random.key(0)), tile_log_scale=math.log(a))
    x = jax.random.normal(jax.random.key(1), (5, 6), jnp.float64)
    tiles, contribution = conv.apply(params["steps"][0], x, jax.random.key(2), method=conv.tile)
    tiles = np.asarray(tiles)  # (5, 2 patches, 2x2): patch 0 columns (0, 1), patch 1 (1, 2)
    expected = np.zeros(5)
    for row in range(2):
        y_a, y_b = tiles[:, 0, 2 * row + 1], tiles[:, 1, 2 * row]
        v = np.asarray(x)[:, 3 * row + 1]
        u = (y_a - v) / math.sqrt(2.0)
        np.testing.assert_allclose(y_b - v, -math.sqrt(2.0) * u, atol=1e-12)
        w = math.sqrt(2.0) * u
        expected += math.log(2.0) + 0.5 * math.log(2 * math.pi * a * a) + w * w / (2 * a * a)
    np.testing.assert_allclose(contribution, expected, rtol=1e-12)


def test_tile_noise_radius_is_chi_distributed():
    """|u|^2 / A^2 of a pixel with N copies follows chi^2 with N - 1 degrees of freedom
    (u = (copies - v) / sqrt(N)). Kolmogorov-Smirnov over the 4000 N = 2 and 500 N = 4
    pixels of 500 images (independent draws), at a 1e-3 level: a false failure has
    probability 1e-3 per N (fixed seed, so it is reproducible)."""
    a = 0.2
    conv = FlowifiedConv2d(5, 5, 1, 3, kernel_size=3, stride=2)  # N in {1, 2, 4}
    params = _set(_init(conv), tile_log_scale=math.log(a))["steps"][0]
    x = jax.random.normal(jax.random.key(0), (500, 25))
    tiles, _ = jax.jit(lambda v, key: conv.apply(params, v, key, method=conv.tile))(
        x, jax.random.key(1))
    g = conv.geometry
    np.testing.assert_array_equal(g.crop, np.arange(25))  # no padding: image = padded image
    sq = np.zeros((500, g.multiplicity.size))
    np.add.at(sq.T, g.tiles.ravel(),
              ((np.asarray(tiles) - np.asarray(x)[:, g.tiles]) ** 2).reshape(500, -1).T)
    radius2 = sq / g.multiplicity / a**2
    for n, size in ((2, 4000), (4, 500)):
        values = radius2[:, g.multiplicity == n].ravel()
        assert values.size == size
        assert scipy.stats.kstest(values, scipy.stats.chi2(n - 1).cdf).pvalue > 1e-3


def _gaussian_flow(geometry, sigma):
    """A one-conv flow with a square kernel at zero log-scale and bias (orthogonal) and a
    N(0, sigma^2 I) base: the tiles are then N(0, sigma^2 I) under the model."""
    h, w, c_in, _, k, s, p = geometry
    conv = FlowifiedConv2d(h, w, c_in, k * k * c_in, kernel_size=k, stride=s, padding=p)
    dim = conv.out_dim
    base = distrax.MultivariateNormalDiag(jnp.zeros(dim, jnp.float64),
                                          jnp.full(dim, sigma, jnp.float64))
    flow = SurjectiveFlow(conv.in_dim, [conv], base=base)
    return conv, flow, _float64(flow.init(jax.random.key(0)))


def _exact_and_expected_bound(conv, x, sigma, a, b):
    """Exact log p(x) and E_q[bound] for tiles ~ N(0, sigma^2 I), computed directly.

    A padded value j, the mean of its N_j copies, is N(0, sigma^2 / N_j) under the model,
    independently of the copies' deviations from it (orthogonal directions of an isotropic
    Gaussian), which have variance sigma^2 in each of the N_j - 1 orthonormal directions.
    So log p(x) = sum_i log N(x_i; 0, sigma^2 / N_i) over the image, and the bound's gap is
    KL(q || posterior): per value, (N-1)/2 (r - 1 - log r) with r = N A^2 / sigma^2 (the
    copies deviate by sqrt(N) u, u ~ N(0, A^2)), plus, per padding value,
    KL(N(0, B^2) || N(0, sigma^2 / N)).
    """
    g = conv.geometry
    n = g.multiplicity.astype(float)
    var = sigma**2 / n[g.crop]
    exact = np.sum(-0.5 * np.asarray(x) ** 2 / var - 0.5 * np.log(2 * math.pi * var), -1)
    r = n * a * a / sigma**2
    gap = np.sum((n - 1) / 2 * (r - 1 - np.log(r)))
    is_pad = np.ones(n.size, bool)
    is_pad[g.crop] = False
    rp = n[is_pad] * b * b / sigma**2
    gap += np.sum(0.5 * (rp - 1 - np.log(rp)))
    return exact, exact - gap


def test_bound_is_tight_when_q_is_the_posterior(x64):
    """2x3 image, k=2, s=1 (N in {1, 2}), no padding: with 2 A^2 = sigma^2 the tile noise
    is the model's exact posterior of the copies, so every draw of the one-draw bound
    equals the exact log-likelihood (zero variance): a check of every constant."""
    sigma = 1.3
    conv, flow, params = _gaussian_flow((2, 3, 1, 4, 2, 1, 0), sigma)
    params = _set(params, tile_log_scale=math.log(sigma / math.sqrt(2.0)))
    x = jax.random.normal(jax.random.key(1), (6, 6), jnp.float64)
    exact, expected = _exact_and_expected_bound(conv, x, sigma, sigma / math.sqrt(2.0), 1.0)
    np.testing.assert_allclose(expected, exact, rtol=1e-14)
    log_prob = jax.jit(flow.log_prob)
    for i in range(3):
        np.testing.assert_allclose(log_prob(params, x, jax.random.key(10 + i)), exact,
                                   rtol=1e-10)
    assert not flow.exact


def test_bound_below_exact_marginal_with_padding_and_mixed_multiplicity(x64):
    """4x4 image, k=3, s=2, one padded row and column (N in {1, 2, 4}; 9 padding values):
    the one-draw bound averaged over 2000 noise draws matches E_q[bound] = log p(x) - KL
    within 5 standard errors (CLT over independent draws; se from the draws themselves),
    and stays below the exact log p(x) by the analytic gap (> 1 nat here)."""
    sigma, a, b = 1.3, 0.4, 0.7
    conv, flow, params = _gaussian_flow((4, 4, 1, 9, 3, 2, ((0, 1), (0, 1))), sigma)
    params = _set(params, tile_log_scale=math.log(a), pad_log_scale=math.log(b))
    x = jax.random.normal(jax.random.key(1), (4, 16), jnp.float64)
    exact, expected = _exact_and_expected_bound(conv, x, sigma, a, b)
    keys = jax.random.split(jax.random.key(2), 2000)
    draws = np.asarray(jax.jit(jax.vmap(lambda kk: flow.log_prob(params, x, kk)))(keys))
    se = draws.std(0) / math.sqrt(draws.shape[0])
    np.testing.assert_array_less(np.abs(draws.mean(0) - expected), 5 * se)
    assert np.all(exact - expected > 1.0)
    np.testing.assert_array_less(draws.mean(0) + 5 * se, exact)


class _ReshapeConv(nn.Module):
    """The kernel = stride convolution as it was implemented before (reshape tiling)."""

    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel_size: int = 2
    decoder_hidden: tuple | None = None

    def setup(self):
        k = self.kernel_size
        self.kernel = FlowifiedLinear(k * k * self.in_channels, self.out_channels,
                                      self.decoder_hidden)

    def _to_patches(self, x):
        k, c = self.kernel_size, self.in_channels
        h, w = self.height // k, self.width // k
        p = x.reshape(x.shape[:-1] + (h, k, w, k, c))
        return jnp.moveaxis(p, -4, -3).reshape(x.shape[:-1] + (h, w, k * k * c))

    def inverse(self, x, key=None):
        k = self.kernel_size
        z, c = self.kernel.inverse(self._to_patches(x), key)
        size = self.height // k * self.width // k * self.out_channels
        return z.reshape(x.shape[:-1] + (size,)), jnp.sum(c, axis=(-2, -1))

    def forward(self, z, key=None, mean=False):
        k, c = self.kernel_size, self.in_channels
        h, w = self.height // k, self.width // k
        p = self.kernel.forward(z.reshape(z.shape[:-1] + (h, w, self.out_channels)), key, mean)
        p = jnp.moveaxis(p.reshape(p.shape[:-3] + (h, w, k, k, c)), -3, -4)
        return p.reshape(p.shape[:-5] + (self.height * self.width * c,))

    def __call__(self, x, key=None):
        return self.inverse(x, jax.random.key(0) if key is None else key)


@pytest.mark.parametrize("c_out", [5, 9])  # reducing (decoder) and widening (padding noise)
def test_kernel_equal_to_stride_reproduces_the_reshape_implementation(c_out):
    """Same parameters from the same key, and the same outputs, bit for bit."""
    new = FlowifiedConv2d(4, 6, 2, c_out, kernel_size=2, decoder_hidden=(8,))
    old = _ReshapeConv(4, 6, 2, c_out, kernel_size=2, decoder_hidden=(8,))
    x = jax.random.normal(jax.random.key(1), (3, 48))
    p_new = jax.jit(new.init)(jax.random.key(0), x[:1])
    p_old = jax.jit(old.init)(jax.random.key(0), x[:1])
    jax.tree_util.tree_map(np.testing.assert_array_equal, p_new, p_old)
    key = jax.random.key(2)

    def both(m, p):
        z, c = m.apply(p, x, key, method=m.inverse)
        return z, c, m.apply(p, z, key, False, method=m.forward)

    for a_, b_ in zip(jax.jit(lambda p: both(new, p))(p_new),
                      jax.jit(lambda p: both(old, p))(p_old), strict=True):
        np.testing.assert_array_equal(a_, b_)
    assert new.exact == (c_out <= 8)


@functools.cache
def _small():
    """A 5x5 image, k=3, s=2, one padded column each side: (conv, flow, params)."""
    conv = _conv(height=5, width=5, padding=((0, 0), (1, 1)))
    flow = SurjectiveFlow(25, [conv])
    return conv, flow, flow.init(jax.random.key(0))


def test_jit_and_vmap_equal_eager():
    """The pad/tile step eager (op by op) against jit; the flow's bound vmapped over keys
    against one call per key; the deterministic data direction vmapped over single
    events against the batch."""
    conv, flow, params = _small()
    x = jax.random.normal(jax.random.key(1), (4, 25))
    key = jax.random.key(2)
    tile = functools.partial(conv.apply, params["steps"][0], method=conv.tile)
    for eager, jitted in zip(tile(x, key), jax.jit(tile)(x, key), strict=True):
        np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-5)
    keys = jax.random.split(key, 3)
    batched = jax.jit(jax.vmap(lambda kk: flow.log_prob(params, x, kk)))(keys)
    log_prob = jax.jit(flow.log_prob)
    for i in range(3):
        np.testing.assert_allclose(batched[i], log_prob(params, x, keys[i]), rtol=1e-5,
                                   atol=1e-4)
    z = jax.random.normal(jax.random.key(3), (4, conv.out_dim))
    forward = jax.jit(lambda v: flow.forward(params, v, mean=True))
    per_event = jax.jit(jax.vmap(lambda v: flow.forward(params, v[None], mean=True)[0]))(z)
    np.testing.assert_allclose(per_event, forward(z), rtol=1e-5, atol=1e-6)


def _init(conv):
    return SurjectiveFlow(conv.in_dim, [conv]).init(jax.random.key(0))


def _conv(height=8, width=8, kernel_size=3, stride=2, padding=((0, 1), (0, 1))):
    return FlowifiedConv2d(height, width, 1, 4, kernel_size=kernel_size, stride=stride,
                           padding=padding, decoder_hidden=(8,))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: _conv(kernel_size=2, stride=3).in_dim, "`stride` must be"),
        (lambda: _conv(kernel_size=2, stride=0).in_dim, "`stride` must be"),
        (lambda: _conv(kernel_size=0).in_dim, "`kernel_size` must be"),
        (lambda: FlowifiedConv2d(8, 8, 0, 4).in_dim, "`in_channels` must be"),
        (lambda: _init(FlowifiedConv2d(8, 8, 1, 0)), "`out_channels` must be"),
        (lambda: _conv(padding=3).in_dim, "`padding` must be in"),
        (lambda: _conv(padding=-1).in_dim, "`padding` must be in"),
        (lambda: _conv(padding=(1, 1)).in_dim, "`padding` must be an int or"),
        (lambda: _conv(padding=1).in_dim, "`height` plus"),
        (lambda: _conv(height=7, width=8).in_dim, "`height` plus"),
        (lambda: _conv(height=7, width=7, padding=((0, 0), (0, 1))).in_dim, "`width` plus"),
        (lambda: _conv(height=1, width=7).in_dim, "`height` plus"),
        (lambda: SurjectiveFlow(64, [_conv(padding=((0, 1), (0, 2)))]), "`width` plus"),
        (lambda: conv_geometry(8, 8, 1, 3, 2, ((0, 1.5), (0, 1))), "`padding` must be an int"),
    ],
)
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_overlapping_conv_needs_a_key():
    conv, _, params = _small()
    with pytest.raises(ValueError, match="`key` is needed"):
        conv.apply(params["steps"][0], jnp.zeros((1, 25)), method=conv.inverse)
    with pytest.raises(ValueError, match="`key` is needed"):
        SurjectiveFlow(25, [conv]).log_prob(params, jnp.zeros((1, 25)))
