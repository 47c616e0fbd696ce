r"""``SurjectiveFlow``: a flow whose layers may change dimension (SurVAE flows).

Nielsen, Jaini, Hoogeboom, Winther, Welling, "SurVAE Flows", arXiv:2007.02731; funnels
(Klein et al., arXiv:2112.08069) and flowification (Máté et al., arXiv:2205.15209) are
built from it. A surjective flow is a base density on the latent space and a sequence
of steps, each mapping data towards the latent and returning ``(output,
log_contribution)``:

* a ``Stack`` of bijective flow layers (coupling, autoregressive, LU), scanned as in
  ``Flow``; contribution ``log|det|``, exact;
* a surjective layer (``Funnel``, ``FunnelConv2d``, ``NoisePadding``, the flowified
  layers), which declares ``in_dim``, ``out_dim`` and ``exact``.

.. math::
  \log p(x) \;=\; \log p_Z(z) + \sum_l c_l(x_{l-1})

holds exactly when every step is exact (bijections and inference surjections); with a
stochastic step (noise padding, dequantisation, duplication) the same sum with the drawn
noise is an unbiased estimate of a lower bound on ``log p(x)`` (an ELBO), and the flow
reports ``exact = False``. Sampling runs the steps backwards, drawing the coordinates
that funnels dropped from their decoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_in
from jaxgen._checks import check_positive
from jaxgen.flows.coupling import CouplingLayer
from jaxgen.flows.flow import Flow
from jaxgen.flows.flow import Params
from jaxgen.flows.flow import Stack
from jaxgen.flows.permutation import reverse_permutation
from jaxgen.flows.surjective.funnels import coupling_funnel
from jaxgen.flows.surjective.funnels import linear_funnel
from jaxgen.flows.surjective.funnels import slice_funnel
from jaxgen.flows.transformers import make_transformer

FUNNELS = ("coupling", "slice", "linear")


def _is_surjective_layer(step: Any) -> bool:
    return all(hasattr(step, a) for a in ("exact", "in_dim", "out_dim"))


class SurjectiveFlow:
    """A flow of bijective stacks and surjective layers; pure functions of ``params``.

    Args:
      dim: data dimension.
      steps: in the data-to-latent order: ``Stack``s, surjective layers, or bare
        bijective flow layers (each becomes a one-layer ``Stack``).
      base: latent density (default standard normal of the latent dimension), any
        ``distrax.Distribution`` with event shape ``(latent_dim,)``.

    Attributes:
      latent_dim: dimension after the last step.
      exact: whether ``log_prob`` is the exact log-density (every step exact) rather
        than a lower bound.

    Raises:
      ValueError: if consecutive steps disagree on dimensions or the base has the wrong
        event shape.
    """

    def __init__(
        self,
        dim: int,
        steps: Sequence[Any],
        *,
        base: distrax.Distribution | None = None,
    ):
        check_positive("dim", dim)
        if not steps:
            raise ValueError("`steps` must hold at least one layer or stack.")
        d, kinds = dim, []
        for i, step in enumerate(steps):
            if isinstance(step, nn.Module) and not _is_surjective_layer(step):
                step = Stack(step, 1)
            if isinstance(step, Stack):
                layer_dim = getattr(step.layer, "dim", d)
                if layer_dim != d:
                    raise ValueError(f"step {i} (a stack of {type(step.layer).__name__}) has "
                                     f"dim {layer_dim}, but its input has dim {d}.")
                kinds.append(("stack", Flow(d, [step]), d, d))
            elif _is_surjective_layer(step):
                if step.in_dim != d:
                    raise ValueError(f"step {i} ({type(step).__name__}) expects in_dim "
                                     f"{step.in_dim}, but its input has dim {d}.")
                kinds.append(("layer", step, d, step.out_dim))
                d = step.out_dim
            else:
                raise ValueError(f"step {i} must be a Stack, a flow layer or a surjective "
                                 f"layer; got {type(step).__name__}.")
        base = distrax.MultivariateNormalDiag(jnp.zeros(d), jnp.ones(d)) if base is None else base
        if tuple(base.event_shape) != (d,):
            raise ValueError(f"`base` must have event shape ({d},) (the latent dimension); got "
                             f"{tuple(base.event_shape)}.")
        self.dim = dim
        self.latent_dim = d
        self.base = base
        self._steps = tuple(kinds)
        self.exact = all(kind == "stack" or step.exact for kind, step, _, _ in kinds)

    def init(self, key: jax.Array) -> Params:
        """Initial parameters ``{"steps": (...)}`` (one compiled call)."""
        return jax.jit(self._init)(key)

    def _init(self, key: jax.Array) -> Params:
        params = []
        for (kind, step, d_in, _), k in zip(self._steps, jax.random.split(key, len(self._steps)),
                                            strict=True):
            if kind == "stack":
                params.append(step.init(k))
            else:
                params.append(step.init(k, jnp.zeros((1, d_in))))
        return {"steps": tuple(params)}

    def validate(self, name: str, x: jax.Array, width: int | None = None) -> None:
        """Raises ``ValueError`` unless ``x`` is a finite ``(n, width)`` array (default ``dim``)."""
        check_array(name, x, ndim=2, last_dim=self.dim if width is None else width)

    def inverse(
        self, params: Params, x: jax.Array, key: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Data ``x`` ``(n, dim)`` to latent ``z`` ``(n, latent_dim)`` and the summed contributions.

        Args:
          params: flow parameters.
          x: events ``(n, dim)``.
          key: PRNG key for stochastic steps; required unless ``exact``.

        Returns:
          ``(z, contribution)``; ``contribution`` has shape ``(n,)``.
        """
        self.validate("x", x)
        if key is None and not self.exact:
            raise ValueError("`key` is needed: this flow has stochastic steps "
                             "(noise padding, dequantisation) and log_prob is a bound.")
        keys = jax.random.split(key if key is not None else jax.random.key(0), len(self._steps))
        total = jnp.zeros(x.shape[:-1], x.dtype)
        for (kind, step, _, _), p, k in zip(self._steps, params["steps"], keys, strict=True):
            if kind == "stack":
                x, c = step.inverse(p, x)
            else:
                x, c = step.apply(p, x, k, method=step.inverse)
            total = total + c
        return x, total

    def forward(
        self, params: Params, z: jax.Array, key: jax.Array | None = None, mean: bool = False
    ) -> jax.Array:
        """Latent ``z`` ``(n, latent_dim)`` to data ``(n, dim)``.

        Args:
          params: flow parameters.
          z: latent points ``(n, latent_dim)``.
          key: PRNG key for the dropped coordinates (unused with ``mean=True``).
          mean: use each decoder's mean instead of sampling the dropped coordinates.
        """
        self.validate("z", z, self.latent_dim)
        if key is None and not mean:
            raise ValueError("`key` is needed to sample dropped coordinates (or mean=True).")
        keys = jax.random.split(key if key is not None else jax.random.key(0), len(self._steps))
        for i in reversed(range(len(self._steps))):
            kind, step, _, _ = self._steps[i]
            if kind == "stack":
                z, _ = step.forward(params["steps"][i], z)
            else:
                z = step.apply(params["steps"][i], z, keys[i], mean, method=step.forward)
        return z

    def log_prob(self, params: Params, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """``log p(x)`` ``(n,)``: exact if ``self.exact``, else a one-draw lower-bound estimate.

        Args:
          params: flow parameters.
          x: events ``(n, dim)``.
          key: PRNG key for stochastic steps (required unless ``exact``); average over
            several keys for a lower-variance estimate of the bound.
        """
        z, contribution = self.inverse(params, x, key)
        return self.base.log_prob(z) + contribution

    def nll(self, params: Params, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Per-event negative log-likelihood (or its upper bound) ``(n,)``: a ``fit`` loss."""
        return -self.log_prob(params, x, key)

    def sample(self, params: Params, key: jax.Array, n: int, mean: bool = False) -> jax.Array:
        """Draws ``n`` events ``(n, dim)`` (``mean``: decoder means for dropped coordinates)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"`n` must be a positive number of samples; got {n!r}.")
        k_base, k_steps = jax.random.split(key)
        z = self.base.sample(seed=k_base, sample_shape=(n,))
        return self.forward(params, z, k_steps, mean)


def funnel_flow(
    key: jax.Array,
    *,
    dim: int,
    latent_dims: Sequence[int],
    layers_per_level: int = 4,
    final_layers: int | None = None,
    funnel: str = "coupling",
    decoder: str = "gaussian",
    transformer: str = "rqs",
    num_bins: int = 8,
    tail_bound: float = 5.0,
    hidden: Sequence[int] = (128, 128),
    decoder_hidden: Sequence[int] = (128, 128, 128),
    decoder_layers: int = 2,
    base: distrax.Distribution | None = None,
) -> tuple[SurjectiveFlow, Params]:
    """A multi-level funnel flow: coupling layers, a funnel, coupling layers, a funnel, ...

    References: Klein, Raine, Pina-Otey, Voloshynovskiy, Golling, "Funnels: Exact maximum
    likelihood with dimensionality reduction", arXiv:2112.08069.

    At each level of dimension ``d >= 2`` a scanned stack of ``layers_per_level`` split
    coupling layers (reverse permutations, identity start) is followed by a funnel to the
    next entry of ``latent_dims``; after the last funnel ``final_layers`` more coupling
    layers act on the latent dimension (if it is >= 2).

    Args:
      key: PRNG key for the parameters.
      dim: data dimension.
      latent_dims: strictly decreasing dimensions after each funnel, all ``< dim``.
      layers_per_level: coupling layers before each funnel.
      final_layers: coupling layers after the last funnel (default ``layers_per_level``).
      funnel: ``"coupling"``, ``"slice"`` or ``"linear"`` (F-MLP).
      decoder: ``"gaussian"`` or ``"flow"`` density of the dropped coordinates.
      transformer: ``"rqs"`` or ``"affine"`` for the coupling layers and coupling funnels.
      num_bins: spline bins.
      tail_bound: spline interval half-width.
      hidden: conditioner hidden sizes.
      decoder_hidden: decoder network hidden sizes.
      decoder_layers: flow layers of a ``"flow"`` decoder.
      base: latent density (default standard normal).

    Returns:
      ``(flow, params)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.flows import funnel_flow
      >>> flow, params = funnel_flow(jax.random.key(0), dim=4, latent_dims=(2,),
      ...                            layers_per_level=1, hidden=(8,), decoder_hidden=(8,))
      >>> flow.log_prob(params, jnp.zeros((3, 4))).shape    # exact likelihood through a funnel
      (3,)
    """
    check_positive("dim", dim)
    check_in("funnel", funnel, FUNNELS)
    check_positive("layers_per_level", layers_per_level, allow_zero=True)
    final_layers = layers_per_level if final_layers is None else final_layers
    check_positive("final_layers", final_layers, allow_zero=True)
    dims = [dim, *latent_dims]
    if not latent_dims or any(b >= a or b < 1 for a, b in zip(dims[:-1], dims[1:], strict=True)):
        raise ValueError(f"`latent_dims` must be non-empty, strictly decreasing, >= 1 and below "
                         f"`dim`={dim}; got {tuple(latent_dims)}.")
    trans = make_transformer(transformer, num_bins=num_bins, tail_bound=tail_bound)

    def stack(d, num):
        perms = reverse_permutation(d)[None].repeat(num, axis=0)
        return Stack(CouplingLayer(d, trans, tuple(hidden)), num, perms)

    dec = dict(decoder=decoder, decoder_hidden=tuple(decoder_hidden),
               decoder_layers=decoder_layers, num_bins=num_bins, tail_bound=tail_bound)
    steps: list[Any] = []
    for d, d_next in zip(dims[:-1], dims[1:], strict=True):
        if d >= 2 and layers_per_level > 0:
            steps.append(stack(d, layers_per_level))
        if funnel == "coupling":
            steps.append(coupling_funnel(d, d - d_next, transformer=transformer,
                                         hidden=tuple(hidden), **dec))
        elif funnel == "linear":
            steps.append(linear_funnel(d, d - d_next, **dec))
        else:
            steps.append(slice_funnel(d, d - d_next, **dec))
    if dims[-1] >= 2 and final_layers > 0:
        steps.append(stack(dims[-1], final_layers))
    flow = SurjectiveFlow(dim, steps, base=base)
    return flow, flow.init(key)
