r"""SALAD and SA-CWoLa: simulation-assisted resonant anomaly detection.

Benkendorfer, Le Pottier, Nachman, "Simulation-Assisted Decorrelation for Resonant
Anomaly Detection", PRD 104 (2021) 035003, arXiv:2009.02205; SALAD from Andreassen,
Nachman, Shih, "Simulation Assisted Likelihood-free Anomaly Detection", PRD 101 (2020)
095004, arXiv:2001.05001.

When the features ``x`` depend on ``mjj``, CWoLa hunting (``jaxgen.methods.cwola``)
learns ``mjj`` through them and sculpts a fake bump. Both methods here use a background
simulation to remove that sensitivity.

**SALAD.** In the sidebands a parametrised classifier ``f(x, mjj)`` separates data (1)
from simulation (0) (balanced classes), so

.. math::
   w(x, m_{jj}) = \frac{f}{1-f} \approx \frac{p_\mathrm{data}(x, m_{jj})}
       {p_\mathrm{sim}(x, m_{jj})}

reweights simulation to data. Evaluated at the SR values of ``mjj`` (interpolation
between the two sidebands) it turns the SR simulation into a model of the SR
background. A second classifier, SR data (1) vs weighted SR simulation (0), trained
k-fold, is the tagger: its output is monotonic in ``1 + (S/B) p_S/p_B``.

**SA-CWoLa.** The CWoLa loss on data minus ``lambda`` times the same loss on simulation,

.. math::
   L[f] = L_\mathrm{CWoLa}[f; \mathrm{data}] - \lambda\, L_\mathrm{CWoLa}[f; \mathrm{sim}],

penalises what separates SR from SB in the (signal-free) simulation, i.e. the ``mjj``
dependence of the background. Each term is the class-weighted mean BCE of
``jaxgen.methods.cwola.cwola_loss``. It is trained through the engine as one weighted BCE
with negative weights on the simulated events (data weights normalised to total ``C``,
simulation weights to ``-lambda C``); the engine divides by the mean weight, which
rescales the loss by ``1/(1 - lambda)`` without moving its minimum. We require
``0 <= lambda < 1``: for ``lambda >= 1`` the penalty outweighs the data term wherever
simulation resembles data and the objective is unbounded below.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.classifiers import Classifier
from jaxgen.classifiers import likelihood_ratio_weights
from jaxgen.classifiers import parametrized_inputs
from jaxgen.classifiers import parametrized_logits
from jaxgen.classifiers import train_classifier
from jaxgen.methods.anomaly_baselines import balanced_weights
from jaxgen.methods.cwola import HIGH_SB
from jaxgen.methods.cwola import LOW_SB
from jaxgen.methods.cwola import SR
from jaxgen.methods.cwola import KFoldResult
from jaxgen.methods.cwola import _check_folds
from jaxgen.methods.cwola import _cwola_weights
from jaxgen.methods.cwola import _folds_or_default
from jaxgen.methods.cwola import _score_kfold
from jaxgen.methods.cwola import check_features
from jaxgen.methods.cwola import check_region
from jaxgen.methods.cwola import cwola_loss
from jaxgen.methods.cwola import train_kfold
from jaxgen.train import FitConfig


def _check_mjj(name: str, mjj, n: int) -> jax.Array:
    m = jnp.asarray(mjj, jnp.float32)
    if m.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},); got {m.shape}.")
    if not bool(jnp.all(jnp.isfinite(m))):
        raise ValueError(f"`{name}` contains NaN or inf values.")
    return m


# --------------------------------------------------------------------------- SA-CWoLa


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not 0.0 <= lam < 1.0:
        raise ValueError(
            f"`lam` must satisfy 0 <= lam < 1 (for lam >= 1 the simulation penalty makes "
            f"the loss unbounded below); got {lam!r}."
        )
    return lam


@functools.partial(jax.jit, static_argnums=(4,))
def _sa_weights(region_d, region_s, mask_d, mask_s, lam):
    wd = _cwola_weights(region_d, mask_d)
    ws = _cwola_weights(region_s, mask_s)
    total = jnp.sum(wd)
    return wd, -lam * ws * total / jnp.sum(ws)


def sa_cwola_weights(
    region_data: jax.typing.ArrayLike,
    region_sim: jax.typing.ArrayLike,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Event weights that make one weighted BCE the SA-CWoLa loss (arXiv:2009.02205).

    Data get the CWoLa class weights (total ``C``); simulation its own CWoLa class
    weights rescaled to total ``-lam * C``.

    Returns:
      ``(w_data (n_data,), w_sim (n_sim,))``.

    Example:
      >>> import jax.numpy as jnp
      >>> wd, ws = sa_cwola_weights(jnp.array([1, 2, 3]), jnp.array([1, 2, 3]), 0.5)
      >>> float(ws.sum() / wd.sum())
      -0.5
    """
    lam = _check_lam(lam)
    rd = jnp.asarray(region_data)
    rs = jnp.asarray(region_sim)
    rd = check_region("region_data", rd, rd.shape[0] if rd.ndim else -1)
    rs = check_region("region_sim", rs, rs.shape[0] if rs.ndim else -1)
    return _sa_weights(rd, rs, jnp.ones(rd.shape, bool), jnp.ones(rs.shape, bool), lam)


def sa_cwola_loss(
    logits_data: jax.typing.ArrayLike,
    region_data: jax.typing.ArrayLike,
    logits_sim: jax.typing.ArrayLike,
    region_sim: jax.typing.ArrayLike,
    lam: float,
) -> jax.Array:
    """SA-CWoLa loss: ``cwola_loss(data) - lam * cwola_loss(sim)`` (arXiv:2009.02205).

    Example:
      >>> import jax.numpy as jnp
      >>> r = jnp.array([1, 2, 2, 3])
      >>> l0 = sa_cwola_loss(jnp.ones(4), r, jnp.zeros(4), r, 0.0)
      >>> bool(l0 == cwola_loss(jnp.ones(4), r))
      True
    """
    lam = _check_lam(lam)
    return cwola_loss(logits_data, region_data) - lam * cwola_loss(logits_sim, region_sim)


def sa_cwola_hunt(
    key: jax.Array,
    x_data: jax.typing.ArrayLike,
    region_data: jax.typing.ArrayLike,
    x_sim: jax.typing.ArrayLike,
    region_sim: jax.typing.ArrayLike,
    *,
    lam: float = 0.5,
    n_folds: int = 5,
    n_members: int = 10,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
) -> KFoldResult:
    """SA-CWoLa (arXiv:2009.02205): CWoLa on data minus ``lam`` x CWoLa on simulation.

    Data events are split into ``n_folds`` folds and scored out of fold; every member
    trains on all simulated events (they are never scored).

    Args:
      key: PRNG key.
      x_data: ``(n, d)`` data features; ``region_data`` ``(n,)`` their regions 0..3.
      region_data: see ``x_data``.
      x_sim: ``(m, d)`` simulated background features; ``region_sim`` ``(m,)``.
      region_sim: see ``x_sim``.
      lam: penalty strength, ``0 <= lam < 1``; ``lam = 0`` is CWoLa hunting.
      n_folds: folds of the data.
      n_members: members per fold.
      model: classifier (default ``jaxgen.methods.cwola.cwola_network()``).
      config: training settings (default ``CWOLA_FIT_CONFIG``).

    Returns:
      ``KFoldResult`` with out-of-fold scores of the ``n`` data events.

    Example:
      >>> import jax
      >>> from jaxgen.methods.cwola import cwola_network
      >>> from jaxgen.train import FitConfig
      >>> ks = jax.random.split(jax.random.key(0), 5)
      >>> xd, xs = jax.random.normal(ks[0], (200, 2)), jax.random.normal(ks[1], (200, 2))
      >>> rd, rs = (jax.random.randint(k, (200,), 0, 4) for k in ks[2:4])
      >>> res = sa_cwola_hunt(ks[4], xd, rd, xs, rs, lam=0.5, n_folds=2, n_members=3,
      ...                     model=cwola_network((8,), dropout=0.0),
      ...                     config=FitConfig(epochs=2, batch_size=100, progress=False))
      >>> res.scores.shape
      (200,)
    """
    lam = _check_lam(lam)
    _check_folds(n_folds, n_members)
    xd = check_features("x_data", x_data)
    xs = check_features("x_sim", x_sim, num_features=xd.shape[1])
    rd = check_region("region_data", region_data, xd.shape[0])
    rs = check_region("region_sim", region_sim, xs.shape[0])
    nd = xd.shape[0]
    key_folds, key_train = jax.random.split(key)
    folds_d = _folds_or_default(None, key_folds, nd, n_folds)
    folds = jnp.concatenate([folds_d, jnp.full((xs.shape[0],), -1, jnp.int32)])
    y = jnp.concatenate([rd == SR, rs == SR]).astype(jnp.float32)

    def weight_fn(mask):
        wd, ws = _sa_weights(rd, rs, mask[:nd], mask[nd:], lam)
        return jnp.concatenate([wd, ws])

    clf, mf, result = train_kfold(
        key_train,
        jnp.concatenate([xd, xs]),
        y,
        weight_fn,
        folds,
        n_folds=n_folds,
        n_members=n_members,
        model=model,
        config=config,
    )
    return KFoldResult(_score_kfold(clf, xd, folds_d, n_members), folds_d, clf, mf, result)


# --------------------------------------------------------------------------- SALAD


class SaladResult(NamedTuple):
    """What ``salad_hunt`` returns.

    Attributes:
      tagger: the SR classifier's ``KFoldResult``; ``scores`` are out-of-fold scores of
        all data events (SR events were trained on by the other folds' members only).
      sim_weights: ``(m,)`` SALAD weights ``f/(1-f)`` of every simulated event at its
        own ``mjj`` (those in the SR are the interpolation).
      reweighter: the parametrised sideband classifier ``f(x, mjj)``.
    """

    tagger: KFoldResult
    sim_weights: jax.Array
    reweighter: Classifier


def train_salad_reweighter(
    key: jax.Array,
    x_data: jax.typing.ArrayLike,
    mjj_data: jax.typing.ArrayLike,
    region_data: jax.typing.ArrayLike,
    x_sim: jax.typing.ArrayLike,
    mjj_sim: jax.typing.ArrayLike,
    region_sim: jax.typing.ArrayLike,
    *,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
    ensemble_size: int | None = None,
) -> Classifier:
    """SALAD step 1 (arXiv:2001.05001): ``f(x, mjj)``, data (1) vs sim (0) in the sidebands.

    Trained with ``jaxgen.classifiers.train_classifier`` (balanced classes) on the
    inputs ``(x, mjj)`` of the sideband events (regions 1 and 3).

    Args:
      key: PRNG key.
      x_data: ``(n, d)`` data features; ``mjj_data`` ``(n,)``; ``region_data`` ``(n,)``.
      mjj_data: see ``x_data``.
      region_data: see ``x_data``.
      x_sim: ``(m, d)`` simulation; ``mjj_sim`` ``(m,)``; ``region_sim`` ``(m,)``.
      mjj_sim: see ``x_sim``.
      region_sim: see ``x_sim``.
      model: classifier module (default ``jaxgen.classifiers.mlp_classifier()``).
      config: training settings (default ``jaxgen.classifiers.DEFAULT_FIT_CONFIG``).
      ensemble_size: train this many members at once (weights are their mean).

    Returns:
      The parametrised ``Classifier`` on inputs ``(d + 1)``.

    Raises:
      ValueError: for wrong shapes or feature counts, NaN, bad regions, or no sideband
        events in data or simulation.

    Example:
      Data and simulation differ by a shift of 0.5 in the sidebands; the weights carry the
      simulation towards the data:

      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.methods.salad import salad_weights, train_salad_reweighter
      >>> from jaxgen.train import FitConfig
      >>> k = jax.random.split(jax.random.key(0), 4)
      >>> x_sim = jax.random.normal(k[0], (2000, 1))
      >>> x_data = 0.5 + jax.random.normal(k[1], (2000, 1))
      >>> mjj = jax.random.uniform(k[2], (2000,), minval=3.1, maxval=3.9)
      >>> region = jnp.where(mjj < 3.3, 1, jnp.where(mjj < 3.7, 2, 3))
      >>> f = train_salad_reweighter(k[3], x_data, mjj, region, x_sim, mjj, region,
      ...                            config=FitConfig(epochs=5, batch_size=256, progress=False))
      >>> w = salad_weights(f, x_sim, mjj)
      >>> bool(jnp.sum(w * x_sim[:, 0]) / jnp.sum(w) > 0.25)     # reweighted mean moves to 0.5
      True
    """
    xd = check_features("x_data", x_data)
    xs = check_features("x_sim", x_sim, num_features=xd.shape[1])
    md = _check_mjj("mjj_data", mjj_data, xd.shape[0])
    ms = _check_mjj("mjj_sim", mjj_sim, xs.shape[0])
    rd = check_region("region_data", region_data, xd.shape[0], need_sr=False)
    rs = check_region("region_sim", region_sim, xs.shape[0], need_sr=False)
    sb_d = (rd == LOW_SB) | (rd == HIGH_SB)
    sb_s = (rs == LOW_SB) | (rs == HIGH_SB)
    if not bool(jnp.any(sb_d)):
        raise ValueError("`region_data` has no sideband events (1 or 3).")
    if not bool(jnp.any(sb_s)):
        raise ValueError("`region_sim` has no sideband events (1 or 3).")
    x0 = parametrized_inputs(xs[sb_s], ms[sb_s][:, None])
    x1 = parametrized_inputs(xd[sb_d], md[sb_d][:, None])
    clf, _ = train_classifier(
        key, x0, x1, model=model, config=config, ensemble_size=ensemble_size
    )
    return clf


def salad_weights(
    reweighter: Classifier, x: jax.typing.ArrayLike, mjj: jax.typing.ArrayLike
) -> jax.Array:
    """SALAD weights ``w(x, mjj) = f/(1-f)`` (mean over members for an ensemble).

    Args:
      reweighter: from ``train_salad_reweighter``.
      x: ``(n, d)`` simulated events; ``mjj`` ``(n,)`` their dijet masses.
      mjj: see ``x``.

    Returns:
      ``(n,)`` weights, not normalised (their SB mean is about one by construction).
    """
    x = check_features("x", x)
    m = _check_mjj("mjj", mjj, x.shape[0])
    w = likelihood_ratio_weights(
        parametrized_logits(reweighter, x, m[:, None]), normalize=False
    )
    return jnp.mean(w, axis=0) if reweighter.ensemble else w


def salad_hunt(
    key: jax.Array,
    x_data: jax.typing.ArrayLike,
    mjj_data: jax.typing.ArrayLike,
    region_data: jax.typing.ArrayLike,
    x_sim: jax.typing.ArrayLike,
    mjj_sim: jax.typing.ArrayLike,
    region_sim: jax.typing.ArrayLike,
    *,
    n_folds: int = 5,
    n_members: int = 10,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
    reweighter_model: nn.Module | None = None,
    reweighter_config: FitConfig | None = None,
) -> SaladResult:
    """SALAD (arXiv:2001.05001, 2009.02205): SR data vs SALAD-weighted SR simulation.

    Args:
      key: PRNG key.
      x_data: ``(n, d)`` data; ``mjj_data`` ``(n,)``; ``region_data`` ``(n,)`` ints 0..3.
      mjj_data: see ``x_data``.
      region_data: see ``x_data``.
      x_sim: ``(m, d)`` simulated background; ``mjj_sim``, ``region_sim`` ``(m,)``.
      mjj_sim: see ``x_sim``.
      region_sim: see ``x_sim``.
      n_folds: folds of the data; every data event is scored out of fold.
      n_members: SR-classifier members per fold.
      model: SR classifier module (default ``jaxgen.methods.cwola.cwola_network()``).
      config: SR classifier training (default ``CWOLA_FIT_CONFIG``).
      reweighter_model: sideband classifier ``f(x, mjj)`` (default ``mlp_classifier()``).
      reweighter_config: its training (default ``DEFAULT_FIT_CONFIG``).

    Returns:
      ``SaladResult``.

    Raises:
      ValueError: for wrong shapes or feature counts, NaN, bad regions, an empty SR in
        data or simulation, or no sidebands.

    Example:
      >>> import jax
      >>> from jaxgen.methods.cwola import cwola_network
      >>> from jaxgen.train import FitConfig
      >>> ks = jax.random.split(jax.random.key(0), 5)
      >>> xd, xs = jax.random.normal(ks[0], (200, 2)), jax.random.normal(ks[1], (200, 2))
      >>> md, ms = (jax.random.uniform(k, (200,), minval=3.1, maxval=3.9) for k in ks[2:4])
      >>> region = lambda m: 1 + (m > 3.3) + (m > 3.7)
      >>> cfg = FitConfig(epochs=2, batch_size=100, progress=False)
      >>> res = salad_hunt(ks[4], xd, md, region(md), xs, ms, region(ms), n_folds=2,
      ...                  n_members=3, model=cwola_network((8,), dropout=0.0), config=cfg,
      ...                  reweighter_config=cfg)
      >>> res.tagger.scores.shape, res.sim_weights.shape
      ((200,), (200,))
    """
    _check_folds(n_folds, n_members)
    xd = check_features("x_data", x_data)
    xs = check_features("x_sim", x_sim, num_features=xd.shape[1])
    md = _check_mjj("mjj_data", mjj_data, xd.shape[0])
    ms = _check_mjj("mjj_sim", mjj_sim, xs.shape[0])
    rd = check_region("region_data", region_data, xd.shape[0])
    rs = check_region("region_sim", region_sim, xs.shape[0])
    k_rw, k_folds, k_train = jax.random.split(key, 3)
    reweighter = train_salad_reweighter(
        k_rw, xd, md, rd, xs, ms, rs, model=reweighter_model, config=reweighter_config
    )
    w_sim = salad_weights(reweighter, xs, ms)
    nd = xd.shape[0]
    folds_d = _folds_or_default(None, k_folds, nd, n_folds)
    folds = jnp.concatenate([folds_d, jnp.full((xs.shape[0],), -1, jnp.int32)])
    y = jnp.concatenate([jnp.ones(nd), jnp.zeros(xs.shape[0])])
    base = jnp.concatenate([(rd == SR).astype(jnp.float32), jnp.where(rs == SR, w_sim, 0.0)])
    clf, mf, result = train_kfold(
        k_train,
        jnp.concatenate([xd, xs]),
        y,
        functools.partial(balanced_weights, y, base),
        folds,
        n_folds=n_folds,
        n_members=n_members,
        model=model,
        config=config,
    )
    tagger = KFoldResult(_score_kfold(clf, xd, folds_d, n_members), folds_d, clf, mf, result)
    return SaladResult(tagger, w_sim, reweighter)
