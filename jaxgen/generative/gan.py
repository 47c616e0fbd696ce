r"""GAN core: adversarial losses, gradient penalties and a ``lax.scan`` training loop.

Goodfellow et al., "Generative Adversarial Networks", arXiv:1406.2661 (non-saturating
loss); Lim and Ye, arXiv:1705.02894 (hinge); Mao et al., arXiv:1611.04076 (least
squares); Gulrajani et al., arXiv:1704.00028 (WGAN-GP); Mescheder et al.,
arXiv:1801.04406 (R1); Zhao et al., arXiv:2006.10738 (DiffAugment). The schedule (an
auxiliary generator update every few steps, R1, generator EMA) follows InfoSCC-GAN,
arXiv:2112.09653.

With discriminator logits ``r = D(x)`` on data and ``f = D(G(z))`` on samples:

==================  ==========================================  =======================
loss                discriminator                                generator
==================  ==========================================  =======================
``non_saturating``  ``softplus(-r) + softplus(f)``               ``softplus(-f)``
``hinge``           ``relu(1 - r) + relu(1 + f)``                ``-f``
``least_squares``   ``((r - 1)^2 + f^2) / 2``                    ``(f - 1)^2 / 2``
``wgan_gp``         ``f - r + g (|grad D(x_hat)| - 1)^2``        ``-f``
==================  ==========================================  =======================

where ``x_hat`` interpolates data and samples uniformly at random. The R1 penalty
``(gamma / 2) E|grad_x D(x)|^2`` on data can be added to any of the first three (a
WGAN-GP critic never gets it: R1 pulls the slope on the data to 0, the gradient penalty
holds it at 1).

The two-sided gradient penalty has no zero-critic equilibrium: where data and samples
agree, the critic that minimises it still has slope 1. To reverse its slope (as it must
when the generator overshoots) the critic has to cross slope 0, which costs about
``g``; in one dimension, where the slope cannot rotate, the generator can stall up to
``2 g`` away in mean. With ``g = 10`` (the paper's value for images) a 1D Gaussian fit
ran away (mean 4.2 for a target of 1.5); ``g = 0.1``, the WGAN-GP authors' own value for
their 2D toys, fits it and, with the paper's 5 critic steps and Adam beta2 0.9, covers
the ring and grid toys (``experiments/gan_toys.py``).

A GAN is described by a ``GANSpec`` of pure functions; ``make_trainer`` turns it into one
function ``(state, data, n_valid, key) -> (state, history)`` that runs all steps in a
``lax.scan``. Each scanned step makes an optional auxiliary generator update, then
``n_critic`` discriminator updates (an inner ``lax.scan``), then one generator update,
then the EMA update. The function is pure, so it can be jitted or vmapped over several
GANs (one per cluster in ``jaxgen.generative.clustered``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgen._checks import check_array
from jaxgen._checks import check_in
from jaxgen._checks import check_positive
from jaxgen.nn import MLP

Params = Any
LOSSES = ("non_saturating", "hinge", "least_squares", "wgan_gp")
SCHEDULES = ("constant", "cosine")


def discriminator_loss(kind: str, real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Mean discriminator loss of kind ``kind`` (see the module table), without penalties.

    Args:
      kind: one of ``LOSSES``.
      real_logits: ``(n,)`` discriminator outputs on data.
      fake_logits: ``(m,)`` discriminator outputs on generated samples.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.generative import discriminator_loss
      >>> round(float(discriminator_loss("hinge", jnp.array([2.0]), jnp.array([-2.0]))), 3)
      0.0
    """
    check_in("kind", kind, LOSSES)
    if kind == "non_saturating":
        return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    if kind == "least_squares":
        return 0.5 * (jnp.mean((real_logits - 1.0) ** 2) + jnp.mean(fake_logits**2))
    return jnp.mean(fake_logits) - jnp.mean(real_logits)


def generator_loss(kind: str, fake_logits: jax.Array) -> jax.Array:
    """Mean generator loss of kind ``kind`` on discriminator outputs ``(m,)`` for samples.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.generative import generator_loss
      >>> round(float(generator_loss("non_saturating", jnp.zeros(3))), 4)   # log 2
      0.6931
    """
    check_in("kind", kind, LOSSES)
    if kind == "non_saturating":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if kind == "least_squares":
        return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)
    return -jnp.mean(fake_logits)


def _input_grad_norm2(discriminate, d_params, x):
    grad = jax.grad(lambda xx: jnp.sum(discriminate(d_params, xx)))(x)
    return jnp.sum(grad.reshape(grad.shape[0], -1) ** 2, axis=-1)


def gradient_penalty(
    discriminate: Callable, d_params: Params, real: jax.Array, fake: jax.Array, key: jax.Array
) -> jax.Array:
    """WGAN-GP penalty ``E (|grad D(x_hat)| - 1)^2`` at random interpolates ``x_hat``.

    Args:
      discriminate: ``(d_params, x (n, ...)) -> (n,)``.
      d_params: discriminator parameters.
      real: ``(n, ...)`` data.
      fake: ``(n, ...)`` samples.
      key: PRNG key for the interpolation weights.

    Returns:
      A scalar (without the weight).
    """
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
    x_hat = eps * real + (1.0 - eps) * fake
    norm = jnp.sqrt(_input_grad_norm2(discriminate, d_params, x_hat) + 1e-12)
    return jnp.mean((norm - 1.0) ** 2)


def r1_penalty(discriminate: Callable, d_params: Params, real: jax.Array) -> jax.Array:
    """R1 penalty ``E |grad_x D(x)|^2 / 2`` on data ``(n, ...)`` (without ``gamma``).

    Example:
      For a linear discriminator ``D(x) = w . x`` the gradient is ``w`` at every point, and the
      penalty (``|grad D|^2 / 2``, averaged over the events) ``|w|^2 / 2``:

      >>> import jax.numpy as jnp
      >>> from jaxgen.generative import r1_penalty
      >>> float(r1_penalty(lambda w, x: x @ w, jnp.array([3.0, 4.0]), jnp.ones((6, 2))))
      12.5
    """
    return 0.5 * jnp.mean(_input_grad_norm2(discriminate, d_params, real))


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """How ``make_trainer`` trains a GAN.

    Attributes:
      loss: one of ``LOSSES``.
      steps: generator steps.
      batch_size: data and sample batch size.
      n_critic: discriminator steps per generator step (5 is usual for ``wgan_gp``).
      g_learning_rate: Adam learning rate of the generator.
      d_learning_rate: Adam learning rate of the discriminator.
      b1: Adam beta1 (0.5 in InfoSCC-GAN).
      b2: Adam beta2 (0.99 in InfoSCC-GAN).
      gp_weight: WGAN-GP weight ``lambda`` (used by ``wgan_gp`` only; 10 in the paper's
        image experiments, 0.1 in its 2D toys, ``gan_toy.py``).
      r1_weight: R1 weight ``gamma`` (0 disables it; never applied to ``wgan_gp``).
      r1_every: apply R1 on every ``r1_every``-th step only, scaled by ``r1_every``
        (lazy regularisation; InfoSCC-GAN uses 16).
      aux_every: make the auxiliary generator update every ``aux_every``-th step.
      ema_decay: decay of the generator's exponential moving average (0 keeps the last
        parameters).
      schedule: ``"constant"`` learning rates, or ``"cosine"`` decay to 0 over ``steps``
        (damps the late oscillations of the two-player game).

    The defaults are the setting measured stable on the 2D toys for all four losses
    (``experiments/gan_toys.py``: ring of 8 and grid of 25 Gaussians, 3x128 MLPs, several
    seeds): learning rates 1e-3 with cosine decay, generator EMA 0.99, R1 1.0. With the
    earlier defaults (1e-4, constant, EMA 0.999) the toys collapsed: in a few thousand
    steps an EMA of 0.999 averages generators from far apart in the game and puts its
    samples between the modes, and without decay the last iterates oscillate around the
    modes instead of settling on them. R1 1.0 rather than 0.1 took the grid from 11-22
    to 16-25 covered modes per seed (least squares: from 11-15 to 18-23, and 7-8 without
    R1).
    """

    loss: str = "non_saturating"
    steps: int = 2000
    batch_size: int = 256
    n_critic: int = 1
    g_learning_rate: float = 1e-3
    d_learning_rate: float = 1e-3
    b1: float = 0.5
    b2: float = 0.99
    gp_weight: float = 10.0
    r1_weight: float = 1.0
    r1_every: int = 1
    aux_every: int = 2
    ema_decay: float = 0.99
    schedule: str = "cosine"

    def __post_init__(self):
        check_in("loss", self.loss, LOSSES)
        check_in("schedule", self.schedule, SCHEDULES)
        for name in ("steps", "batch_size", "n_critic", "r1_every", "aux_every"):
            check_positive(name, getattr(self, name))
        check_positive("g_learning_rate", self.g_learning_rate)
        check_positive("d_learning_rate", self.d_learning_rate)
        check_positive("gp_weight", self.gp_weight, allow_zero=True)
        check_positive("r1_weight", self.r1_weight, allow_zero=True)
        for name in ("b1", "b2", "ema_decay"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1); got {getattr(self, name)!r}.")


class GANSpec(NamedTuple):
    """A GAN as pure functions.

    Attributes:
      generate: ``(g_params, latent) -> x (n, ...)``.
      discriminate: ``(d_params, x (n, ...)) -> logits (n,)``.
      sample_latent: ``(key, n) -> latent`` (any pytree with leading axis ``n``).
      g_regulariser: optional ``g_params -> scalar`` added to the generator loss (already
        weighted), e.g. EigenGAN's orthogonality penalty.
      aux_loss: optional ``(g_params, key) -> scalar`` minimised by a separate generator
        update every ``GANConfig.aux_every`` steps (InfoSCC-GAN's classification loss).
      augment: optional differentiable ``(key, x) -> x`` applied to the discriminator's
        inputs, data and samples alike (DiffAugment).
    """

    generate: Callable
    discriminate: Callable
    sample_latent: Callable
    g_regulariser: Callable | None = None
    aux_loss: Callable | None = None
    augment: Callable | None = None


class GANState(NamedTuple):
    """Everything a GAN training step carries."""

    g_params: Params
    d_params: Params
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    ema_params: Params
    step: jax.Array


def _optimizers(config: GANConfig):
    def lr(peak, decay_steps):
        if config.schedule == "cosine":
            return optax.cosine_decay_schedule(peak, decay_steps)
        return peak

    # The discriminator takes n_critic steps per generator step; the auxiliary update
    # shares the generator's optimizer and so advances its schedule too.
    aux = 0 if config.aux_every <= 0 else config.steps // config.aux_every + 1
    g = optax.adam(lr(config.g_learning_rate, config.steps + aux), b1=config.b1, b2=config.b2)
    d = optax.adam(lr(config.d_learning_rate, config.steps * config.n_critic), b1=config.b1,
                   b2=config.b2)
    return g, d


def init_state(config: GANConfig, g_params: Params, d_params: Params) -> GANState:
    """The initial ``GANState``: fresh Adam states, EMA equal to the generator."""
    g_opt, d_opt = _optimizers(config)
    return _init_state(g_opt, d_opt, g_params, d_params)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_state(g_opt, d_opt, g_params, d_params):
    return GANState(g_params, d_params, g_opt.init(g_params), d_opt.init(d_params), g_params,
                    jnp.zeros((), jnp.int32))


def make_trainer(
    spec: GANSpec, config: GANConfig, losses: tuple[str, ...] | None = None
) -> Callable:
    """Builds the pure training function of a GAN.

    Args:
      spec: the ``GANSpec``.
      config: the ``GANConfig``.
      losses: optional tuple of loss names selected at run time by ``loss_id`` (a
        ``lax.switch``), so one compiled program can be vmapped over a loss ablation;
        ``None`` uses ``config.loss``.

    Returns:
      ``train(state, data, n_valid, key, loss_id=0) -> (state, history)``: runs
      ``config.steps`` generator steps in a ``lax.scan``. ``data`` is ``(n, ...)``;
      batches are drawn uniformly with replacement from its first ``n_valid`` rows (so
      padded per-cluster data can be vmapped). ``history`` holds ``d_loss``, ``g_loss``
      and ``aux_loss`` per step, each ``(steps,)``. Jit it, or vmap it over stacked
      states, data, keys or loss ids.

    Example:
      >>> import dataclasses, jax, jax.numpy as jnp
      >>> from jaxgen.generative import GANConfig, init_state, make_trainer, mlp_gan
      >>> spec, g, d = mlp_gan(jax.random.key(0), dim=2, g_hidden=(8,), d_hidden=(8,))
      >>> config = dataclasses.replace(GANConfig(), steps=3, batch_size=16)
      >>> train = jax.jit(make_trainer(spec, config))
      >>> data = jax.random.normal(jax.random.key(1), (64, 2))
      >>> state, history = train(init_state(config, g, d), data, 64, jax.random.key(2))
      >>> history["g_loss"].shape                     # one entry per generator step
      (3,)
    """
    g_opt, d_opt = _optimizers(config)
    bs = config.batch_size
    names = (config.loss,) if losses is None else tuple(losses)
    for name in names:
        check_in("losses", name, LOSSES)
    is_wgan = jnp.asarray([n == "wgan_gp" for n in names])

    def d_adv(loss_id, real_logits, fake_logits):
        if len(names) == 1:
            return discriminator_loss(names[0], real_logits, fake_logits)
        branches = [functools.partial(discriminator_loss, n) for n in names]
        return jax.lax.switch(loss_id, branches, real_logits, fake_logits)

    def g_adv(loss_id, fake_logits):
        if len(names) == 1:
            return generator_loss(names[0], fake_logits)
        branches = [functools.partial(generator_loss, n) for n in names]
        return jax.lax.switch(loss_id, branches, fake_logits)

    def aug(key, x):
        return x if spec.augment is None else spec.augment(key, x)

    def d_objective(d_params, g_params, real, key, step, loss_id):
        k_lat, k_ar, k_af, k_gp = jax.random.split(key, 4)
        fake = spec.generate(g_params, spec.sample_latent(k_lat, bs))
        fake = jax.lax.stop_gradient(fake)
        real_logits = spec.discriminate(d_params, aug(k_ar, real))
        fake_logits = spec.discriminate(d_params, aug(k_af, fake))
        loss = d_adv(loss_id, real_logits, fake_logits)
        if "wgan_gp" in names and config.gp_weight > 0:
            gp = gradient_penalty(spec.discriminate, d_params, real, fake, k_gp)
            loss = loss + jnp.where(is_wgan[loss_id], config.gp_weight * gp, 0.0)
        if config.r1_weight > 0 and names != ("wgan_gp",):
            # A cond, not a mask: the double backward pass runs on due steps only. A
            # WGAN-GP critic gets no R1: R1 pulls its slope on the data to 0 while the
            # gradient penalty holds it at 1 on the segments through the data, and the
            # two fight.
            due = (step % config.r1_every == 0) & ~is_wgan[loss_id]
            r1 = jax.lax.cond(due,
                              lambda: r1_penalty(spec.discriminate, d_params, real),
                              lambda: jnp.zeros((), loss.dtype))
            loss = loss + config.r1_weight * config.r1_every * r1
        return loss

    def g_objective(g_params, d_params, key, loss_id):
        k_lat, k_aug = jax.random.split(key)
        fake = spec.generate(g_params, spec.sample_latent(k_lat, bs))
        loss = g_adv(loss_id, spec.discriminate(d_params, aug(k_aug, fake)))
        if spec.g_regulariser is not None:
            loss = loss + spec.g_regulariser(g_params)
        return loss

    def train(state: GANState, data: jax.Array, n_valid: jax.Array, key: jax.Array,
              loss_id: jax.Array | int = 0):
        def step(st: GANState, k):
            k_aux, k_d, k_g = jax.random.split(k, 3)
            g_params, g_state = st.g_params, st.g_opt_state
            aux = jnp.zeros(())
            if spec.aux_loss is not None:

                def do_aux(args):
                    gp, gs = args
                    val, grads = jax.value_and_grad(spec.aux_loss)(gp, k_aux)
                    upd, gs = g_opt.update(grads, gs, gp)
                    return optax.apply_updates(gp, upd), gs, val

                def skip(args):
                    return args[0], args[1], jnp.zeros(())

                g_params, g_state, aux = jax.lax.cond(
                    st.step % config.aux_every == 0, do_aux, skip, (g_params, g_state))

            def critic(carry, kk):
                dp, ds = carry
                k_idx, k_loss = jax.random.split(kk)
                real = data[jax.random.randint(k_idx, (bs,), 0, n_valid)]
                val, grads = jax.value_and_grad(d_objective)(dp, g_params, real, k_loss,
                                                             st.step, loss_id)
                upd, ds = d_opt.update(grads, ds, dp)
                return (optax.apply_updates(dp, upd), ds), val

            (d_params, d_state), d_losses = jax.lax.scan(
                critic, (st.d_params, st.d_opt_state), jax.random.split(k_d, config.n_critic))
            g_val, grads = jax.value_and_grad(g_objective)(g_params, d_params, k_g, loss_id)
            upd, g_state = g_opt.update(grads, g_state, g_params)
            g_params = optax.apply_updates(g_params, upd)
            decay = config.ema_decay
            ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p,
                                         st.ema_params, g_params)
            new = GANState(g_params, d_params, g_state, d_state, ema, st.step + 1)
            return new, {"d_loss": d_losses[-1], "g_loss": g_val, "aux_loss": aux}

        return jax.lax.scan(step, state, jax.random.split(key, config.steps))

    return train


@functools.lru_cache(maxsize=32)
def compiled_trainer(spec: GANSpec, config: GANConfig, vmapped: bool = False,
                     losses: tuple[str, ...] | None = None) -> Callable:
    """The jitted ``make_trainer``, cached per (spec, config, vmapped, losses).

    Repeated fits with equal specs and configs (``mlp_gan`` caches its spec per
    architecture) reuse one compiled program instead of retracing. ``vmapped=True``
    maps over stacked states, data, ``n_valid`` and keys (one GAN per cluster);
    ``losses`` maps over states and loss ids with shared data and key (an ablation).
    """
    train = make_trainer(spec, config, losses)
    if losses is not None:
        return jax.jit(jax.vmap(train, in_axes=(0, None, None, None, 0)))
    return jax.jit(jax.vmap(train, in_axes=(0, 0, 0, 0)) if vmapped else train)


class GANResult(NamedTuple):
    """What ``train_gan`` returns: the final ``GANState`` and per-step ``history``."""

    state: GANState
    history: dict


def train_gan(
    key: jax.Array,
    spec: GANSpec,
    g_params: Params,
    d_params: Params,
    data: jax.typing.ArrayLike,
    config: GANConfig,
) -> GANResult:
    """Trains one GAN on ``data`` with a jitted ``make_trainer`` loop.

    Args:
      key: PRNG key.
      spec: the ``GANSpec``.
      g_params: initial generator parameters.
      d_params: initial discriminator parameters.
      data: ``(n, ...)`` training data (device resident).
      config: the ``GANConfig``.

    Returns:
      ``GANResult``; sample from ``state.ema_params`` (or ``state.g_params``).

    Raises:
      ValueError: for non-finite data or fewer rows than one batch.

    Example:
      >>> import jax
      >>> from jaxgen.generative import GANConfig, mlp_gan, sample, train_gan
      >>> data = jax.random.normal(jax.random.key(0), (1000, 2))
      >>> spec, g_params, d_params = mlp_gan(jax.random.key(1), dim=2, g_hidden=(16,),
      ...                                    d_hidden=(16,))
      >>> result = train_gan(jax.random.key(2), spec, g_params, d_params, data,
      ...                    GANConfig(steps=20, batch_size=100))
      >>> sample(spec, result.state.g_params, jax.random.key(3), 5).shape
      (5, 2)
    """
    data = jnp.asarray(data, jnp.float32)
    check_array("data", data, ndim=(2, 3, 4))
    if data.shape[0] < 2:
        raise ValueError(f"`data` needs at least 2 rows; got {data.shape[0]}.")
    train = compiled_trainer(spec, config)
    state, history = train(init_state(config, g_params, d_params), data,
                           jnp.asarray(data.shape[0], jnp.int32), key)
    return GANResult(state, history)


def train_gan_ablation(
    key: jax.Array,
    spec: GANSpec,
    g_params: Params,
    d_params: Params,
    data: jax.typing.ArrayLike,
    config: GANConfig,
    losses: tuple[str, ...],
) -> dict[str, GANResult]:
    """Trains one GAN per loss in ``losses`` in a single vmapped program.

    Every member starts from the same parameters and uses the same key (a paired
    comparison); only the adversarial loss differs (``config.loss`` is ignored). One
    compilation serves the whole ablation.

    Returns:
      ``{loss: GANResult}``.

    Example:
      >>> import dataclasses, jax
      >>> from jaxgen.generative import GANConfig, mlp_gan, train_gan_ablation
      >>> spec, g, d = mlp_gan(jax.random.key(0), dim=2, g_hidden=(8,), d_hidden=(8,))
      >>> config = dataclasses.replace(GANConfig(), steps=3, batch_size=16)
      >>> data = jax.random.normal(jax.random.key(1), (64, 2))
      >>> results = train_gan_ablation(jax.random.key(2), spec, g, d, data, config,
      ...                              ("hinge", "least_squares"))
      >>> sorted(results)
      ['hinge', 'least_squares']
    """
    losses = tuple(losses)
    if not losses:
        raise ValueError("`losses` must name at least one loss.")
    data = jnp.asarray(data, jnp.float32)
    check_array("data", data, ndim=(2, 3, 4))
    state = init_state(config, g_params, d_params)
    stack = jax.tree_util.tree_map(lambda a: jnp.stack([a] * len(losses)), state)
    train = compiled_trainer(spec, config, losses=losses)
    states, history = train(stack, data, jnp.asarray(data.shape[0], jnp.int32), key,
                            jnp.arange(len(losses)))
    return {
        name: GANResult(jax.tree_util.tree_map(lambda a, i=i: a[i], states),
                        {k: v[i] for k, v in history.items()})
        for i, name in enumerate(losses)
    }


# ---------------------------------------------------------------- MLP GANs for vectors


def mlp_gan(
    key: jax.Array,
    *,
    dim: int,
    latent_dim: int = 2,
    g_hidden: tuple[int, ...] = (64, 64),
    d_hidden: tuple[int, ...] = (64, 64),
) -> tuple[GANSpec, Params, Params]:
    """An MLP generator ``N(0, I_latent) -> R^dim`` and MLP discriminator, for vectors.

    Leaky-ReLU activations (0.2) throughout, as usual for GANs on low-dimensional toys.

    Args:
      key: PRNG key for the initial parameters.
      dim: data dimension.
      latent_dim: dimension of the Gaussian latent.
      g_hidden: generator hidden widths (empty gives an affine generator).
      d_hidden: discriminator hidden widths.

    Returns:
      ``(spec, g_params, d_params)``.

    Example:
      >>> import jax
      >>> from jaxgen.generative import mlp_gan, sample
      >>> spec, g_params, d_params = mlp_gan(jax.random.key(0), dim=2, g_hidden=(8,), d_hidden=(8,))
      >>> x = sample(spec, g_params, jax.random.key(1), 5)
      >>> x.shape, spec.discriminate(d_params, x).shape
      ((5, 2), (5,))
    """
    for name, v in (("dim", dim), ("latent_dim", latent_dim)):
        check_positive(name, v)
    spec, gen, disc = _mlp_gan_spec(int(dim), int(latent_dim), tuple(g_hidden), tuple(d_hidden))
    kg, kd = jax.random.split(key)
    g_params = _jit_init(gen)(kg, jnp.zeros((1, latent_dim)))
    d_params = _jit_init(disc)(kd, jnp.zeros((1, dim)))
    return spec, g_params, d_params


@functools.lru_cache(maxsize=64)
def _jit_init(module: nn.Module) -> Callable:
    # One jitted init per (cached) module: repeated builds do not recompile.
    return jax.jit(module.init)


def _leaky_relu(h: jax.Array) -> jax.Array:
    return nn.leaky_relu(h, 0.2)


@functools.lru_cache(maxsize=32)
def _mlp_gan_spec(dim, latent_dim, g_hidden, d_hidden):
    # Cached so that equal architectures share one spec, hence one compiled trainer.
    gen = MLP((*g_hidden, dim), activation=_leaky_relu)
    disc = MLP((*d_hidden, 1), activation=_leaky_relu)
    spec = GANSpec(
        generate=lambda p, z: gen.apply(p, z),
        discriminate=lambda p, x: disc.apply(p, x)[:, 0],
        sample_latent=lambda k, n: jax.random.normal(k, (n, latent_dim)),
    )
    return spec, gen, disc


def sample(spec: GANSpec, g_params: Params, key: jax.Array, n: int) -> jax.Array:
    """Draws ``n`` samples ``(n, ...)`` from the generator with parameters ``g_params``.

    Example:
      >>> import jax
      >>> from jaxgen.generative import mlp_gan, sample
      >>> spec, g_params, _ = mlp_gan(jax.random.key(0), dim=3, g_hidden=(8,), d_hidden=(8,))
      >>> sample(spec, g_params, jax.random.key(1), 4).shape
      (4, 3)
    """
    check_positive("n", n)
    return spec.generate(g_params, spec.sample_latent(key, n))
