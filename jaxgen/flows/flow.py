"""``Flow``: a normalizing flow as a pure structure plus a params pytree.

A flow is a base density and a sequence of *stacks*; a stack is one flow-layer module
repeated ``num_layers`` times with its parameters stacked on a leading axis and applied
with ``lax.scan`` (compile time independent of depth), each layer followed by a fixed
permutation. The base is any ``distrax.Distribution`` with event shape ``(dim,)`` or a
``FlowDistribution`` (another flow with frozen parameters, possibly conditional): the
mechanism of Flows for Flows (arXiv:2211.02487).

Directions follow distrax: ``forward`` maps base samples ``z`` to data ``x`` and
``inverse`` maps data to base. ``log_prob(x) = log p_base(z) + log|det dz/dx|``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen._checks import check_array

Params = Any


@dataclasses.dataclass(frozen=True, eq=False)
class Stack:
    """``num_layers`` copies of ``layer`` (independent parameters), scanned.

    Attributes:
      layer: a flow-layer module with ``inverse``/``forward`` methods returning
        ``(output, logdet)``.
      num_layers: number of copies.
      permutations: ``(num_layers, dim)`` integer table; in the data-to-base direction,
        layer ``l`` is followed by ``x -> x[..., permutations[l]]``. ``None``: none.
    """

    layer: nn.Module
    num_layers: int
    permutations: np.ndarray | None = None


def _permuter(table: np.ndarray | None):
    """``permute(h, layer_index, inverse)`` for a stack's permutation table.

    When every layer uses the same permutation it is a compile-time constant (for the
    reverse permutation a plain reversal), which is much cheaper than gathering with a
    traced index table inside the scan.
    """
    if table is None:
        return lambda h, i, inverse: h
    table = np.asarray(table)
    if np.all(table == table[0]):
        perm = table[0]
        inv = np.argsort(perm)
        if np.array_equal(perm, np.arange(perm.size)[::-1]):
            return lambda h, i, inverse: h[..., ::-1]
        return lambda h, i, inverse: h[..., inv if inverse else perm]
    perms = jnp.asarray(table)
    inv_perms = jnp.asarray(np.argsort(table, axis=-1))
    return lambda h, i, inverse: jnp.take(h, (inv_perms if inverse else perms)[i], axis=-1)


def _standard_normal(dim: int) -> distrax.Distribution:
    return distrax.MultivariateNormalDiag(jnp.zeros(dim), jnp.ones(dim))


class Flow:
    """A (conditional) normalizing flow; all methods are pure functions of ``params``.

    Build one with a factory such as ``coupling_flow`` rather than by hand.

    Args:
      dim: event dimension.
      stacks: the layer stacks, in the data-to-base order.
      base: base density: ``None`` (standard normal), a ``distrax.Distribution`` with
        event shape ``(dim,)``, or a ``FlowDistribution`` (flows for flows).
      context_dim: width of the conditioning context (0: unconditional).
      embedding: optional network applied to the context once before every layer.
    """

    def __init__(
        self,
        dim: int,
        stacks: Sequence[Stack],
        *,
        base: distrax.Distribution | None = None,
        context_dim: int = 0,
        embedding: nn.Module | None = None,
    ):
        if dim < 1:
            raise ValueError(f"`dim` must be >= 1; got {dim}.")
        if context_dim < 0:
            raise ValueError(f"`context_dim` must be >= 0; got {context_dim}.")
        if embedding is not None and context_dim == 0:
            raise ValueError("`embedding` needs a conditional flow (`context_dim` > 0).")
        base = _standard_normal(dim) if base is None else base
        if tuple(base.event_shape) != (dim,):
            raise ValueError(
                f"`base` must have event shape ({dim},); got {tuple(base.event_shape)}."
            )
        for s in stacks:
            if s.permutations is not None and np.shape(s.permutations) != (s.num_layers, dim):
                raise ValueError(
                    f"stack permutations must have shape ({s.num_layers}, {dim}); got "
                    f"{np.shape(s.permutations)}."
                )
        self.dim = dim
        self.stacks = tuple(stacks)
        self.base = base
        self.context_dim = context_dim
        self.embedding = embedding

    # ------------------------------------------------------------------ parameters

    def init(self, key: jax.Array) -> Params:
        """Initial parameters: ``{"stacks": (...), "embedding": ...}``."""
        k_emb, k_stacks = jax.random.split(key)
        ctx = jnp.zeros((1, self.context_dim)) if self.context_dim else None
        params: dict[str, Any] = {}
        if self.embedding is not None:
            params["embedding"] = self.embedding.init(k_emb, ctx)
            ctx = self.embedding.apply(params["embedding"], ctx)
        x = jnp.zeros((1, self.dim))
        stacks = []
        for s, k in zip(self.stacks, jax.random.split(k_stacks, len(self.stacks)), strict=True):
            keys = jax.random.split(k, s.num_layers)
            stacks.append(jax.vmap(lambda kk, s=s: s.layer.init(kk, x, ctx))(keys))
        params["stacks"] = tuple(stacks)
        return params

    # ------------------------------------------------------------------ validation

    def validate(self, name: str, x: jax.Array, context: jax.Array | None = None) -> None:
        """Raises ``ValueError`` unless ``x`` is ``(n, dim)``, finite, with a matching context.

        Called by ``forward``/``inverse``; call it once yourself before a jitted loop to
        also check finiteness (under ``jit`` only shapes can be checked).
        """
        check_array(name, x, ndim=2, last_dim=self.dim)
        if self.context_dim == 0:
            if context is not None:
                raise ValueError("`context` was given to an unconditional flow (context_dim=0).")
            return
        if context is None:
            raise ValueError(f"this flow needs `context` of shape (n, {self.context_dim}).")
        check_array("context", context, ndim=2, last_dim=self.context_dim)
        if context.shape[0] != x.shape[0]:
            raise ValueError(
                f"`context` must have {x.shape[0]} rows (one per event); got {context.shape[0]}."
            )

    def _embed(self, params: Params, context: jax.Array | None) -> jax.Array | None:
        if context is None or self.embedding is None:
            return context
        return self.embedding.apply(params["embedding"], context)

    # ------------------------------------------------------------------ transforms

    def _run(self, params, x, context, direction: str):
        ctx = self._embed(params, context)
        total = jnp.zeros(x.shape[:-1], x.dtype)
        order = range(len(self.stacks))
        if direction == "forward":
            order = reversed(order)
        for i in order:
            s, p = self.stacks[i], params["stacks"][i]
            permute = _permuter(s.permutations)
            index = jnp.arange(s.num_layers)

            def body(carry, xs, s=s, permute=permute):
                h, ld = carry
                p_l, i_l = xs
                if direction == "inverse":
                    h, d = s.layer.apply(p_l, h, ctx, method=s.layer.inverse)
                    h = permute(h, i_l, inverse=False)
                else:
                    h = permute(h, i_l, inverse=True)
                    h, d = s.layer.apply(p_l, h, ctx, method=s.layer.forward)
                return (h, ld + d), None

            (x, total), _ = jax.lax.scan(
                body, (x, total), (p, index), reverse=(direction == "forward")
            )
        return x, total

    def inverse(
        self, params: Params, x: jax.Array, context: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Maps data ``x`` ``(n, dim)`` to base ``z``; returns ``(z, log|det dz/dx|)``."""
        self.validate("x", x, context)
        return self._run(params, x, context, "inverse")

    def forward(
        self, params: Params, z: jax.Array, context: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Maps base ``z`` ``(n, dim)`` to data ``x``; returns ``(x, log|det dx/dz|)``."""
        self.validate("z", z, context)
        return self._run(params, z, context, "forward")

    # ------------------------------------------------------------------ densities

    def base_log_prob(self, z: jax.Array, base_context: jax.Array | None = None) -> jax.Array:
        """Log-density of base samples ``z`` ``(n, dim)`` (``base_context`` for a flow base)."""
        if isinstance(self.base, FlowDistribution):
            ctx = self.base.context if base_context is None else base_context
            return self.base.flow.log_prob(self.base.params, z, ctx)
        if base_context is not None:
            raise ValueError("`base_context` was given but the base is not a conditional flow.")
        return self.base.log_prob(z)

    def _base_sample(self, key, n, base_context):
        if isinstance(self.base, FlowDistribution):
            ctx = self.base.context if base_context is None else base_context
            return self.base.flow.sample_and_log_prob(self.base.params, key, n, ctx)
        if base_context is not None:
            raise ValueError("`base_context` was given but the base is not a conditional flow.")
        return self.base.sample_and_log_prob(seed=key, sample_shape=(n,))

    def log_prob(
        self,
        params: Params,
        x: jax.Array,
        context: jax.Array | None = None,
        base_context: jax.Array | None = None,
    ) -> jax.Array:
        """Log-density of ``x`` ``(n, dim)``; returns ``(n,)``.

        Args:
          params: flow parameters.
          x: events, shape ``(n, dim)``.
          context: conditioning context ``(n, context_dim)`` if the flow is conditional.
          base_context: context of a conditional flow base (flows for flows); by default
            the base's own bound context.
        """
        z, logdet = self.inverse(params, x, context)
        return self.base_log_prob(z, base_context) + logdet

    def nll(self, params: Params, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """Per-event negative log-likelihood ``(n,)`` (a loss for ``jaxgen.train.fit``)."""
        return -self.log_prob(params, x, context)

    def sample_and_log_prob(
        self,
        params: Params,
        key: jax.Array,
        n: int | None = None,
        context: jax.Array | None = None,
        base_context: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Draws ``n`` events (one per context row if conditional) and their log-density."""
        n = self._num_samples(n, context)
        z, base_lp = self._base_sample(key, n, base_context)
        x, logdet = self.forward(params, z, context)
        return x, base_lp - logdet

    def sample(
        self,
        params: Params,
        key: jax.Array,
        n: int | None = None,
        context: jax.Array | None = None,
        base_context: jax.Array | None = None,
    ) -> jax.Array:
        """Draws ``n`` events ``(n, dim)``; for a conditional flow, one per context row."""
        return self.sample_and_log_prob(params, key, n, context, base_context)[0]

    def _num_samples(self, n: int | None, context: jax.Array | None) -> int:
        if context is not None:
            rows = int(context.shape[0])
            if n is not None and n != rows:
                raise ValueError(f"`n`={n} differs from the {rows} rows of `context`.")
            return rows
        if n is None or n < 1:
            raise ValueError(f"`n` must be a positive number of samples; got {n}.")
        return int(n)

    def distribution(self, params: Params, context: jax.Array | None = None) -> FlowDistribution:
        """This flow with ``params`` (and optionally a context) as a ``distrax.Distribution``."""
        return FlowDistribution(self, params, context)


class FlowDistribution(distrax.Distribution):
    """A ``Flow`` bound to its parameters (and optional context) as a distrax distribution.

    With a context of shape ``(m, context_dim)`` the batch shape is ``(m,)``: ``log_prob``
    takes ``(m, dim)`` and ``sample(seed, (k,))`` returns ``(k, m, dim)``. It can be the
    base of another ``Flow``; there its parameters stay fixed (flows for flows).
    """

    def __init__(self, flow: Flow, params: Params, context: jax.Array | None = None):
        self.flow = flow
        self.params = params
        self.context = context

    @property
    def event_shape(self) -> tuple[int, ...]:
        """``(dim,)``."""
        return (self.flow.dim,)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``()`` or ``(m,)`` with a context of ``m`` rows."""
        return () if self.context is None else (int(self.context.shape[0]),)

    def log_prob(self, value: jax.Array) -> jax.Array:
        """Log-density: ``value`` is ``(n, dim)`` (or ``(dim,)`` unconditionally)."""
        value = jnp.asarray(value)
        if value.ndim == 1 and self.context is None:
            return self.flow.log_prob(self.params, value[None])[0]
        return self.flow.log_prob(self.params, value, self.context)

    def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
        return self._sample_n_and_log_prob(key, n)[0]

    def _sample_n_and_log_prob(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        if self.context is None:
            return self.flow.sample_and_log_prob(self.params, key, n)
        m = self.context.shape[0]
        ctx = jnp.tile(self.context, (n, 1))
        x, lp = self.flow.sample_and_log_prob(self.params, key, context=ctx)
        return x.reshape(n, m, self.flow.dim), lp.reshape(n, m)
