r"""SRGN: Simulation-level fit based on Reweighting Generator-level events with NNs.

Andreassen, Hsu, Nachman, Suaysom, Suresh, "Parameter estimation using neural networks
in the presence of detector effects", PRD 103 (2021) 036001, arXiv:2010.03569.

1. A parametrised DCTR classifier reweights the nominal generator-level sample to any
   theta: ``w(x_G, theta)`` (``jaxgen.methods.dctr.train``).
2. For a candidate ``theta'`` a detector-level classifier ``g`` separates data (label 1)
   from the nominal simulated events (label 0) weighted by their generator-level
   partners' ``w(x_G, theta')``:

   .. math::
      L[g] = -\sum_{\rm data} \log g(x_S) - \sum_{\theta_0} w(x_G, \theta') \log(1 - g(x_S)).

   Its AUC is 1/2 when the reweighted simulation matches data, so
   ``theta_SRGN = argmin_theta' AUC(theta')``. The AUC is not differentiable in theta':
   a gradient-free optimiser (scipy Powell, bounded) does the minimisation, started
   from the best point of a grid scan. Candidates of a scan train together in one
   ``vmap`` (``fit_ensemble`` with per-member weights).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.classifiers.classifier import DEFAULT_FIT_CONFIG
from jaxgen.classifiers.classifier import Classifier
from jaxgen.classifiers.classifier import as_events
from jaxgen.classifiers.classifier import classifier_logits
from jaxgen.classifiers.classifier import mlp_classifier
from jaxgen.classifiers.classifier import train_classifier
from jaxgen.classifiers.parametrized import parametrized_inputs
from jaxgen.metrics.classification import _roc
from jaxgen.train import FitConfig

#: Detector-level classifier settings (smaller than the paper's for CPU budgets).
SRGN_FIT_CONFIG = dataclasses.replace(DEFAULT_FIT_CONFIG, epochs=10, patience=5)


class SRGNFit(NamedTuple):
    """Result of ``fit``.

    Attributes:
      theta: ``(p,)`` the AUC-minimising parameters.
      auc: the AUC at ``theta``.
      scan_thetas: ``(m, p)`` the grid of the initial scan.
      scan_aucs: ``(m,)`` the AUCs of the scan.
      evaluations: number of AUC evaluations made by the optimiser.
    """

    theta: np.ndarray
    auc: float
    scan_thetas: np.ndarray
    scan_aucs: np.ndarray
    evaluations: int


def _gen_weights(reweighter: Classifier, gen: jax.Array, thetas: jax.Array) -> jax.Array:
    def one(theta):
        logits = classifier_logits(reweighter, parametrized_inputs(gen, theta))
        w = jnp.exp(jnp.minimum(logits, 80.0))
        return w / jnp.mean(w)

    return jnp.stack([one(t) for t in thetas])


def auc_scan(
    key: jax.Array,
    reweighter: Classifier,
    thetas: jax.typing.ArrayLike,
    *,
    gen_ref: jax.typing.ArrayLike,
    sim_ref: jax.typing.ArrayLike,
    data: jax.typing.ArrayLike,
    model: nn.Module | None = None,
    config: FitConfig = SRGN_FIT_CONFIG,
    test_fraction: float = 0.5,
) -> jax.Array:
    """AUC of data vs reweighted simulation for each candidate theta (arXiv:2010.03569).

    All candidates train at once: one ``fit_ensemble`` member per theta, differing by
    the event weights ``w(x_G, theta)`` of the simulated events.

    Args:
      key: PRNG key; reuse it across calls for common random numbers.
      reweighter: generator-level parametrised classifier (``dctr.train``), or any
        classifier on inputs ``(d_gen + p)``.
      thetas: ``(m, p)`` candidates (``(m,)`` for one parameter).
      gen_ref: ``(n, d_gen)`` nominal generator-level events.
      sim_ref: ``(n, d_sim)`` their detector-level partners.
      data: ``(n_data, d_sim)`` detector-level data.
      model: detector-level logit network (default 3x50 ReLU MLP).
      config: its training settings.
      test_fraction: fraction of both samples held out to measure the AUC.

    Returns:
      ``(m,)`` weighted AUCs on the held-out events.
    """
    thetas = jnp.asarray(thetas, jnp.float32)
    thetas = thetas[:, None] if thetas.ndim == 1 else thetas
    check_array("thetas", thetas, ndim=2)
    gen_ref = as_events("gen_ref", gen_ref)
    sim_ref = as_events("sim_ref", sim_ref)
    data = as_events("data", data)
    if gen_ref.shape[0] != sim_ref.shape[0]:
        raise ValueError("`gen_ref` and `sim_ref` must have the same number of events.")
    if sim_ref.shape[1:] != data.shape[1:]:
        raise ValueError(
            f"`data` must have the per-event shape of `sim_ref` {sim_ref.shape[1:]}; got "
            f"{data.shape[1:]}."
        )
    if gen_ref.shape[-1] + thetas.shape[-1] != reweighter.shift.shape[-1]:
        raise ValueError(
            f"`thetas` must have {reweighter.shift.shape[-1] - gen_ref.shape[-1]} columns for "
            f"the reweighter; got {thetas.shape[-1]}."
        )
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); got {test_fraction}.")
    w = _gen_weights(reweighter, gen_ref, thetas)
    n_s = int(sim_ref.shape[0] * (1 - test_fraction))
    n_d = int(data.shape[0] * (1 - test_fraction))
    m = thetas.shape[0]
    member = jnp.concatenate([w[:, :n_s], jnp.ones((m, n_d))], axis=-1)
    clf, _ = train_classifier(
        key,
        sim_ref[:n_s],
        data[:n_d],
        model=mlp_classifier() if model is None else model,
        config=config,
        ensemble_size=m,
        member_weights=member,
    )
    scores = jnp.concatenate(
        [classifier_logits(clf, sim_ref[n_s:]), classifier_logits(clf, data[n_d:])], axis=-1
    )
    labels = jnp.concatenate([jnp.zeros(sim_ref.shape[0] - n_s), jnp.ones(data.shape[0] - n_d)])
    weights = jnp.concatenate([w[:, n_s:], jnp.ones((m, data.shape[0] - n_d))], axis=-1)
    fpr, tpr = jax.vmap(_roc, in_axes=(0, None, 0))(scores, labels, weights)
    return jax.vmap(jnp.trapezoid)(tpr, fpr)


def fit(
    key: jax.Array,
    reweighter: Classifier,
    *,
    gen_ref: jax.typing.ArrayLike,
    sim_ref: jax.typing.ArrayLike,
    data: jax.typing.ArrayLike,
    theta_low: jax.typing.ArrayLike,
    theta_high: jax.typing.ArrayLike,
    grid_size: int = 9,
    max_evaluations: int = 20,
    xtol: float = 0.02,
    model: nn.Module | None = None,
    config: FitConfig = SRGN_FIT_CONFIG,
) -> SRGNFit:
    """SRGN fit: minimise the detector-level AUC over theta (arXiv:2010.03569).

    A grid scan (``grid_size^p`` candidates in one vmapped training) picks the start;
    scipy's Powell, bounded to one grid spacing around it, then minimises the AUC, one
    classifier training per evaluation, with a fixed key (common random numbers) so the
    objective is a deterministic function of theta.

    Args:
      key: PRNG key.
      reweighter: generator-level parametrised classifier.
      gen_ref: ``(n, d_gen)`` nominal generator-level events.
      sim_ref: ``(n, d_sim)`` their detector-level partners (use ``gen_ref`` itself
        for a generator-level fit).
      data: ``(n_data, d_sim)`` data.
      theta_low: ``(p,)`` lower bounds.
      theta_high: ``(p,)`` upper bounds.
      grid_size: scan points per parameter.
      max_evaluations: Powell's function-evaluation budget (0: grid only).
      xtol: Powell's tolerance on theta.
      model: detector-level logit network.
      config: its training settings.

    Returns:
      An ``SRGNFit``.
    """
    lo = np.atleast_1d(np.asarray(theta_low, np.float64))
    hi = np.atleast_1d(np.asarray(theta_high, np.float64))
    if lo.shape != hi.shape or lo.ndim != 1 or not np.all(hi > lo):
        raise ValueError("`theta_low` and `theta_high` must be (p,) with low < high.")
    check_positive("grid_size", grid_size)
    check_positive("max_evaluations", max_evaluations, allow_zero=True)
    axes = [np.linspace(lo[j], hi[j], grid_size) for j in range(lo.shape[0])]
    grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], -1)
    kw = dict(gen_ref=gen_ref, sim_ref=sim_ref, data=data, model=model, config=config)
    scan = np.asarray(auc_scan(key, reweighter, grid, **kw))
    best = grid[int(np.argmin(scan))]
    best_auc = float(np.min(scan))
    evaluations = 0
    if max_evaluations > 0:
        cache: dict[tuple, float] = {}

        def objective(theta):
            nonlocal evaluations
            t = tuple(np.round(np.clip(theta, lo, hi), 6))
            if t not in cache:
                evaluations += 1
                cache[t] = float(auc_scan(key, reweighter, np.array([t]), **kw)[0])
            return cache[t]

        # The grid localises the minimum to within one spacing of its best point; Powell's
        # bounded line searches then only cover that neighbourhood.
        spacing = (hi - lo) / max(grid_size - 1, 1)
        local = list(
            zip(np.maximum(lo, best - spacing), np.minimum(hi, best + spacing), strict=True)
        )
        scipy.optimize.minimize(
            objective,
            best,
            method="Powell",
            bounds=local,
            options={"maxfev": max_evaluations, "xtol": xtol},
        )
        # Powell returns its start point when the budget runs out inside the first line
        # search, so the best evaluation is taken from the record of all of them.
        t_min = min(cache, key=cache.get)
        if cache[t_min] < best_auc:
            best, best_auc = np.array(t_min), cache[t_min]
    return SRGNFit(best, best_auc, grid, scan, evaluations)
