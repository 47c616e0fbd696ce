"""Throughput of the generative building blocks: contrastive encoders and GAN training.

Measures, on whatever device JAX picks (CPU, or a GPU where one is available):

- SimCLR encoder training steps/s: one jitted step (two augmented views, NT-Xent,
  Adam) on 2D points (batch 256, encoder 64-32 / 32-32) and on 8x8 images (batch 256,
  encoder 256-128 / 128-64, shift + noise + cutout views);
- GAN training steps/s of the ``lax.scan`` trainer (``make_trainer``): an MLP GAN on
  the ring of 8 Gaussians (batch 256, 64-64 networks, non-saturating loss, R1); the same
  GAN vmapped over K = 8 clusters (as ``fit_clustered_generator`` trains them); and the
  InfoSCC-GAN generator step on 8x8 images (batch 64; classification update every 2nd
  step through the frozen encoder, DiffAugment, R1 every 16 steps).

Compile time (first call) is reported separately; every rate is the median of
``--repeats`` timed calls after warm-up, with ``block_until_ready``. Each GAN timing runs
``STEPS`` generator steps in one scanned call.

Usage::

    python benchmarks/generative.py [--repeats=5] > generative.json

Prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.data import toys
from jaxgen.generative import ContrastiveEncoder
from jaxgen.generative import ContrastiveModel
from jaxgen.generative import GANConfig
from jaxgen.generative import LinearProbe
from jaxgen.generative import image_augment
from jaxgen.generative import init_state
from jaxgen.generative import make_trainer
from jaxgen.generative import mlp_gan
from jaxgen.generative import simclr_loss
from jaxgen.generative import vector_augment
from jaxgen.methods import infoscc

STEPS = 200
ENCODER_STEPS = 50


def _timed(fn, repeats):
    """(first-call seconds, median seconds of later calls)."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return first, float(np.median(times))


def bench_encoder(kind: str, repeats: int) -> dict:
    key = jax.random.key(0)
    if kind == "points":
        x = toys.disjoint_squares(key, 256)
        module, augment = ContrastiveEncoder((64, 32), (32, 32)), vector_augment(0.1)
    else:
        x = jax.random.uniform(key, (256, 8, 8), minval=-1.0, maxval=1.0)
        module = ContrastiveEncoder((256, 128), (128, 64))
        augment = image_augment(max_shift=1, noise=0.2, cutout_size=3)
    params = module.init(key, x[:2])
    opt = optax.adam(3e-4)
    loss_fn = simclr_loss(module, augment, 0.5)

    @jax.jit
    def steps(p, s, k):
        def body(carry, kk):
            p, s = carry
            loss, g = jax.value_and_grad(lambda q: jnp.mean(loss_fn(q, x, kk)))(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        return jax.lax.scan(body, (p, s), jax.random.split(k, ENCODER_STEPS))

    state = opt.init(params)
    compile_s, run_s = _timed(lambda: steps(params, state, key), repeats)
    final = steps(params, state, key)[1][-1]
    return {"compile_s": compile_s - run_s, "steps_per_s": ENCODER_STEPS / run_s,
            "final_loss": float(final)}


def _bench_trainer(train, args, repeats) -> dict:
    compile_s, run_s = _timed(lambda: train(*args), repeats)
    return {"compile_s": compile_s - run_s, "steps_per_s": STEPS / run_s}


def bench_gan_ring(repeats: int, members: int = 1) -> dict:
    data = toys.ring_of_gaussians(jax.random.key(0), 20_000)
    cfg = GANConfig(steps=STEPS, batch_size=256, g_learning_rate=1e-3, d_learning_rate=1e-3,
                    r1_weight=0.1, schedule="cosine")
    spec, g0, d0 = mlp_gan(jax.random.key(1), dim=2)
    state = init_state(cfg, g0, d0)
    train = make_trainer(spec, cfg)
    n = jnp.int32(data.shape[0])
    if members == 1:
        out = _bench_trainer(jax.jit(train), (state, data, n, jax.random.key(2)), repeats)
    else:
        stack = jax.tree_util.tree_map(lambda a: jnp.stack([a] * members), state)
        args = (stack, jnp.stack([data] * members), jnp.full((members,), n),
                jax.random.split(jax.random.key(2), members))
        out = _bench_trainer(jax.jit(jax.vmap(train)), args, repeats)
        out["member_steps_per_s"] = out["steps_per_s"] * members
    return out


def bench_infoscc(repeats: int) -> dict:
    cfg = dataclasses.replace(infoscc.InfoSCCConfig(), gan=GANConfig(
        loss="least_squares", steps=STEPS, batch_size=64, g_learning_rate=1e-3,
        d_learning_rate=1e-3, r1_weight=10.0, r1_every=16, aux_every=2, schedule="cosine"))
    module = ContrastiveEncoder(cfg.encoder_features, cfg.encoder_projection)
    encoder = ContrastiveModel(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8))),
                               None)
    probe = LinearProbe(nn.Dense(10).init(jax.random.key(1), jnp.zeros((1, 128))), 10, None)
    _, spec, g0, d0 = infoscc.build_gan(jax.random.key(2), encoder, probe,
                                        jnp.full(10, 0.1), (8, 8), cfg)
    images = jax.random.uniform(jax.random.key(3), (1797, 8, 8), minval=-1.0, maxval=1.0)
    train = jax.jit(make_trainer(spec, cfg.gan))
    args = (init_state(cfg.gan, g0, d0), images, jnp.int32(1797), jax.random.key(4))
    return _bench_trainer(train, args, repeats)


def main(argv) -> int:
    repeats = 5
    for arg in argv:
        if arg.startswith("--repeats="):
            repeats = int(arg.split("=", 1)[1])
        else:
            raise SystemExit(f"unknown argument {arg!r}; use --repeats=N")
    dev = jax.devices()[0]
    out = {
        "benchmark": "generative",
        "device": f"{dev.platform}:{dev.device_kind}",
        "jax": jax.__version__,
        "python": platform.python_version(),
        "repeats": repeats,
        "gan_steps_per_call": STEPS,
        "encoder_points": bench_encoder("points", repeats),
        "encoder_images": bench_encoder("images", repeats),
        "gan_ring": bench_gan_ring(repeats),
        "gan_ring_vmap8": bench_gan_ring(repeats, members=8),
        "infoscc_gan": bench_infoscc(repeats),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
