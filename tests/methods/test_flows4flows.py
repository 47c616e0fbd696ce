"""Flows for Flows (arXiv:2211.02487) against the analytic map between two Gaussians."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.flows import Flow
from jaxgen.flows import LULinearLayer
from jaxgen.flows import Stack
from jaxgen.flows import coupling_flow
from jaxgen.methods import flows4flows as f4f
from jaxgen.train import FitConfig

MU_L, SD_L = 1.0, 0.5
MU_R, SD_R = -2.0, 2.0
N = 20_000
EPOCHS_2D, LR_2D = 30, 5e-3  # see test_validation_scores_the_annealed_penalty


def _gauss(mu, sd):
    return distrax.MultivariateNormalDiag(jnp.array([mu]), jnp.array([sd]))


def _affine_top():
    """A 1D flow z = a x + b (a > 0): LU-linear in one dimension, based on the right
    Gaussian. The MLE maps N(mu_L, sd_L) onto N(mu_R, sd_R): a = sd_R/sd_L = 4,
    b = mu_R - a mu_L = -6."""
    top = Flow(1, [Stack(LULinearLayer(1), 1)], base=_gauss(MU_R, SD_R))
    return top, top.init(jax.random.key(0))


def _slope_intercept(top, params):
    z0 = f4f.transport(top, params, jnp.zeros((1, 1)))[0, 0]
    z1 = f4f.transport(top, params, jnp.ones((1, 1)))[0, 0]
    return float(z1 - z0), float(z0)


@pytest.mark.parametrize("direction", ["forward", "inverse", "alternate", "iterate"])
def test_recovers_the_analytic_affine_map(direction):
    """Tolerances: with n = 2e4 samples per side the MLE of the slope is the ratio of
    sample standard deviations, relative error ~ sqrt(1/(2n) + 1/(2n)) = 0.007; the
    intercept error is ~ a sd_L / sqrt(n) + sd_R/sqrt(n) = 0.03. We allow 5 sigma plus
    the optimiser's residual (< 1e-2)."""
    left = MU_L + SD_L * jax.random.normal(jax.random.key(1), (N, 1))
    right = MU_R + SD_R * jax.random.normal(jax.random.key(2), (N, 1))
    top, params = _affine_top()
    # lr 0.2: the inverse direction's gradient in the raw diagonal parameter is small,
    # and at lr 0.05 it has not converged after 25 epochs (slope 3.76).
    cfg = FitConfig(epochs=25, batch_size=500, learning_rate=0.2, val_fraction=0.0,
                    progress=False)
    res = f4f.fit_transport(jax.random.key(3), top, params, left, right, _gauss(MU_L, SD_L),
                            transport=f4f.TransportConfig(direction=direction), config=cfg)
    a, b = _slope_intercept(top, res.params)
    np.testing.assert_allclose(a, SD_R / SD_L, rtol=5 * 0.007 + 0.01)
    np.testing.assert_allclose(b, MU_R - (SD_R / SD_L) * MU_L, atol=5 * 0.03 + 0.01)


def test_distance_penalty_selects_the_short_map():
    """L = R = N(0, I): every measure-preserving map is an MLE optimum and the identity is
    the optimal transport (cost 0). Both runs start from the same non-identity map; only
    the (annealed) L2 penalty pulls it back towards the identity."""
    dim = 2
    left = jax.random.normal(jax.random.key(1), (8000, dim))
    right = jax.random.normal(jax.random.key(2), (8000, dim))
    gauss = distrax.MultivariateNormalDiag(jnp.zeros(dim), jnp.ones(dim))
    top, params = coupling_flow(jax.random.key(0), dim=dim, num_layers=2, hidden=(16,),
                                base=gauss, tail_bound=4.0)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    start = jax.tree_util.tree_unflatten(
        tree, [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)])
    cfg = FitConfig(epochs=10, batch_size=250, learning_rate=3e-3, val_fraction=0.0,
                    progress=False)

    def cost(penalty):
        res = f4f.fit_transport(jax.random.key(4), top, start, left, right, gauss,
                                transport=f4f.TransportConfig(direction="both",
                                                              penalty=penalty),
                                config=cfg)
        moved = f4f.transport(top, res.params, left)
        return float(jnp.mean(jnp.linalg.norm(moved - left, axis=-1)))

    before = float(jnp.mean(jnp.linalg.norm(f4f.transport(top, start, left) - left, axis=-1)))
    free, penalised = cost(None), cost("l2")
    assert before > 0.3
    assert penalised < 0.5 * free


def test_cosine_anneal_and_distances():
    w = [float(f4f.cosine_annealed_weight(t, 100, 1.0, 0.1)) for t in (0, 50, 100, 200)]
    np.testing.assert_allclose(w, [1.0, 0.55, 0.1, 0.1], atol=1e-6)
    a, b = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, 0.0]])
    assert float(f4f.distance(a, b, "l1")[0]) == 3.0
    assert float(f4f.distance(a, b, "l2")[0]) == 5.0
    assert float(f4f.distance(a, b, None)[0]) == 0.0
    np.testing.assert_allclose(f4f.delta_context(jnp.ones((2, 1)), 3 * jnp.ones((2, 1))), 2.0)
    assert f4f.concat_context(jnp.ones((2, 1)), jnp.zeros((2, 1))).shape == (2, 2)


def test_encode_decode_baseline_is_analytic_for_gaussian_flows():
    """With 1D affine flows fitted exactly to N(mu_L, sd_L) and N(mu_R, sd_R), the
    baseline f_R^{-1}(f_L(x)) is the same affine map a x + b."""
    def gaussian_flow(mu, sd):
        flow = Flow(1, [Stack(LULinearLayer(1), 1)])
        p = flow.init(jax.random.key(0))
        # z = d x + bias with d = 1/sd: softplus(raw + offset) + 1e-3 = 1/sd.
        from jaxgen.flows.linear import _DIAG_OFFSET
        from jaxgen.flows.linear import _MIN_DIAG
        raw = jnp.log(jnp.expm1(1.0 / sd - _MIN_DIAG)) - _DIAG_OFFSET
        p["stacks"][0]["params"]["diag"] = jnp.full((1, 1), raw)
        p["stacks"][0]["params"]["bias"] = jnp.full((1, 1), -mu / sd)
        return flow.distribution(p)

    left, right = gaussian_flow(MU_L, SD_L), gaussian_flow(MU_R, SD_R)
    x = jnp.linspace(-1, 3, 5)[:, None]
    y = f4f.encode_decode(left, right, x)
    np.testing.assert_allclose(y[:, 0], (SD_R / SD_L) * (x[:, 0] - MU_L) + MU_R, atol=1e-4)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="direction"):
        f4f.TransportConfig(direction="sideways")
    with pytest.raises(ValueError, match="penalty"):
        f4f.TransportConfig(penalty="l3")
    with pytest.raises(ValueError, match="iteration_epochs"):
        f4f.TransportConfig(direction="iterate", iteration_epochs=0)
    top, params = _affine_top()
    with pytest.raises(ValueError, match=r"shape \(n, 1\)"):
        f4f.fit_transport(jax.random.key(0), top, params, jnp.zeros((10, 2)),
                          jnp.zeros((10, 1)), _gauss(0.0, 1.0))


def test_validation_scores_the_annealed_penalty():
    """L = N(0, I) to R = N((3, 0), diag(1, 0.25)) with the annealed L2 penalty and a
    validation split. Optimal transport between Gaussians with commuting covariances is
    T(x) = m_R + S_R^{1/2} S_L^{-1/2} (x - m_L) = (3 + x_1, x_2 / 2), of cost
    E|T(x) - x|^2 = 3^2 + E[(x_2/2 - x_2)^2] = 9 + 0.25 = 9.25. Validation scored with the
    full lambda_0 restored the first epoch (cost 1.27); with the weight of the current
    step the last epochs win. Tolerances: at n = 16000 pairs the map's sampling
    error is ~ 1/sqrt(n) ~ 0.008 per coordinate, and the cost estimate over 2e4 test
    points has standard error sd|T(x)-x|^2 / sqrt(2e4) ~ 6/141 = 0.04 (0.5 %); the rest
    of the 5 % (cost) and 0.1 (rms distance to T) is the residual of a short anneal, whose
    penalty still pulls the map inwards while it decays."""
    n = 16_000
    left = jax.random.normal(jax.random.key(1), (n, 2))
    scale = jnp.array([1.0, 0.5])
    right = jnp.array([3.0, 0.0]) + scale * jax.random.normal(jax.random.key(2), (n, 2))
    gauss_r = distrax.MultivariateNormalDiag(jnp.array([3.0, 0.0]), scale)
    gauss_l = distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2))
    top, params = coupling_flow(jax.random.key(0), dim=2, num_layers=2, hidden=(32,),
                                base=gauss_r, tail_bound=8.0)
    cfg = FitConfig(epochs=EPOCHS_2D, batch_size=256, learning_rate=LR_2D,
                    val_fraction=0.1, patience=None, progress=False)
    res = f4f.fit_transport(jax.random.key(3), top, params, left, right, gauss_l,
                            transport=f4f.TransportConfig(direction="alternate",
                                                          penalty="l2"), config=cfg)
    assert int(res.history["best_epoch"]) >= EPOCHS_2D // 2
    x = jax.random.normal(jax.random.key(7), (20_000, 2))
    y = f4f.transport(top, res.params, x)
    exact = jnp.stack([3.0 + x[:, 0], 0.5 * x[:, 1]], -1)
    cost = float(jnp.mean(jnp.sum((y - x) ** 2, -1)))
    rms = float(jnp.sqrt(jnp.mean(jnp.sum((y - exact) ** 2, -1))))
    assert abs(cost - 9.25) < 0.05 * 9.25, cost
    assert rms < 0.1, rms


def test_one_dimensional_spline_transport():
    """1-D Flows for Flows with the 1-D spline flow (coupling_flow(dim=1)): L = N(0, 1) to
    R = N(2, 0.5^2). In 1-D the increasing map pushing L onto R is unique, T(x) = 2 + x/2
    (the quantile map), so maximum likelihood alone must find it; its cost is
    E[(T(x) - x)^2] = E[(2 - x/2)^2] = 4 + 1/4 = 4.25. Tolerance: the fitted map is at
    best the quantile map of the n = 8000 samples; at |x| <= 2 (quantiles 2.3 %-97.7 %)
    the sampling sd of a quantile is sqrt(p(1-p)/n) / f = 0.0017 / 0.054 = 0.031 on the
    left (0.016 after the slope 1/2) and 0.0017 / 0.108 = 0.016 on the right: 0.022 in
    all, so 0.1 is 4.5 sd at the edges of [-2, 2] (the bulk is 2-3 times tighter). The
    cost then moves by at most 2 E|T(x) - x| 0.1 ~ 0.4 (10 %); the estimate over 2e4
    points has standard error 0.015. We ask for 5 %."""
    n = 8000
    left = jax.random.normal(jax.random.key(1), (n, 1))
    right = 2.0 + 0.5 * jax.random.normal(jax.random.key(2), (n, 1))
    top, params = coupling_flow(jax.random.key(0), dim=1, num_layers=2, num_bins=8,
                                tail_bound=6.0, base=_gauss(2.0, 0.5))
    cfg = FitConfig(epochs=20, batch_size=200, learning_rate=1e-2, val_fraction=0.1,
                    progress=False)
    res = f4f.fit_transport(jax.random.key(3), top, params, left, right, _gauss(0.0, 1.0),
                            transport=f4f.TransportConfig(direction="alternate"), config=cfg)
    grid = jnp.linspace(-2.0, 2.0, 41)[:, None]
    moved = f4f.transport(top, res.params, grid)
    np.testing.assert_allclose(moved, 2.0 + grid / 2, atol=0.1)
    x = jax.random.normal(jax.random.key(7), (20_000, 1))
    cost = float(jnp.mean((f4f.transport(top, res.params, x) - x) ** 2))
    assert abs(cost - 4.25) < 0.05 * 4.25, cost


@pytest.mark.parametrize("arg", ["left", "right"])
def test_non_finite_data_is_named(arg):
    top, params = _affine_top()
    data = {"left": jnp.zeros((10, 1)), "right": jnp.zeros((10, 1))}
    data[arg] = data[arg].at[3, 0].set(jnp.nan)
    with pytest.raises(ValueError, match=f"`{arg}`"):
        f4f.fit_transport(jax.random.key(0), top, params, data["left"], data["right"],
                          _gauss(0.0, 1.0))
