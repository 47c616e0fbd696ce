"""Factories for the standard flows: ``coupling_flow`` and ``masked_autoregressive_flow``.

Each takes the PRNG key first and everything else by keyword, and returns
``(flow, params)``. Defaults follow the neural-spline-flow papers (8 bins, tails at
+-5 ... adjust ``tail_bound`` to your data's scale) and start the flow at the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax

from jaxgen._checks import check_in
from jaxgen._checks import check_positive
from jaxgen.flows.autoregressive import MaskedAutoregressiveLayer
from jaxgen.flows.coupling import CouplingLayer
from jaxgen.flows.elementwise import ElementwiseLayer
from jaxgen.flows.flow import Flow
from jaxgen.flows.flow import Params
from jaxgen.flows.flow import Stack
from jaxgen.flows.linear import LULinearLayer
from jaxgen.flows.permutation import random_permutations
from jaxgen.flows.permutation import reverse_permutation
from jaxgen.flows.sequential import SequentialLayer
from jaxgen.flows.transformers import make_transformer
from jaxgen.nn import MLP
from jaxgen.nn.mlp import Activation

PERMUTATIONS = ("reverse", "random", "none")


def _permutation_table(kind: str, num_layers: int, dim: int, seed: int):
    check_in("permutation", kind, PERMUTATIONS)
    if kind == "none" or dim == 1:
        return None
    if kind == "reverse":
        return reverse_permutation(dim)[None].repeat(num_layers, axis=0)
    return random_permutations(seed, num_layers, dim)


def _embedding(context_dim: int, embedding_dim: int | None, hidden: Sequence[int]):
    if embedding_dim is None:
        return None, context_dim
    check_positive("embedding_dim", embedding_dim)
    if context_dim == 0:
        raise ValueError("`embedding_dim` needs a conditional flow (`context_dim` > 0).")
    return MLP(tuple(hidden) + (embedding_dim,)), embedding_dim


def _validate(dim, num_layers, hidden, context_dim):
    check_positive("dim", dim)
    check_positive("num_layers", num_layers)
    check_positive("context_dim", context_dim, allow_zero=True)
    if not hidden or any(h <= 0 for h in hidden):
        raise ValueError(f"`hidden` must be a non-empty list of positive sizes; got {hidden}.")


def _one_dimensional(trans, context_dim, hidden, activation, identity_init):
    """The 1-D layer of both architectures (no coordinate to condition on).

    One elementwise transformer with learned knots, or knots from the context.
    """
    return ElementwiseLayer(1, trans, context_dim > 0, tuple(hidden), activation,
                            identity_init)


def _stacked_flow(key, layer, *, dim, num_layers, permutation, seed_permutations, lu_linear,
                  base, context_dim, embedding_dim, hidden) -> tuple[Flow, Params]:
    """One scanned stack of ``layer`` (plus LU-linear), permutations, base and embedding."""
    emb, _ = _embedding(context_dim, embedding_dim, hidden)
    if lu_linear:
        layer = SequentialLayer((layer, LULinearLayer(dim)))
    perms = _permutation_table(permutation, num_layers, dim, seed_permutations)
    flow = Flow(dim, [Stack(layer, num_layers, perms)], base=base, context_dim=context_dim,
                embedding=emb)
    return flow, flow.init(key)


def coupling_flow(
    key: jax.Array,
    *,
    dim: int,
    context_dim: int = 0,
    base: distrax.Distribution | None = None,
    num_layers: int = 8,
    transformer: str = "rqs",
    num_bins: int = 8,
    tail_bound: float = 5.0,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = nn.relu,
    permutation: str = "reverse",
    lu_linear: bool = False,
    embedding_dim: int | None = None,
    identity_init: bool = True,
    seed_permutations: int = 0,
) -> tuple[Flow, Params]:
    """A split-coupling flow (RealNVP / neural spline flow).

    References: Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP",
    arXiv:1605.08803; Durkan et al., "Neural Spline Flows", arXiv:1906.04032.

    Args:
      key: PRNG key for the parameters.
      dim: event dimension. In one dimension there is no coordinate to condition on and
        each layer is an ``ElementwiseLayer``: one spline (or affine map) with learned
        knots, or knots from an MLP of the context for a conditional flow.
      context_dim: width of the conditioning context (0: unconditional).
      base: base density (default standard normal); a ``FlowDistribution`` makes this a
        flow for flows.
      num_layers: coupling layers, each followed by a permutation.
      transformer: ``"rqs"`` (rational-quadratic spline) or ``"affine"``.
      num_bins: spline bins.
      tail_bound: spline interval ``[-tail_bound, tail_bound]``; identity outside.
      hidden: conditioner hidden sizes.
      activation: conditioner nonlinearity.
      permutation: ``"reverse"``, ``"random"`` (fixed per layer) or ``"none"``.
      lu_linear: add a learned LU-linear layer after each coupling layer.
      embedding_dim: pass the context through an MLP to this width first.
      identity_init: start every layer at the identity.
      seed_permutations: numpy seed of the random permutations.

    Returns:
      ``(flow, params)``.

    Example:
      >>> import jax
      >>> from jaxgen.flows import coupling_flow
      >>> flow, params = coupling_flow(jax.random.key(0), dim=2, num_layers=4)
      >>> flow.log_prob(params, jax.numpy.zeros((3, 2))).shape
      (3,)
    """
    _validate(dim, num_layers, hidden, context_dim)
    trans = make_transformer(transformer, num_bins=num_bins, tail_bound=tail_bound)
    if dim == 1:
        layer = _one_dimensional(trans, context_dim, hidden, activation, identity_init)
    else:
        layer = CouplingLayer(dim, trans, tuple(hidden), None, activation, identity_init)
    return _stacked_flow(key, layer, dim=dim, num_layers=num_layers, permutation=permutation,
                         seed_permutations=seed_permutations, lu_linear=lu_linear, base=base,
                         context_dim=context_dim, embedding_dim=embedding_dim, hidden=hidden)


def masked_autoregressive_flow(
    key: jax.Array,
    *,
    dim: int,
    context_dim: int = 0,
    base: distrax.Distribution | None = None,
    num_layers: int = 5,
    transformer: str = "rqs",
    num_bins: int = 8,
    tail_bound: float = 5.0,
    hidden: Sequence[int] = (128, 128),
    activation: Activation = nn.relu,
    permutation: str = "reverse",
    lu_linear: bool = False,
    embedding_dim: int | None = None,
    identity_init: bool = True,
    seed_permutations: int = 0,
) -> tuple[Flow, Params]:
    """A masked autoregressive flow with a MADE conditioner (affine or spline).

    References: Papamakarios, Pavlakou, Murray, "Masked Autoregressive Flow for Density
    Estimation", arXiv:1705.07057; Germain et al., "MADE", arXiv:1502.03509; Durkan et
    al., arXiv:1906.04032 (autoregressive RQ-NSF).

    Density evaluation is one pass per layer; sampling needs ``dim`` passes per layer.
    Arguments are those of ``coupling_flow``; in one dimension the flow is the same
    stack of ``ElementwiseLayer`` as ``coupling_flow(dim=1)``.

    Returns:
      ``(flow, params)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.flows import masked_autoregressive_flow
      >>> flow, params = masked_autoregressive_flow(jax.random.key(0), dim=3, context_dim=1,
      ...                                           num_layers=2, hidden=(16,))
      >>> x, context = jnp.zeros((4, 3)), jnp.ones((4, 1))
      >>> flow.log_prob(params, x, context).shape
      (4,)
      >>> flow.sample(params, jax.random.key(1), 4, context).shape     # one sample per context
      (4, 3)
    """
    _validate(dim, num_layers, hidden, context_dim)
    trans = make_transformer(transformer, num_bins=num_bins, tail_bound=tail_bound)
    if dim == 1:
        layer = _one_dimensional(trans, context_dim, hidden, activation, identity_init)
    else:
        layer = MaskedAutoregressiveLayer(dim, trans, tuple(hidden), activation,
                                          identity_init)
    return _stacked_flow(key, layer, dim=dim, num_layers=num_layers, permutation=permutation,
                         seed_permutations=seed_permutations, lu_linear=lu_linear, base=base,
                         context_dim=context_dim, embedding_dim=embedding_dim, hidden=hidden)
