"""GAN core: losses and penalties in closed form, the scanned trainer's schedule, and a
1D Gaussian fitted in mean and std."""

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
                      ema_decay=0.99, schedule="cosine")
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
