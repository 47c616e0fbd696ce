r"""Iterative Bayesian Unfolding, the binned reference for OmniFold.

D'Agostini (1995), Richardson-Lucy; compared with OmniFold in arXiv:1911.09107.

With response ``R[E, C] = P(effect E | cause C)`` (column sums are the efficiencies
``eps_C``), data ``d_E`` and a current estimate ``n_C``, one iteration is

.. math::
   n_C \leftarrow \frac{1}{\epsilon_C} \sum_E d_E
        \frac{R_{EC}\, n_C}{\sum_{C'} R_{EC'}\, n_{C'}},

starting from ``n^0 = (sum_E d_E) * prior``. Conventions follow ``pyunfold``
(``iterative_unfold``): the prior sums to one (uniform by default) and iterations stop
when a test statistic between successive estimates drops below ``ts_stopping``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen._checks import check_array
from jaxgen._checks import check_in
from jaxgen._checks import check_positive

TEST_STATISTICS = ("ks", "chi2", "rmd")


class IBUResult(NamedTuple):
    """Result of ``ibu``.

    Attributes:
      unfolded: ``(n_causes,)`` the estimate at the stopping iteration.
      iterations: ``(max_iter, n_causes)`` the estimate after every iteration ``1..max``.
      test_statistic: ``(max_iter,)`` statistic between iteration ``k`` and ``k - 1``.
      num_iterations: iterations used (the first ``k`` whose statistic is below
        ``ts_stopping``, or ``max_iter``).
    """

    unfolded: jax.Array
    iterations: jax.Array
    test_statistic: jax.Array
    num_iterations: int


def _statistic(kind: str, new: jax.Array, old: jax.Array) -> jax.Array:
    if kind == "ks":
        c1 = jnp.cumsum(new) / jnp.sum(new)
        c2 = jnp.cumsum(old) / jnp.sum(old)
        return jnp.max(jnp.abs(c1 - c2))
    if kind == "chi2":
        s = new + old
        return (
            jnp.sum(jnp.where(s > 0, (new - old) ** 2 / jnp.where(s > 0, s, 1.0), 0.0))
            / (new.shape[0])
        )
    s = jnp.maximum(new + old, 1.0)
    return jnp.max(jnp.abs(new - old) / s)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _iterate(data, response, eff, n0, max_iter, ts):
    def body(n, _):
        folded = response @ n
        ratio = jnp.where(folded > 0, data / jnp.where(folded > 0, folded, 1.0), 0.0)
        new = jnp.where(eff > 0, n * (response.T @ ratio) / jnp.where(eff > 0, eff, 1.0), 0.0)
        return new, (new, _statistic(ts, new, n))

    _, (hist, stats) = jax.lax.scan(body, n0, None, length=max_iter)
    return hist, stats


def ibu(
    data: jax.typing.ArrayLike,
    response: jax.typing.ArrayLike,
    *,
    efficiencies: jax.typing.ArrayLike | None = None,
    prior: jax.typing.ArrayLike | None = None,
    max_iter: int = 100,
    ts: str = "ks",
    ts_stopping: float | None = 0.01,
) -> IBUResult:
    """Iterative Bayesian Unfolding of a binned spectrum.

    Args:
      data: ``(n_effects,)`` observed counts (background already subtracted).
      response: ``(n_effects, n_causes)`` ``P(E|C)``; column sums at most one.
      efficiencies: ``(n_causes,)``; default the column sums of ``response``.
      prior: ``(n_causes,)`` non-negative, summing to one (default uniform).
      max_iter: iterations computed.
      ts: stopping statistic between successive estimates: ``"ks"`` (max CDF
        difference), ``"chi2"`` (per bin) or ``"rmd"`` (max relative difference).
      ts_stopping: stop at the first iteration whose statistic is below this; ``None``
        runs all ``max_iter`` iterations.

    Returns:
      An ``IBUResult`` with every iteration kept.

    Raises:
      ValueError: for wrong shapes, negative or non-finite entries, a prior that does not
        sum to one, or an unknown statistic.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.methods.ibu import ibu
      >>> response = jnp.array([[0.8, 0.2], [0.2, 0.8]])  # P(reco bin | true bin)
      >>> truth = jnp.array([300.0, 100.0])
      >>> result = ibu(response @ truth, response, max_iter=500, ts_stopping=None)
      >>> bool(jnp.allclose(result.unfolded, truth, rtol=1e-3))   # noise-free data: exact
      True
    """
    data = jnp.asarray(data, jnp.float32)
    response = jnp.asarray(response, jnp.float32)
    check_array("data", data, ndim=1)
    check_array("response", response, ndim=2)
    ne, nc = response.shape
    if data.shape[0] != ne:
        raise ValueError(f"`data` must have {ne} bins (rows of `response`); got {data.shape}.")
    if bool(jnp.any(data < 0)):
        raise ValueError("`data` must be non-negative counts (clip a background-subtracted "
                         f"spectrum at 0); got minimum {float(jnp.min(data))}.")
    if bool(jnp.any(response < 0)):
        raise ValueError("`response` must be non-negative.")
    eff = jnp.sum(response, 0) if efficiencies is None else jnp.asarray(efficiencies, jnp.float32)
    check_array("efficiencies", eff, ndim=1)
    if eff.shape != (nc,) or bool(jnp.any(eff < 0)) or bool(jnp.any(eff > 1 + 1e-6)):
        raise ValueError(f"`efficiencies` must be {nc} values in [0, 1]; got {eff}.")
    if prior is None:
        prior = jnp.full((nc,), 1.0 / nc)
    prior = jnp.asarray(prior, jnp.float32)
    check_array("prior", prior, ndim=1)
    if prior.shape != (nc,) or bool(jnp.any(prior < 0)) or abs(float(prior.sum()) - 1) > 1e-4:
        raise ValueError(f"`prior` must be {nc} non-negative values summing to 1.")
    check_positive("max_iter", max_iter)
    check_in("ts", ts, TEST_STATISTICS)
    if ts_stopping is not None:
        check_positive("ts_stopping", ts_stopping)
    n0 = jnp.sum(data) * prior
    hist, stats = _iterate(data, response, eff, n0, int(max_iter), ts)
    if ts_stopping is None:
        k = max_iter
    else:
        below = np.flatnonzero(np.asarray(stats) < ts_stopping)
        k = int(below[0]) + 1 if below.size else max_iter
    return IBUResult(hist[k - 1], hist, stats, k)


def response_matrix(
    gen_bins: jax.typing.ArrayLike,
    reco_bins: jax.typing.ArrayLike,
    n_causes: int,
    n_effects: int,
    *,
    weights: jax.typing.ArrayLike | None = None,
    pass_reco: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Estimates ``P(E|C)`` and the efficiencies from MC bin indices.

    Args:
      gen_bins: ``(n,)`` integer cause bin of each MC event, in ``[0, n_causes)``.
      reco_bins: ``(n,)`` integer effect bin, in ``[0, n_effects)`` where reconstructed.
      n_causes: number of cause bins.
      n_effects: number of effect bins.
      weights: ``(n,)`` MC weights (default 1).
      pass_reco: ``(n,)`` bool; events failing it only lower the efficiency.

    Returns:
      ``(response (n_effects, n_causes), efficiencies (n_causes,), truth (n_causes,))``,
      the last being the weighted MC truth counts (a natural prior after normalising).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.methods.ibu import response_matrix
      >>> gen, reco = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 1, 1])
      >>> response, eff, truth = response_matrix(gen, reco, 2, 2)
      >>> response.tolist(), truth.tolist()
      ([[0.5, 0.0], [0.5, 1.0]], [2.0, 2.0])
    """
    g = jnp.asarray(gen_bins, jnp.int32)
    r = jnp.asarray(reco_bins, jnp.int32)
    check_array("gen_bins", g, ndim=1)
    check_array("reco_bins", r, ndim=1)
    if r.shape != g.shape:
        raise ValueError(f"`reco_bins` must have the shape of `gen_bins` {g.shape}.")
    check_positive("n_causes", n_causes)
    check_positive("n_effects", n_effects)
    w = jnp.ones(g.shape) if weights is None else jnp.asarray(weights, jnp.float32)
    ok = jnp.ones(g.shape, bool) if pass_reco is None else jnp.asarray(pass_reco, bool)
    if bool(jnp.any((g < 0) | (g >= n_causes))):
        raise ValueError(f"`gen_bins` must lie in [0, {n_causes}).")
    if bool(jnp.any(ok & ((r < 0) | (r >= n_effects)))):
        raise ValueError(f"`reco_bins` of reconstructed events must lie in [0, {n_effects}).")
    truth = jnp.zeros(n_causes).at[g].add(w)
    joint = (
        jnp.zeros((n_effects, n_causes))
        .at[jnp.clip(r, 0, n_effects - 1), g]
        .add(jnp.where(ok, w, 0.0))
    )
    response = jnp.where(truth > 0, joint / jnp.where(truth > 0, truth, 1.0), 0.0)
    return response, jnp.sum(response, 0), truth
