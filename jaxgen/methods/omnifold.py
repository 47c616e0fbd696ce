r"""OmniFold: unbinned, multi-dimensional unfolding by iterated classifier reweighting.

Andreassen, Komiske, Metodiev, Nachman, Thaler, "OmniFold: A Method to Simultaneously
Unfold All Observables", PRL 124 (2020) 182001, arXiv:1911.09107.

Simulation provides pairs ``(gen_i, sim_i)`` with MC weights ``w_i``; data provide
detector-level events. With ``nu_0 = 1``, iteration ``n`` does

.. math::
   \omega_n(\mathrm{sim}) = \nu_{n-1}(\mathrm{gen})\,
       \frac{p_\mathrm{data}(\mathrm{sim})}{p_{\nu_{n-1} w}(\mathrm{sim})}
   \quad\text{(step 1, pull)}, \qquad
   \nu_n(\mathrm{gen}) = \frac{p_{\omega_n w}(\mathrm{gen})}{p_{w}(\mathrm{gen})}
   \quad\text{(step 2, push)},

each ratio learned by a classifier. The ratios are absolute (the classifier's
normalised-density ratio times the ratio of the two classes' total weights), so the
unfolded total tracks the data total. Events without a partner at one level are treated
by two options.

Events failing reconstruction (``missing``):

- ``"average"`` (default; step 1b of ``hep-lbdl/OmniFold``): ``omega = E[omega | gen]``,
  the mean pull weight of reconstructed events with the same generator-level value,
  learned by a third classifier at generator level. With exact binned ratios this is
  IBU's efficiency correction (division by ``epsilon``).
- ``"prior"`` (the pip package ``omnifold`` 0.1.36): they keep the push weight
  (``omega = nu_{n-1}``). Cheaper, but an inefficient region of phase space then
  converges only as fast as its efficiency allows.

Fakes, events passing reconstruction but not generation (``fakes``):

- ``"subtract"`` (default): the simulated fakes are a background known from the MC:
  they are subtracted from the data with negative weights in step 1 (as a background,
  see ``background_subtracted_data``; ``mc_weights`` must then be normalised to the
  data's luminosity) and keep ``nu = 1``. With exact binned ratios
  each iteration then equals IBU on the fake-subtracted data, with efficiencies.
- ``"prior"`` (the pip package): fakes stay in step 1's simulation with ``nu = 1``; the
  same fixed point, but per iteration the fakes dilute the pull ratio
  ``(signal + fakes)_data / (signal + fakes)_MC`` towards 1, so it lags IBU.
- ``"average"`` (step 2b of ``hep-lbdl/OmniFold``): ``nu = E[nu | sim]`` over matched
  events, learned at detector level: the fake rate scales with the unfolded signal.
  Biased when the MC predicts the fakes in data (on the Gaussian example with 10% fakes
  the unfolded mean stalls at 0.179 instead of IBU's 0.199 with exact ratios).

Data weights may be negative (a background sample
subtracted from data). The unfolded generator-level distribution after iteration ``n``
is ``gen`` weighted by ``w * nu_n``. With one binned observable and exact ratios, each
iteration is one iteration of Iterative Bayesian Unfolding (``jaxgen.methods.ibu``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen._checks import check_positive
from jaxgen.classifiers.classifier import DEFAULT_FIT_CONFIG
from jaxgen.classifiers.classifier import Classifier
from jaxgen.classifiers.classifier import as_events
from jaxgen.classifiers.classifier import as_numpy_mask
from jaxgen.classifiers.classifier import classifier_logits
from jaxgen.classifiers.classifier import mlp_classifier
from jaxgen.classifiers.classifier import train_classifier
from jaxgen.train import FitConfig
from jaxgen.train import poisson_bootstrap_weights

#: Training settings of the OmniFold Gaussian example (ANCHORS.md): Adam 1e-3, batch
#: 10000, at most 20 epochs, patience 10, 80/20 split.
OMNIFOLD_FIT_CONFIG = dataclasses.replace(DEFAULT_FIT_CONFIG, batch_size=10000)

#: ``ratio(key, x_source, w_source, x_target, w_target, state) -> (ratio, state)``:
#: ``w_*`` are ``(K, n_*)``; ``ratio`` is ``(K, n_source)``, the absolute density
#: ratio ``(weighted target) / (weighted source)`` at the source events; ``state``
#: carries a warm start between iterations (``None`` at the first call).
RatioEstimator = Callable[
    [jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, Any], tuple[jax.Array, Any]
]


class OmniFoldResult(NamedTuple):
    """OmniFold weights for every iteration.

    Attributes:
      pull_weights: ``(n_iterations, K, n_mc)`` step-1 weights ``omega_n`` (multiply the
        MC weights by them for the detector-level fit).
      push_weights: ``(n_iterations, K, n_mc)`` step-2 weights ``nu_n``; the unfolded
        generator-level distribution is ``gen`` weighted by ``mc_weights * nu_n``.
      step1_state: the last step-1 estimator state (classifier), or ``None``.
      step2_state: the last step-2 estimator state, or ``None``.
    """

    pull_weights: jax.Array
    push_weights: jax.Array
    step1_state: Any
    step2_state: Any


def classifier_ratio(
    *,
    model: nn.Module | None = None,
    config: FitConfig = OMNIFOLD_FIT_CONFIG,
    warm_start: bool = True,
    clip: tuple[float, float] | None = None,
    members: int = 1,
) -> RatioEstimator:
    """A neural ratio estimator: a weighted-BCE classifier, K members trained in one vmap.

    With ``members = M > 1`` every OmniFold member's ratio is the average of ``M``
    classifiers trained on the same weighted events (different initialisation and
    shuffling), as the paper's code averages an ensemble per iteration
    (``omnifold`` 0.1.36 ``n_ensemble``); all ``K * M`` networks train in one ``vmap``.

    Args:
      model: logit network; default the papers' 3x50 ReLU MLP.
      config: training settings.
      warm_start: start each iteration from the previous iteration's network.
      clip: optional ``(low, high)`` clipping of the learned ratio (before the absolute
        normalisation).
      members: classifiers averaged per ratio (``M``); their variance from the
        random initialisation and shuffling falls as ``1/M``.

    Returns:
      A ``RatioEstimator`` whose state is the trained ``Classifier``.
    """
    model = mlp_classifier() if model is None else model
    check_positive("members", members)

    def estimate(key, x_src, w_src, x_tgt, w_tgt, state: Classifier | None):
        k = w_src.shape[0] * members
        init = state if (warm_start and state is not None) else None
        # Member j of OmniFold member i is row i * members + j.
        member = jnp.repeat(jnp.concatenate([w_src, w_tgt], axis=-1), members, axis=0)
        clf, _ = train_classifier(
            key,
            x_src,
            x_tgt,
            model=model,
            config=config,
            init=init,
            ensemble_size=k,
            member_weights=member,
            balance=True,
        )
        # Balanced training gives q_tgt/q_src; the absolute ratio carries the totals.
        ratio = jnp.exp(jnp.minimum(classifier_logits(clf, x_src), 80.0))
        if clip is not None:
            ratio = jnp.clip(ratio, clip[0], clip[1])
        ratio = ratio.reshape(w_src.shape[0], members, -1).mean(axis=1)
        totals = jnp.sum(w_tgt, -1, keepdims=True) / jnp.sum(w_src, -1, keepdims=True)
        return ratio * totals, clf

    return estimate


def histogram_ratio(edges: jax.typing.ArrayLike) -> RatioEstimator:
    """The exact ratio estimator of a binned one-dimensional observable.

    For events that only carry a bin index, the best possible classifier outputs the
    ratio of the weighted bin contents; with it OmniFold reproduces IBU exactly.

    Args:
      edges: ``(bins + 1,)`` increasing bin edges; every event must fall inside.

    Returns:
      A stateless ``RatioEstimator`` on ``(n, 1)`` inputs.
    """
    edges = jnp.asarray(edges, jnp.float32)
    nb = edges.shape[0] - 1

    def estimate(key, x_src, w_src, x_tgt, w_tgt, state):
        del key, state
        b_src = jnp.clip(jnp.searchsorted(edges, x_src[:, 0], side="right") - 1, 0, nb - 1)
        b_tgt = jnp.clip(jnp.searchsorted(edges, x_tgt[:, 0], side="right") - 1, 0, nb - 1)
        h_src = jax.vmap(lambda w: jnp.zeros(nb).at[b_src].add(w))(w_src)
        h_tgt = jax.vmap(lambda w: jnp.zeros(nb).at[b_tgt].add(w))(w_tgt)
        r = jnp.where(h_src > 0, h_tgt / jnp.where(h_src > 0, h_src, 1.0), 0.0)
        return r[:, b_src], None

    return estimate


def background_subtracted_data(
    data: jax.typing.ArrayLike,
    background: jax.typing.ArrayLike,
    *,
    data_weights: jax.typing.ArrayLike | None = None,
    background_weights: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Data with a background prediction subtracted through negative weights.

    Args:
      data: ``(n_data, d)`` detector-level data.
      background: ``(n_bkg, d)`` simulated background events.
      data_weights: ``(n_data,)`` (default 1).
      background_weights: ``(n_bkg,)`` weights normalised to the expected number of
        background events in data (default 1 each).

    Returns:
      ``(events, weights)``: ``(n_data + n_bkg, d)`` and ``(n_data + n_bkg,)`` with the
      background weights negated.
    """
    data = as_events("data", data)
    background = as_events("background", background)
    if data.shape[1:] != background.shape[1:]:
        raise ValueError(
            f"`background` must have the per-event shape of `data` {data.shape[1:]}; got "
            f"{background.shape[1:]}."
        )
    wd = jnp.ones(data.shape[0]) if data_weights is None else jnp.asarray(data_weights)
    wb = (
        jnp.ones(background.shape[0])
        if background_weights is None
        else jnp.asarray(background_weights)
    )
    if wd.shape != (data.shape[0],) or wb.shape != (background.shape[0],):
        raise ValueError("`data_weights` / `background_weights` must match their events.")
    return jnp.concatenate([data, background]), jnp.concatenate([wd, -wb]).astype(jnp.float32)


def omnifold(
    key: jax.Array,
    *,
    gen: jax.typing.ArrayLike,
    sim: jax.typing.ArrayLike,
    data: jax.typing.ArrayLike,
    mc_weights: jax.typing.ArrayLike | None = None,
    data_weights: jax.typing.ArrayLike | None = None,
    pass_reco: jax.typing.ArrayLike | None = None,
    pass_gen: jax.typing.ArrayLike | None = None,
    n_iterations: int = 4,
    step1: RatioEstimator | None = None,
    step2: RatioEstimator | None = None,
    ensemble_size: int = 1,
    bootstrap: bool = False,
    missing: str = "average",
    fakes: str = "subtract",
) -> OmniFoldResult:
    """Runs OmniFold (arXiv:1911.09107).

    Args:
      key: PRNG key.
      gen: ``(n_mc, d_gen)`` generator-level MC events (``(n_mc,)`` for one observable);
        entries of events with ``pass_gen`` false are ignored (any finite value).
      sim: ``(n_mc, d_sim)`` their detector-level partners; entries of events with
        ``pass_reco`` false are ignored.
      data: ``(n_data, d_sim)`` detector-level data (optionally with background MC
        appended, see ``background_subtracted_data``).
      mc_weights: ``(n_mc,)`` MC weights (default 1).
      data_weights: ``(n_data,)`` data weights (default 1); negative allowed.
      pass_reco: ``(n_mc,)`` bool, event passes the detector-level selection.
      pass_gen: ``(n_mc,)`` bool, event passes the generator-level selection; events
        with ``pass_reco & ~pass_gen`` are fakes.
      n_iterations: number of OmniFold iterations.
      step1: detector-level ratio estimator (default ``classifier_ratio()``).
      step2: generator-level ratio estimator (default ``classifier_ratio()``).
      ensemble_size: ``K`` members trained at once with ``vmap``.
      bootstrap: multiply the data weights of each member by Poisson(1) weights, so the
        member spread estimates the statistical uncertainty from the data.
      missing: weights of events failing reconstruction, ``"average"`` or ``"prior"``
        (see the module docstring).
      fakes: treatment of fakes (``pass_reco & ~pass_gen``), ``"subtract"``,
        ``"prior"`` or ``"average"`` (see the module docstring).

    Returns:
      An ``OmniFoldResult`` with per-iteration pull and push weights ``(n_iter, K, n_mc)``.

    Raises:
      ValueError: for inconsistent shapes, non-finite inputs, non-boolean masks, no
        events passing a selection, or non-positive data totals.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.methods.omnifold import histogram_ratio, omnifold, weighted_moments
      >>> k = jax.random.split(jax.random.key(0), 4)
      >>> gen = jax.random.normal(k[0], (20_000, 1))                 # MC truth N(0, 1)
      >>> sim = gen + 0.5 * jax.random.normal(k[1], gen.shape)       # detector smearing 0.5
      >>> truth = 0.3 + jax.random.normal(k[2], (20_000, 1))         # nature: N(0.3, 1)
      >>> data = truth + 0.5 * jax.random.normal(k[3], truth.shape)
      >>> edges = jnp.linspace(-6.0, 6.0, 41)
      >>> result = omnifold(jax.random.key(1), gen=gen, sim=sim, data=data, n_iterations=4,
      ...                   step1=histogram_ratio(edges), step2=histogram_ratio(edges))
      >>> mean, _ = weighted_moments(gen[:, 0], result.push_weights[-1, 0])
      >>> bool(0.2 < mean < 0.4)                                     # moved from 0 to ~0.3
      True
    """
    check_positive("n_iterations", n_iterations)
    check_positive("ensemble_size", ensemble_size)
    if missing not in ("average", "prior"):
        raise ValueError(f"`missing` must be 'average' or 'prior'; got {missing!r}.")
    if fakes not in ("subtract", "prior", "average"):
        raise ValueError(f"`fakes` must be 'subtract', 'prior' or 'average'; got {fakes!r}.")
    gen = as_events("gen", gen)
    sim = as_events("sim", sim)
    data = as_events("data", data)
    n_mc = gen.shape[0]
    if sim.shape[0] != n_mc:
        raise ValueError(f"`sim` must have {n_mc} events like `gen`; got {sim.shape[0]}.")
    if data.shape[1:] != sim.shape[1:]:
        raise ValueError(
            f"`data` must have the per-event shape of `sim` {sim.shape[1:]}; got {data.shape[1:]}."
        )
    w_mc = _weights("mc_weights", mc_weights, n_mc)
    w_data = _weights("data_weights", data_weights, data.shape[0])
    reco = as_numpy_mask("pass_reco", pass_reco, n_mc)
    genm = as_numpy_mask("pass_gen", pass_gen, n_mc)
    if not reco.any():
        raise ValueError("no MC event passes `pass_reco`.")
    if not genm.any():
        raise ValueError("no MC event passes `pass_gen`.")
    if not float(jnp.sum(w_data)) > 0:
        raise ValueError("`data_weights` must have a positive total.")
    step1 = classifier_ratio() if step1 is None else step1
    step2 = classifier_ratio() if step2 is None else step2

    k = ensemble_size
    key_boot, key_iter = jax.random.split(key)
    w_data_k = jnp.broadcast_to(w_data, (k, data.shape[0]))
    if bootstrap:
        w_data_k = w_data_k * poisson_bootstrap_weights(key_boot, k, data.shape[0])
    both = reco & genm
    fake = reco & ~genm
    if fakes == "subtract" and fake.any():
        # The simulated fakes are a background: subtracted from the data, not unfolded.
        fake_idx = np.flatnonzero(fake)
        data = jnp.concatenate([data, sim[fake_idx]])
        w_fake = jnp.broadcast_to(-w_mc[fake_idx], (k, fake_idx.size))
        w_data_k = jnp.concatenate([w_data_k, w_fake], axis=-1)
        if not bool(jnp.all(jnp.sum(w_data_k, -1) > 0)):
            raise ValueError("`data_weights` minus the simulated fakes must have a positive total.")
        reco = both
        if not reco.any():
            raise ValueError("no MC event passes both `pass_reco` and `pass_gen`.")
    reco_idx = np.flatnonzero(reco)
    gen_idx = np.flatnonzero(genm)
    sim_pass, gen_pass = sim[reco_idx], gen[gen_idx]
    w_reco, w_gen = w_mc[reco_idx], w_mc[gen_idx]

    # Events matched at both levels, and the unmatched ones whose weight is averaged.
    no_reco_idx = np.flatnonzero(genm & ~reco) if missing == "average" else None
    fake_idx = np.flatnonzero(fake) if fakes == "average" else None
    in_gen_both = jnp.asarray(both[gen_idx], jnp.float32)
    in_reco_both = jnp.asarray(both[reco_idx], jnp.float32)

    nu = jnp.ones((k, n_mc))
    state1 = state2 = state1b = state2b = None
    pulls, pushes = [], []
    for it in range(n_iterations):
        k1, k1b, k2, k2b = jax.random.split(jax.random.fold_in(key_iter, it), 4)
        # Step 1 (pull): weighted simulation -> data, at detector level.
        r1, state1 = step1(k1, sim_pass, nu[:, reco_idx] * w_reco, data, w_data_k, state1)
        omega = nu.at[:, reco_idx].multiply(r1)
        if no_reco_idx is not None and no_reco_idx.size:
            # Step 1b: omega of unreconstructed events = E[omega | gen] over matched events.
            # Unmatched events enter with zero weight, so the ratio is learned from the
            # matched ones and evaluated at every generated event.
            r1b, state1b = step2(
                k1b,
                gen_pass,
                nu[:, gen_idx] * w_gen * in_gen_both,
                gen_pass,
                omega[:, gen_idx] * w_gen * in_gen_both,
                state1b,
            )
            at = np.searchsorted(gen_idx, no_reco_idx)
            omega = omega.at[:, no_reco_idx].set(nu[:, no_reco_idx] * r1b[:, at])
        # Step 2 (push): MC generator level -> the same events weighted by omega.
        r2, state2 = step2(
            k2,
            gen_pass,
            jnp.broadcast_to(w_gen, (k, gen_idx.size)),
            gen_pass,
            omega[:, gen_idx] * w_gen,
            state2,
        )
        nu = jnp.ones((k, n_mc)).at[:, gen_idx].set(r2)
        if fake_idx is not None and fake_idx.size:
            # Step 2b: nu of fakes = E[nu | sim] over matched events, at detector level.
            r2b, state2b = step1(
                k2b,
                sim_pass,
                jnp.broadcast_to(w_reco * in_reco_both, (k, reco_idx.size)),
                sim_pass,
                nu[:, reco_idx] * w_reco * in_reco_both,
                state2b,
            )
            nu = nu.at[:, fake_idx].set(r2b[:, np.searchsorted(reco_idx, fake_idx)])
        pulls.append(omega)
        pushes.append(nu)
    return OmniFoldResult(jnp.stack(pulls), jnp.stack(pushes), state1, state2)


def _weights(name: str, w, n: int) -> jax.Array:
    if w is None:
        return jnp.ones((n,), jnp.float32)
    w = as_events(name, w)
    if w.shape != (n, 1):
        raise ValueError(f"`{name}` must have shape ({n},); got {np.shape(w)}.")
    return w[:, 0]


def weighted_moments(
    x: jax.typing.ArrayLike, weights: jax.typing.ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Weighted mean and standard deviation along the event axis.

    Args:
      x: ``(n,)`` values.
      weights: ``(..., n)`` weights (leading axes, e.g. iterations and members, kept).

    Returns:
      ``(mean, std)`` of shape ``weights.shape[:-1]``.
    """
    x = jnp.asarray(x, jnp.float32)
    w = jnp.asarray(weights, jnp.float32)
    total = jnp.sum(w, -1)
    mean = jnp.sum(w * x, -1) / total
    var = jnp.sum(w * (x - mean[..., None]) ** 2, -1) / total
    return mean, jnp.sqrt(jnp.maximum(var, 0.0))


def gaussian_ibu_moments(
    *,
    prior_mean: float,
    prior_std: float,
    data_mean: float,
    data_std: float,
    smearing: float,
    n_iterations: int,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Closed-form IBU (= OmniFold with perfect classifiers) for Gaussians.

    Prior truth ``N(m_0, s_0^2)``, data truth ``N(mu_D, sigma_D^2)``, Gaussian smearing
    ``eps``. The IBU update ``p'(t) = p(t) int R(x|t) d(x)/q(x) dx`` keeps the truth
    Gaussian: with the posterior ``p(t|x) = N(m + g (x - m), (1 - g) s^2)`` and gain
    ``g = s^2 / (s^2 + eps^2)``, averaging over ``x ~ N(mu_D, sigma_D^2 + eps^2)`` gives

    .. math::
       m_{k+1} = m_k + g_k (\mu_D - m_k), \qquad
       s^2_{k+1} = (1 - g_k) s_k^2 + g_k^2 (\sigma_D^2 + \epsilon^2)
                 = s_k^2 + g_k^2 (\sigma_D^2 - s_k^2).

    Returns:
      ``(means, stds)``, each ``(n_iterations,)``, after iterations ``1..n``.
    """
    check_positive("prior_std", prior_std)
    check_positive("data_std", data_std)
    check_positive("smearing", smearing)
    check_positive("n_iterations", n_iterations)
    m, s2 = float(prior_mean), float(prior_std) ** 2
    means, stds = [], []
    for _ in range(n_iterations):
        g = s2 / (s2 + smearing**2)
        m = m + g * (data_mean - m)
        s2 = s2 + g**2 * (data_std**2 - s2)
        means.append(m)
        stds.append(np.sqrt(s2))
    return np.array(means), np.array(stds)


def unfolded_histograms(
    x: jax.typing.ArrayLike, weights: jax.typing.ArrayLike, edges: Sequence[float] | jax.Array
) -> jax.Array:
    """Histograms of ``x`` ``(n,)`` for every weight vector in ``weights`` ``(..., n)``."""
    x = jnp.asarray(x, jnp.float32)
    edges = jnp.asarray(edges, jnp.float32)
    w = jnp.asarray(weights, jnp.float32)
    flat = w.reshape(-1, w.shape[-1])
    h = jax.vmap(lambda v: jnp.histogram(x, bins=edges, weights=v)[0])(flat)
    return h.reshape(w.shape[:-1] + (edges.shape[0] - 1,))
