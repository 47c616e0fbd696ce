"""Flows for Flows: maps between two densities, trained by maximum likelihood.

Klein, Raine, Golling, "Flows for Flows: Training Normalizing Flows Between Arbitrary
Distributions with Maximum Likelihood Estimation", arXiv:2211.02487.

Two base flows ``p_L`` and ``p_R`` are trained on the left and right datasets and frozen.
A top flow ``T`` whose *base is the frozen right flow* (``base=right.distribution(...)``)
then maps left samples to right samples:

- forward (left -> right), ``x ~ L``:
  ``-log p_R(T(x)) - log|det dT/dx| + lambda d(T(x), x)``  (that is ``-top.log_prob(x)``
  plus the penalty);
- inverse (right -> left), ``y ~ R``:
  ``-log p_L(T^-1(y)) - log|det dT^-1/dy| + lambda d(T^-1(y), y)``.

``d`` is the L1 or squared-L2 distance summed over features; annealing it with a cosine
schedule ``lambda_t = lambda_min + (lambda_0 - lambda_min)(1 + cos(pi t / T))/2`` biases
``T`` towards a minimal displacement (an optimal-transport-like map). Directions:
``"forward"``, ``"inverse"``, ``"both"`` (sum), ``"alternate"`` (even steps forward,
odd steps inverse, the paper's default) or ``"iterate"`` (blocks of ``iteration_epochs``
epochs per direction, starting forward).

Conditional variants are the same losses with different contexts: the top flow's
``context`` (e.g. ``c_tgt - c_in`` for the Delta variant, or ``[c_in, c_tgt]`` for the
Concat variant) and ``base_context`` (the condition of a conditional base flow, e.g.
``c_tgt``). ``delta_context`` and ``concat_context`` build them. The baseline is
``encode_decode``: ``y = f_R^{-1}(f_L(x))``.
"""

from __future__ import annotations

import dataclasses
import math

import distrax
import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_in
from jaxgen._checks import check_positive
from jaxgen.flows import Flow
from jaxgen.flows import FlowDistribution
from jaxgen.train import FitConfig
from jaxgen.train import FitResult
from jaxgen.train import fit
from jaxgen.train import num_train_steps

PENALTIES = (None, "l1", "l2")
DIRECTIONS = ("forward", "inverse", "both", "alternate", "iterate")


def distance(a: jax.Array, b: jax.Array, kind: str | None) -> jax.Array:
    """Per-event distance ``(n,)``: L1 ``sum|a-b|``, squared L2 ``sum (a-b)^2``, or 0."""
    check_in("penalty", kind, PENALTIES)
    if kind is None:
        return jnp.zeros(a.shape[:-1], a.dtype)
    diff = a - b
    return jnp.sum(jnp.abs(diff) if kind == "l1" else diff * diff, axis=-1)


def cosine_annealed_weight(step, total_steps: int, weight: float, min_weight: float = 0.0):
    """``min + (weight - min)(1 + cos(pi t/T))/2``, constant ``min`` after ``T`` steps."""
    t = jnp.minimum(step, total_steps) / max(total_steps, 1)
    return min_weight + 0.5 * (weight - min_weight) * (1.0 + jnp.cos(math.pi * t))


def delta_context(c_in: jax.Array, c_tgt: jax.Array) -> jax.Array:
    """Context of the Delta variant: ``c_tgt - c_in``."""
    return c_tgt - c_in


def concat_context(c_in: jax.Array, c_tgt: jax.Array) -> jax.Array:
    """Context of the Concat variant: ``[c_in, c_tgt]``."""
    return jnp.concatenate([c_in, c_tgt], axis=-1)


def _base_lp(dist, z: jax.Array, context: jax.Array | None) -> jax.Array:
    """Log-density under a frozen flow (with context) or any distrax distribution."""
    if isinstance(dist, FlowDistribution):
        return dist.flow.log_prob(dist.params, z, context)
    if context is not None:
        raise ValueError("a context was given for a base that is not a conditional flow.")
    return dist.log_prob(z)


def forward_loss(
    top: Flow,
    params,
    x: jax.Array,
    *,
    context: jax.Array | None = None,
    base_context: jax.Array | None = None,
    penalty: str | None = None,
    weight: float | jax.Array = 0.0,
) -> jax.Array:
    """Per-event loss of the left-to-right direction for ``x ~ L`` ``(n, dim)``."""
    z, logdet = top.inverse(params, x, context)
    lp = top.base_log_prob(z, base_context) + logdet
    return -lp + weight * distance(z, x, penalty)


def inverse_loss(
    top: Flow,
    params,
    y: jax.Array,
    left: distrax.Distribution,
    *,
    context: jax.Array | None = None,
    left_context: jax.Array | None = None,
    penalty: str | None = None,
    weight: float | jax.Array = 0.0,
) -> jax.Array:
    """Per-event loss of the right-to-left direction for ``y ~ R`` ``(n, dim)``."""
    x, logdet = top.forward(params, y, context)
    return -(_base_lp(left, x, left_context) + logdet) + weight * distance(x, y, penalty)


@dataclasses.dataclass(frozen=True)
class TransportConfig:
    """How the top flow is trained.

    Attributes:
      direction: ``"forward"``, ``"inverse"``, ``"both"``, ``"alternate"`` or ``"iterate"``.
      penalty: ``None``, ``"l1"`` or ``"l2"``.
      penalty_weight: ``lambda_0``.
      min_penalty_weight: ``lambda_min`` reached at the end of a cosine anneal.
      anneal: cosine-anneal the penalty weight over all training steps.
      iteration_epochs: epochs per block of one direction for ``"iterate"``.
    """

    direction: str = "alternate"
    penalty: str | None = None
    penalty_weight: float = 1.0
    min_penalty_weight: float = 0.0
    anneal: bool = True
    iteration_epochs: int = 1

    def __post_init__(self):
        check_in("direction", self.direction, DIRECTIONS)
        check_positive("iteration_epochs", self.iteration_epochs)
        check_in("penalty", self.penalty, PENALTIES)
        check_positive("penalty_weight", self.penalty_weight, allow_zero=True)
        check_positive("min_penalty_weight", self.min_penalty_weight, allow_zero=True)


def fit_transport(
    key: jax.Array,
    top: Flow,
    params,
    left: jax.Array,
    right: jax.Array,
    left_base: distrax.Distribution,
    *,
    transport: TransportConfig | None = None,
    config: FitConfig | None = None,
    left_context: jax.Array | None = None,
    right_context: jax.Array | None = None,
    top_context_fn=None,
) -> FitResult:
    """Trains the top flow ``T`` (whose base is the frozen right flow) from left to right.

    Left and right events are paired row by row (``n = min(n_L, n_R)`` rows are used).

    Args:
      key: PRNG key.
      top: the top flow; its ``base`` is the frozen right density (a ``FlowDistribution``
        or any distrax distribution).
      params: initial top-flow parameters (identity-initialised by the factories).
      left: left events ``(n_L, dim)``.
      right: right events ``(n_R, dim)``.
      left_base: the frozen left density (flow or distrax distribution), used by the
        inverse direction.
      transport: direction and penalty (``TransportConfig``).
      config: ``FitConfig`` for the engine.
      left_context: conditions of the left events ``(n_L, c)`` (conditional variants).
      right_context: conditions of the right events ``(n_R, c)``.
      top_context_fn: ``f(c_in, c_tgt) -> context`` of the top flow (e.g.
        ``delta_context``); ``None`` for a top flow without context. Conditional base flows
        receive ``c_tgt`` (forward) or ``c_in`` (inverse) as their context.

    Returns:
      The engine's ``FitResult``.

    Example:
      Moving N(0, 1) onto N(2, 0.5^2), whose optimal map is ``T(x) = 2 + x / 2``:

      >>> import distrax, jax, jax.numpy as jnp
      >>> from jaxgen.flows import coupling_flow
      >>> from jaxgen.methods.flows4flows import TransportConfig, fit_transport, transport
      >>> from jaxgen.train import FitConfig
      >>> left = jax.random.normal(jax.random.key(0), (4000, 1))
      >>> right = 2.0 + 0.5 * jax.random.normal(jax.random.key(1), (4000, 1))
      >>> left_base = distrax.MultivariateNormalDiag(jnp.zeros(1), jnp.ones(1))
      >>> top, params = coupling_flow(jax.random.key(2), dim=1, num_layers=1, hidden=(8,),
      ...                             base=distrax.MultivariateNormalDiag(2.0 * jnp.ones(1),
      ...                                                                 0.5 * jnp.ones(1)))
      >>> result = fit_transport(jax.random.key(3), top, params, left, right, left_base,
      ...                        transport=TransportConfig(direction="forward"),
      ...                        config=FitConfig(epochs=20, batch_size=200, learning_rate=1e-2,
      ...                                         progress=False))
      >>> moved = transport(top, result.params, jnp.array([[0.0], [1.0]]))
      >>> bool(jnp.allclose(moved[:, 0], jnp.array([2.0, 2.5]), atol=0.15))
      True
    """
    transport = TransportConfig() if transport is None else transport
    config = FitConfig() if config is None else config
    left, right = jnp.asarray(left), jnp.asarray(right)
    if left.shape[1:] != (top.dim,) or right.shape[1:] != (top.dim,):
        raise ValueError(
            f"`left` and `right` must have shape (n, {top.dim}); got {left.shape} and "
            f"{right.shape}."
        )
    # Checked here, by name: the engine would only know them as leaves of its data tree.
    for name, value in (("left", left), ("right", right), ("left_context", left_context),
                        ("right_context", right_context)):
        if value is not None:
            check_array(name, value, ndim=2)
    n = min(left.shape[0], right.shape[0])
    data = {"x": left[:n], "y": right[:n]}
    conditional = left_context is not None or right_context is not None
    if conditional:
        if left_context is None or right_context is None:
            raise ValueError("give both `left_context` and `right_context`, or neither.")
        data["cx"], data["cy"] = left_context[:n], right_context[:n]
    total = num_train_steps(n, config)
    block = transport.iteration_epochs * (total // config.epochs)  # steps per block
    t = transport

    def weight(step):
        if not t.anneal:
            return t.penalty_weight
        return cosine_annealed_weight(step, total, t.penalty_weight, t.min_penalty_weight)

    def fwd(p, b, w):
        cx, cy = b.get("cx"), b.get("cy")
        ctx = None if top_context_fn is None else top_context_fn(cx, cy)
        return forward_loss(top, p, b["x"], context=ctx, base_context=cy, penalty=t.penalty,
                            weight=w)

    def inv(p, b, w):
        cx, cy = b.get("cx"), b.get("cy")
        ctx = None if top_context_fn is None else top_context_fn(cx, cy)
        return inverse_loss(top, p, b["y"], left_base, context=ctx, left_context=cx,
                            penalty=t.penalty, weight=w)

    def loss(p, b, k, step, training):
        # The engine passes the step reached so far at validation too (training=False):
        # the validation loss, and with it the best-parameter restore, is scored with the
        # penalty weight training has annealed to, not with lambda_0 (which would prefer
        # maps that barely move). Alternating directions are validated on both.
        w = weight(step)
        if t.direction == "forward":
            return fwd(p, b, w)
        if t.direction == "inverse":
            return inv(p, b, w)
        if t.direction == "both" or not training:
            return fwd(p, b, w) + inv(p, b, w)
        phase = step % 2 if t.direction == "alternate" else (step // block) % 2
        return jax.lax.cond(phase == 0, fwd, inv, p, b, w)

    return fit(loss, params, data, key=key, config=config)


def transport(top: Flow, params, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
    """Maps left events ``x`` to the right: ``T(x)``."""
    return top.inverse(params, x, context)[0]


def transport_back(
    top: Flow, params, y: jax.Array, context: jax.Array | None = None
) -> jax.Array:
    """Maps right events ``y`` to the left: ``T^{-1}(y)``."""
    return top.forward(params, y, context)[0]


def encode_decode(
    left: FlowDistribution,
    right: FlowDistribution,
    x: jax.Array,
    left_context: jax.Array | None = None,
    right_context: jax.Array | None = None,
) -> jax.Array:
    """The baseline transfer ``f_R^{-1}(f_L(x))`` through the shared Gaussian latent."""
    z, _ = left.flow.inverse(left.params, x, left_context)
    return right.flow.forward(right.params, z, right_context)[0]
