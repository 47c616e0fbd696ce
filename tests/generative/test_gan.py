"""GAN core: losses and penalties in closed form, the scanned trainer's schedule, and a
1D Gaussian fitted in mean and std."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.generative import gan as G

ZERO = jnp.zeros(8)


@pytest.mark.parametrize(
    "kind, d_value, g_value",
    [
        ("non_saturating", 2 * math.log(2.0), math.log(2.0)),
        ("hinge", 2.0, 0.0),
        ("least_squares", 0.5, 0.5),
        ("wgan_gp", 0.0, 0.0),
    ],
)
def test_losses_at_zero_logits(kind, d_value, g_value):
    """At D = 0 everywhere: softplus(0) = log 2; relu(1) = 1; (0-1)^2/2 = 1/2."""
    np.testing.assert_allclose(G.discriminator_loss(kind, ZERO, ZERO), d_value, rtol=1e-6)
    np.testing.assert_allclose(G.generator_loss(kind, ZERO), g_value, atol=1e-7)


def test_wgan_loss_is_the_mean_difference():
    np.testing.assert_allclose(G.discriminator_loss("wgan_gp", jnp.full(4, 3.0), jnp.ones(4)),
                               -2.0)


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit])
def test_penalties_of_a_linear_critic(transform):
    """D(x) = a.x has gradient a everywhere: GP = (|a| - 1)^2 and R1 = |a|^2 / 2."""
    a = jnp.array([3.0, 4.0])  # |a| = 5

    def disc(p, x):
        return x @ p

    real = jax.random.normal(jax.random.key(0), (16, 2))
    fake = jax.random.normal(jax.random.key(1), (16, 2))
    gp = transform(lambda p: G.gradient_penalty(disc, p, real, fake, jax.random.key(2)))(a)
    np.testing.assert_allclose(gp, 16.0, rtol=1e-5)
    np.testing.assert_allclose(transform(lambda p: G.r1_penalty(disc, p, real))(a), 12.5,
                               rtol=1e-6)


# A GAN on N(1.5, 0.5^2). The generator is affine, G(z) = w z + b with z ~ N(0, 1), so the
# target is inside the model family and the fitted mean and std are exactly b and |w|
# (no sampling error in reading them off). Tolerance: the discriminator only ever
# compares batches of B = 256 points; a generator that matched the moments of a single
# batch exactly would have mean error sigma/sqrt(B) = 0.031 and std error
# sigma/sqrt(2B) = 0.022 (one sd). The generator EMA averages over ~1/(1-0.99) = 100
# steps, which can only shrink that spread, so 3 such sd (0.094 and 0.066) bounds the
# error; the 20000 training points add sigma/sqrt(20000) = 0.0035, negligible.
MU, SIGMA, B = 1.5, 0.5, 256


def test_gan_fits_a_1d_gaussian_with_each_loss():
    """The three losses train together in one vmapped program (``train_gan_ablation``)."""
    data = MU + SIGMA * jax.random.normal(jax.random.key(1), (20_000, 1))
    spec, g0, d0 = G.mlp_gan(jax.random.key(0), dim=1, latent_dim=1, g_hidden=(),
                             d_hidden=(32, 32))
    cfg = G.GANConfig(steps=3000, batch_size=B, g_learning_rate=2e-3, d_learning_rate=2e-3,
                      ema_decay=0.99, schedule="cosine", r1_weight=0.0)
    losses = ("non_saturating", "hinge", "least_squares")
    results = G.train_gan_ablation(jax.random.key(2), spec, g0, d0, data, cfg, losses)
    assert tuple(results) == losses
    for loss, res in results.items():
        layer = res.state.ema_params["params"]["Dense_0"]
        mean, std = float(layer["bias"][0]), abs(float(layer["kernel"][0, 0]))
        assert abs(mean - MU) < 3 * SIGMA / math.sqrt(B), (loss, mean)
        assert abs(std - SIGMA) < 3 * SIGMA / math.sqrt(2 * B), (loss, std)
        assert res.history["g_loss"].shape == (3000,)
    samples = G.sample(spec, results["hinge"].state.ema_params, jax.random.key(3), 10)
    assert samples.shape == (10, 1)


# WGAN-GP on the same target. Its two-sided penalty lambda E(|D'| - 1)^2 has no zero-critic
# equilibrium: in 1D a critic of slope a near +-1 pays lambda (|a| - 1)^2 and gains a * W
# on the data-sample difference, so to flip the sign of its slope (what a generator that
# overshoots needs) it must cross a = 0. Along a linear critic the loss a * d +
# lambda (|a| - 1)^2 keeps its local minimum at a = 1 - d / (2 lambda) while the mean
# error d < 2 lambda, so the generator can stall up to 2 lambda off in mean; with a
# V-shaped critic a |x - mu| the gain per unit slope is the std error times E|z| =
# sqrt(2 / pi), so up to 2 lambda sqrt(pi / 2) off in std. Tolerance: that bias plus
# the 3 sd batch-matching error of the test above. This is why the paper's image
# lambda = 10 fails here (stalls up to 20 away: measured mean 4.2 for mu = 1.5) and
# the WGAN-GP authors use lambda = 0.1 on their 2D toys (gan_toy.py); n_critic = 5 and
# Adam(b1 = 0.5, b2 = 0.9) are the paper's.
GP = 0.1


def test_wgan_gp_fits_a_1d_gaussian():
    data = MU + SIGMA * jax.random.normal(jax.random.key(1), (20_000, 1))
    spec, g0, d0 = G.mlp_gan(jax.random.key(0), dim=1, latent_dim=1, g_hidden=(),
                             d_hidden=(32, 32))
    cfg = G.GANConfig(loss="wgan_gp", steps=3000, batch_size=B, n_critic=5,
                      g_learning_rate=2e-3, d_learning_rate=2e-3, b1=0.5, b2=0.9,
                      gp_weight=GP, ema_decay=0.99, schedule="cosine")
    res = G.train_gan(jax.random.key(2), spec, g0, d0, data, cfg)
    layer = res.state.ema_params["params"]["Dense_0"]
    mean, std = float(layer["bias"][0]), abs(float(layer["kernel"][0, 0]))
    assert abs(mean - MU) < 2 * GP + 3 * SIGMA / math.sqrt(B), mean
    assert abs(std - SIGMA) < 2 * GP * math.sqrt(math.pi / 2) + 3 * SIGMA / math.sqrt(2 * B), std


def test_gradient_penalty_of_a_quadratic_critic():
    """D(x) = x^2 / 2 has |D'(x)| = |x|. With data at +1 and samples at -1 the
    interpolates are 2 eps - 1 for eps ~ U(0, 1), so |D'| ~ U(0, 1) and the penalty is
    E(u - 1)^2 = 1/3. Var (1 - u)^2 = 1/5 - 1/9 = 4/45, so the mean of 2e4 terms has sd
    0.0021; 4 sd = 0.0085. With data = samples = x the penalty is mean (|x| - 1)^2
    exactly, per example (a batch-level norm would differ)."""

    def disc(p, x):
        return p * 0.5 * jnp.sum(x**2, axis=-1)

    n = 20_000
    gp = jax.jit(G.gradient_penalty, static_argnums=0)(disc, 1.0, jnp.ones((n, 1)),
                                                        -jnp.ones((n, 1)), jax.random.key(0))
    np.testing.assert_allclose(gp, 1.0 / 3.0, atol=0.0085)
    x = jax.random.normal(jax.random.key(1), (64, 3))
    expected = jnp.mean((jnp.linalg.norm(x, axis=-1) - 1.0) ** 2)
    np.testing.assert_allclose(G.gradient_penalty(disc, 1.0, x, x, jax.random.key(2)),
                               expected, rtol=1e-5)


def test_wgan_gp_critic_gets_no_r1():
    """R1 on top of the gradient penalty is skipped inside an ablation (a lone WGAN-GP
    trainer skips it statically)."""
    spec, g0, d0, cfg = _tiny(loss="wgan_gp", r1_weight=0.0)
    data = jax.random.normal(jax.random.key(1), (64, 2))
    plain = G.train_gan(jax.random.key(2), spec, g0, d0, data, cfg)
    ablation = G.train_gan_ablation(jax.random.key(2), spec, g0, d0, data,
                                    dataclasses.replace(cfg, r1_weight=5.0),
                                    ("hinge", "wgan_gp"))
    np.testing.assert_allclose(ablation["wgan_gp"].history["d_loss"], plain.history["d_loss"],
                               rtol=1e-4, atol=1e-5)


def test_ablation_member_equals_a_single_run():
    """A member of the lax.switch ablation is the same GAN as a plain run of that loss.
    Also: equal architectures share one spec and hence one compiled trainer."""
    spec, g0, d0, cfg = _tiny(loss="hinge")
    data = jax.random.normal(jax.random.key(1), (64, 2))
    single = G.train_gan(jax.random.key(2), spec, g0, d0, data, cfg)
    spec2 = G.mlp_gan(jax.random.key(5), dim=2, latent_dim=2, g_hidden=(8,), d_hidden=(8,))[0]
    assert spec2 is spec
    hits = G.compiled_trainer.cache_info().hits
    G.train_gan(jax.random.key(3), spec2, g0, d0, data, cfg)
    assert G.compiled_trainer.cache_info().hits == hits + 1
    ablation = G.train_gan_ablation(jax.random.key(2), spec, g0, d0, data, cfg,
                                    ("least_squares", "hinge"))
    np.testing.assert_allclose(ablation["hinge"].history["d_loss"], single.history["d_loss"],
                               rtol=1e-4, atol=1e-5)


def _tiny(**kw):
    spec, g0, d0 = G.mlp_gan(jax.random.key(0), dim=2, latent_dim=2, g_hidden=(8,),
                             d_hidden=(8,))
    cfg = G.GANConfig(**{"steps": 6, "batch_size": 16, **kw})
    return spec, g0, d0, cfg


def test_vmapped_trainer_equals_separate_runs():
    spec, g0, d0, cfg = _tiny(loss="hinge")
    data = jax.random.normal(jax.random.key(1), (64, 2))
    keys = jax.random.split(jax.random.key(2), 2)
    state = G.init_state(cfg, g0, d0)
    single = G.compiled_trainer(spec, cfg)
    batched = G.compiled_trainer(spec, cfg, vmapped=True)
    stack = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), state)
    out_b, hist_b = batched(stack, jnp.stack([data, data]), jnp.array([64, 64]), keys)
    for i in range(2):
        out_i, hist_i = single(state, data, jnp.int32(64), keys[i])
        np.testing.assert_allclose(hist_b["d_loss"][i], hist_i["d_loss"], rtol=1e-4, atol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(out_b.ema_params),
                        jax.tree_util.tree_leaves(out_i.ema_params), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)


def test_schedule_critic_steps_and_auxiliary_updates():
    """n_critic discriminator updates per step; the auxiliary loss runs on every
    aux_every-th step only (the others record 0)."""
    spec, g0, d0, cfg = _tiny(n_critic=3, aux_every=2, loss="wgan_gp")
    spec = spec._replace(aux_loss=lambda p, k: 1.0 + 0.0 * jnp.sum(p["params"]["Dense_0"]["bias"]))
    res = G.train_gan(jax.random.key(0), spec, g0, d0,
                      jax.random.normal(jax.random.key(1), (64, 2)), cfg)
    assert int(res.state.d_opt_state[0].count) == 3 * cfg.steps
    assert int(res.state.g_opt_state[0].count) == cfg.steps + cfg.steps // 2
    np.testing.assert_array_equal(res.history["aux_loss"], [1.0, 0, 1.0, 0, 1.0, 0])
    assert int(res.state.step) == cfg.steps


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(loss="wasserstein"), "loss"),
        (dict(n_critic=0), "n_critic"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(schedule="linear"), "schedule"),
        (dict(g_learning_rate=-1.0), "g_learning_rate"),
        (dict(r1_weight=-1.0), "r1_weight"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        G.GANConfig(**kwargs)


@pytest.mark.parametrize(
    "data, match",
    [(jnp.ones((10,)), "data"), (jnp.ones((10, 2)).at[0, 0].set(jnp.nan), "NaN")],
)
def test_train_gan_errors(data, match):
    spec, g0, d0, cfg = _tiny()
    with pytest.raises(ValueError, match=match):
        G.train_gan(jax.random.key(0), spec, g0, d0, data, cfg)


def test_loss_name_errors():
    with pytest.raises(ValueError, match="kind"):
        G.generator_loss("bce", ZERO)
