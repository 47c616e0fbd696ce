"""NT-Xent against hand-computed values and an independent loop reference; encoder
training and the linear probe."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.generative import ContrastiveEncoder
from jaxgen.generative import embed
from jaxgen.generative import nt_xent_loss
from jaxgen.generative import probe_accuracy
from jaxgen.generative import train_encoder
from jaxgen.generative import train_linear_probe
from jaxgen.generative import vector_augment
from jaxgen.train import FitConfig

TRANSFORMS = [lambda f: f, jax.jit]


def _reference(z1, z2, tau):
    """Direct transcription of l_i = -log(exp(s_ij/t) / sum_{k != i} exp(s_ik/t)), mean
    over the 2N views, with explicit Python loops (float64)."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        den = sum(math.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(z[i] @ z[j] / tau) / den)
    return total / n2


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_nt_xent_hand_computed(transform):
    """Views (1,0), (0,1) and their identical partners, tau = 1/2. For every view the
    positive has similarity 1 (logit 2) and the two negatives similarity 0 (logit 0):
    l = -2 + log(e^2 + 2) = 0.2395448, the same for all four views."""
    z1 = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    loss = transform(lambda a, b: nt_xent_loss(a, b, 0.5))(z1, z1)
    expected = math.log(math.e**2 + 2.0) - 2.0
    np.testing.assert_allclose(loss, [expected, expected], rtol=1e-6)
    assert abs(expected - 0.2395448) < 1e-7


def test_nt_xent_unnormalised_asymmetric_batch():
    """z1 = [(2,0), (1,1)], z2 = [(0,3), (1,0)], tau = 1. Unit vectors a=(1,0),
    b=(1,1)/sqrt2, c=(0,1), d=(1,0); s = 1/sqrt2 = 0.7071.
    l_a = -(a.c) + log(e^{a.b} + e^{a.c} + e^{a.d}) = -0 + log(e^s + 1 + e)
    l_b = -(b.d) + log(e^{s} + e^{s} + e^{s}) = -s + log(3 e^s) = log 3
    l_c = -(c.a) + log(e^0 + e^s + e^0) = log(2 + e^s)
    l_d = -(d.b) + log(e^1 + e^s + e^0) = -s + log(e + e^s + 1)."""
    s = 1.0 / math.sqrt(2.0)
    la = math.log(math.exp(s) + 1.0 + math.e)
    lb = math.log(3.0)
    lc = math.log(2.0 + math.exp(s))
    ld = -s + math.log(math.e + math.exp(s) + 1.0)
    z1 = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    z2 = jnp.array([[0.0, 3.0], [1.0, 0.0]])
    loss = nt_xent_loss(z1, z2, 1.0)
    np.testing.assert_allclose(loss, [(la + lc) / 2, (lb + ld) / 2], rtol=1e-5)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_nt_xent_matches_loop_reference(tau):
    k1, k2 = jax.random.split(jax.random.key(0))
    z1 = jax.random.normal(k1, (7, 5))
    z2 = jax.random.normal(k2, (7, 5))
    np.testing.assert_allclose(jnp.mean(nt_xent_loss(z1, z2, tau)),
                               _reference(np.asarray(z1), np.asarray(z2), tau), rtol=2e-5)


def test_nt_xent_stable_at_small_temperature():
    """tau = 1e-3 gives logits up to 1000: a naive exp overflows float32, the
    logsumexp form stays finite and equals the loop reference computed in float64."""
    z1 = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    z2 = jnp.array([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    loss = nt_xent_loss(z1, z2, 1e-3)
    assert bool(jnp.all(jnp.isfinite(loss)))
    grads = jax.grad(lambda a: jnp.mean(nt_xent_loss(a, z2, 1e-3)))(z1)
    assert bool(jnp.all(jnp.isfinite(grads)))


def test_nt_xent_vmap_equals_loop():
    z = jax.random.normal(jax.random.key(1), (3, 2, 6, 4))
    batched = jax.vmap(lambda a, b: nt_xent_loss(a, b, 0.5))(z[:, 0], z[:, 1])
    one = jax.jit(lambda a, b: nt_xent_loss(a, b, 0.5))
    looped = jnp.stack([one(z[i, 0], z[i, 1]) for i in range(3)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6)


@pytest.mark.parametrize(
    "args, match",
    [
        ((jnp.ones((4, 3)), jnp.ones((4, 2)), 0.5), "same shape"),
        ((jnp.ones((1, 3)), jnp.ones((1, 3)), 0.5), "at least 2"),
        ((jnp.ones((4, 3)), jnp.ones((4, 3)), 0.0), "temperature"),
        ((jnp.ones((4,)), jnp.ones((4,)), 0.5), "z1"),
        ((jnp.ones((4, 3)).at[1, 2].set(jnp.nan), jnp.ones((4, 3)), 0.5), "`z1` contains NaN"),
        ((jnp.ones((4, 3)), jnp.ones((4, 3)).at[0, 0].set(jnp.inf), 0.5), "`z2` contains NaN"),
    ],
)
def test_nt_xent_errors(args, match):
    with pytest.raises(ValueError, match=match):
        nt_xent_loss(*args)


PROBE_FIT = FitConfig(epochs=100, batch_size=200, learning_rate=0.1, val_fraction=0.0,
                      patience=None, progress=False)


def _blobs(n=1000):
    k1, k2 = jax.random.split(jax.random.key(0))
    y = jax.random.bernoulli(k1, 0.5, (n,)).astype(jnp.int32)
    return jax.random.normal(k2, (n, 2)) + 6.0 * y[:, None] * jnp.array([1.0, 0.0]), y


def test_linear_probe_reaches_bayes_accuracy():
    """Two unit Gaussian blobs 6 apart: the Bayes error is Phi(-3) = 0.135 %. On 1000
    points the Bayes classifier's error count is Binomial(1000, 0.00135): mean 1.35,
    sd 1.16, so accuracy >= 0.993 (at most 7 errors) is 4.9 sd of slack."""
    x, y = _blobs()
    probe = train_linear_probe(jax.random.key(4), x, y, 2, config=PROBE_FIT)
    assert probe_accuracy(probe, x, y) >= 0.993


def test_encoder_learns_and_keeps_the_class_information():
    """SimCLR training lowers the NT-Xent loss, and the frozen features keep the blob
    identity: a linear probe on them is far above chance (0.5). The features are only
    trained for 3 epochs, so the bound is loose (0.9) rather than the Bayes accuracy."""
    x, y = _blobs()
    cfg = FitConfig(epochs=3, batch_size=200, learning_rate=3e-3, val_fraction=0.0,
                    patience=None, progress=False)
    model = train_encoder(jax.random.key(3), x, augment=vector_augment(0.2),
                          module=ContrastiveEncoder((32, 16), (16, 8)), config=cfg)
    hist = model.result.history["train_loss"]
    assert hist[-1] < hist[0]
    feats = embed(model, x)
    assert feats.shape == (1000, 16)
    assert embed(model, x, projection=True).shape == (1000, 8)
    probe = train_linear_probe(jax.random.key(4), feats, y, 2, config=PROBE_FIT)
    assert probe_accuracy(probe, feats, y) >= 0.9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=jnp.zeros(5, jnp.int32)), "labels"),
        (dict(labels=jnp.full(10, 3)), r"\[0, 2\)"),
        (dict(labels=jnp.zeros(10)), "integers"),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_probe_errors(kwargs, match):
    args = dict(features=jnp.ones((10, 3)), labels=jnp.zeros(10, jnp.int32), num_classes=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_linear_probe(jax.random.key(0), **args)


def test_train_encoder_rejects_nan():
    x = jnp.ones((10, 2)).at[3, 1].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN"):
        train_encoder(jax.random.key(0), x, augment=vector_augment(0.1))
