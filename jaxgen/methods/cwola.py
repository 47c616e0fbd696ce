r"""CWoLa hunting: weakly supervised resonance search, k-fold ensembles trained in one vmap.

Collins, Howe, Nachman, "Anomaly Detection for Resonant New Physics with Machine
Learning", PRL 121 (2018) 241803, arXiv:1805.02664; Collins, Martín-Ramiro, Nachman,
Shih, "Comparing weak- and unsupervised methods for resonant anomaly detection", EPJC
81 (2021) 617, arXiv:2104.02092.

Classification without labels (CWoLa): for two mixtures of the same signal and
background with different signal fractions, the optimal mixture-1 vs mixture-2
classifier is monotonic in ``p_S/p_B``. CWoLa hunting labels the signal region (SR)
events 1 and the neighbouring sideband (SB) events 0, with the papers' class weights

.. math::
   w_\mathrm{SR} = \frac{N}{2 N_\mathrm{SR}}, \qquad
   w_\mathrm{SB,low} = \frac{N}{4 N_\mathrm{low}}, \qquad
   w_\mathrm{SB,high} = \frac{N}{4 N_\mathrm{high}}, \qquad
   N = N_\mathrm{SR} + N_\mathrm{low} + N_\mathrm{high},

so SR and SB carry equal total weight and so do the two sidebands. The events are split
into ``n_folds`` folds; every fold has its own ensemble of ``n_members`` classifiers
trained on the other folds, and each event is scored by the ensemble of its own fold
only (out of fold). All ``n_folds * n_members`` models are trained in one ``vmap``
through ``jaxgen.train.fit_ensemble``: member ``k`` belongs to fold ``k // n_members``
and sees its fold with weight zero (for training and validation). Events are then
selected at fixed efficiencies (10 %, 1 %, 0.2 %) for the bump hunt.

Region encoding (shared with ``jaxgen.data``): 0 = outside, 1 = low sideband, 2 = signal
region, 3 = high sideband. Outside events are never trained on but are scored.

Choices where the papers leave room: the validation set is the engine's random
``val_fraction`` split (shared by all members; each member ignores its own fold in it)
instead of the nested validation folds of 2104.02092, and a fold's ensemble score is
the mean of its members' probabilities (2104.02092 keeps the best member on
validation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.classifiers import Classifier
from jaxgen.classifiers import bce_with_logits
from jaxgen.classifiers import classifier_logits
from jaxgen.train import FitConfig
from jaxgen.train import FitResult
from jaxgen.train import fit_ensemble

OUTSIDE, LOW_SB, SR, HIGH_SB = 0, 1, 2, 3

#: The selection efficiencies of the CWoLa-hunting papers.
CWOLA_EFFICIENCIES = (0.1, 0.01, 0.002)

#: Training settings of 2104.02092 (batch 20 480, up to 700 epochs, patience 300). The
#: optimizer (Adam with beta1 0.8, beta2 0.99, inverse-time decay 5e-4) comes from
#: ``cwola_optimizer``; ``learning_rate`` is its peak.
CWOLA_FIT_CONFIG = FitConfig(
    epochs=700,
    batch_size=20480,
    learning_rate=1e-3,
    schedule="constant",
    clip_norm=None,
    val_fraction=0.2,
    patience=300,
    progress=False,
)


class CWoLaNet(nn.Module):
    """The classifier of 2104.02092: Dense 64-32-16-4 with dropout, one logit out.

    ReLU after the first layer (the paper's LeakyReLU after ReLU changes nothing), ELU
    after the others, dropout after the first three hidden layers.

    Attributes:
      hidden: hidden layer widths.
      dropout: dropout rate (0 disables it).
    """

    hidden: Sequence[int] = (64, 32, 16, 4)
    dropout: float = 0.2

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """Maps standardised features ``(..., d)`` to logits ``(..., 1)``."""
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width)(x)
            x = nn.relu(x) if i == 0 else nn.elu(x)
            if self.dropout > 0 and i < len(self.hidden) - 1:
                x = nn.Dropout(self.dropout, deterministic=deterministic)(x)
        return nn.Dense(1)(x)


def cwola_network(hidden: Sequence[int] = (64, 32, 16, 4), dropout: float = 0.2) -> CWoLaNet:
    """The 64-32-16-4 classifier of arXiv:2104.02092 (see ``CWoLaNet``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> net = cwola_network(dropout=0.0)
      >>> params = net.init(jax.random.key(0), jnp.zeros((1, 4)))
      >>> net.apply(params, jnp.zeros((3, 4))).shape
      (3, 1)
    """
    hidden = tuple(int(h) for h in hidden)
    for h in hidden:
        check_positive("hidden", h)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}.")
    return CWoLaNet(hidden, float(dropout))


@functools.cache
def cwola_optimizer(
    learning_rate: float = 1e-3, b1: float = 0.8, b2: float = 0.99, decay: float = 5e-4
) -> optax.GradientTransformation:
    """Adam of arXiv:2104.02092 with Keras' inverse-time decay ``lr / (1 + decay * step)``.

    Cached, so repeated calls return the same object and reuse compiled training epochs.

    Example:
      >>> opt = cwola_optimizer()
      >>> opt is cwola_optimizer()
      True
    """
    check_positive("learning_rate", learning_rate)
    check_positive("decay", decay, allow_zero=True)
    schedule = lambda step: learning_rate / (1.0 + decay * step)  # noqa: E731
    return optax.adam(schedule, b1=b1, b2=b2)


# --------------------------------------------------------------------------- validation


def check_features(name: str, x: Any, *, num_features: int | None = None) -> jax.Array:
    """Validates event features ``(n, d)``: rank 2, at least one event, finite."""
    x = jnp.asarray(x, jnp.float32)
    check_array(name, x, ndim=2)
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` holds no events.")
    if num_features is not None and x.shape[1] != num_features:
        raise ValueError(
            f"`{name}` must have {num_features} features (last axis); got shape {x.shape}."
        )
    return x


def check_region(name: str, region: Any, n: int, *, need_sr: bool = True) -> jax.Array:
    """Validates a region array ``(n,)`` of ints in 0..3 (0 out, 1 low SB, 2 SR, 3 high SB).

    Raises:
      ValueError: for a wrong shape, a non-integer dtype, values outside 0..3, or (with
        ``need_sr``) an empty signal region or no sideband event at all.
    """
    r = np.asarray(region)
    if r.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},); got {r.shape}.")
    if not (np.issubdtype(r.dtype, np.integer) or r.dtype == bool):
        raise ValueError(f"`{name}` must hold integers 0..3; got dtype {r.dtype}.")
    bad = (r < 0) | (r > 3)
    if np.any(bad):
        raise ValueError(
            f"`{name}` must hold 0 (outside), 1 (low SB), 2 (SR) or 3 (high SB); got "
            f"{sorted(set(np.unique(r[bad]).tolist()))}."
        )
    if need_sr:
        if not np.any(r == SR):
            raise ValueError(f"`{name}`: the signal region (2) is empty.")
        if not np.any((r == LOW_SB) | (r == HIGH_SB)):
            raise ValueError(f"`{name}`: both sidebands (1 and 3) are empty.")
    return jnp.asarray(r, jnp.int32)


def _check_folds(n_folds: int, n_members: int) -> None:
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"`n_folds` must be an integer >= 2; got {n_folds!r}.")
    if int(n_members) != n_members or n_members < 1:
        raise ValueError(f"`n_members` must be an integer >= 1; got {n_members!r}.")


# --------------------------------------------------------------------------- weights


@jax.jit
def _cwola_weights(region: jax.Array, mask: jax.Array) -> jax.Array:
    m = mask.astype(jnp.float32)
    n_sr = jnp.sum(m * (region == SR))
    n_lo = jnp.sum(m * (region == LOW_SB))
    n_hi = jnp.sum(m * (region == HIGH_SB))
    n = n_sr + n_lo + n_hi
    # With one sideband empty the other carries the whole SB half.
    both = (n_lo > 0) & (n_hi > 0)
    sb_share = jnp.where(both, 4.0, 2.0)
    w = jnp.where(region == SR, n / (2.0 * jnp.maximum(n_sr, 1.0)), 0.0)
    w = jnp.where(region == LOW_SB, n / (sb_share * jnp.maximum(n_lo, 1.0)), w)
    w = jnp.where(region == HIGH_SB, n / (sb_share * jnp.maximum(n_hi, 1.0)), w)
    return w * m


def cwola_class_weights(
    region: jax.typing.ArrayLike, mask: jax.typing.ArrayLike | None = None
) -> jax.Array:
    """The CWoLa-hunting class weights of arXiv:2104.02092.

    SR events get ``N/(2 N_SR)``, each sideband ``N/(4 N_SB)`` (``N`` the SR + SB count),
    outside events 0: SR and SB carry equal totals and so do the two sidebands.

    Args:
      region: ``(n,)`` ints, 0 outside, 1 low SB, 2 SR, 3 high SB.
      mask: optional ``(n,)`` boolean training mask; counts and weights use only these.

    Returns:
      ``(n,)`` float32 weights (0 outside the mask and outside SR + SB).

    Example:
      >>> import jax.numpy as jnp
      >>> cwola_class_weights(jnp.array([2, 2, 1, 3, 3, 0]))
      Array([1.25 , 1.25 , 1.25 , 0.625, 0.625, 0.   ], dtype=float32)
    """
    region = jnp.asarray(region)
    r = check_region("region", region, region.shape[0] if region.ndim else -1)
    m = jnp.ones(r.shape, bool) if mask is None else jnp.asarray(mask, bool)
    if m.shape != r.shape:
        raise ValueError(f"`mask` must have shape {r.shape}; got {m.shape}.")
    return _cwola_weights(r, m)


def cwola_loss(logits: jax.typing.ArrayLike, region: jax.typing.ArrayLike) -> jax.Array:
    r"""The CWoLa-hunting loss: class-weighted BCE of SR (label 1) vs SB (label 0).

    .. math::
       L = \frac{\sum_i w_i\,\mathrm{BCE}(f_i, [r_i = \mathrm{SR}])}{\sum_i w_i}

    with the weights ``w`` of ``cwola_class_weights`` (outside events have weight 0).

    Args:
      logits: ``(n,)`` classifier logits.
      region: ``(n,)`` region ids 0..3.

    Returns:
      The scalar loss.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(cwola_loss(jnp.zeros(4), jnp.array([1, 2, 2, 3]))), 4)   # log 2
      0.6931
    """
    logits = jnp.asarray(logits, jnp.float32)
    check_array("logits", logits, ndim=1)
    w = cwola_class_weights(region)
    if w.shape != logits.shape:
        raise ValueError(f"`logits` must have shape {w.shape}; got {logits.shape}.")
    return _weighted_bce(logits, (jnp.asarray(region) == SR).astype(jnp.float32), w)


@jax.jit
def _weighted_bce(logits, y, w):
    return jnp.sum(w * bce_with_logits(logits, y)) / jnp.sum(w)


def assign_folds(key: jax.Array, n: int, n_folds: int) -> jax.Array:
    """Random, balanced fold ids ``(n,)`` in ``0..n_folds-1`` (sizes differ by at most 1).

    Example:
      >>> import jax, numpy as np
      >>> np.bincount(assign_folds(jax.random.key(0), 10, 5)).tolist()
      [2, 2, 2, 2, 2]
    """
    check_positive("n", n)
    check_positive("n_folds", n_folds)
    return (jax.random.permutation(key, n) % n_folds).astype(jnp.int32)


def member_folds(n_folds: int, n_members: int) -> jax.Array:
    """Fold of each member ``(n_folds * n_members,)``: member ``k`` is fold ``k // n_members``.

    Example:
      >>> member_folds(3, 2).tolist()      # member k never saw fold k // n_members
      [0, 0, 1, 1, 2, 2]
    """
    return jnp.repeat(jnp.arange(n_folds, dtype=jnp.int32), n_members)


def out_of_fold_scores(
    member_probs: jax.typing.ArrayLike, folds: jax.typing.ArrayLike, n_members: int
) -> jax.Array:
    """Scores every event with the mean of its own fold's members only.

    Args:
      member_probs: ``(n_folds * n_members, n)`` probabilities of every member on every
        event (member order as ``member_folds``).
      folds: ``(n,)`` fold id of each event.
      n_members: members per fold.

    Returns:
      ``(n,)`` scores.

    Example:
      >>> import jax.numpy as jnp
      >>> probs = jnp.array([[0.1, 0.1], [0.3, 0.3], [0.8, 0.8], [1.0, 1.0]])
      >>> out_of_fold_scores(probs, jnp.array([1, 0]), 2)   # fold 1: members 2, 3
      Array([0.9, 0.2], dtype=float32)
    """
    p = jnp.asarray(member_probs, jnp.float32)
    folds = jnp.asarray(folds, jnp.int32)
    return _oof(p, folds, int(n_members))


@functools.partial(jax.jit, static_argnums=(2,))
def _oof(p, folds, n_members):
    per_fold = jnp.mean(p.reshape(-1, n_members, p.shape[-1]), axis=1)  # (n_folds, n)
    return jnp.take_along_axis(per_fold, folds[None, :], axis=0)[0]


# --------------------------------------------------------------------------- k-fold engine


class KFoldResult(NamedTuple):
    """What the k-fold taggers return.

    Attributes:
      scores: ``(n,)`` out-of-fold ensemble scores (mean member probability) of the
        scored events; larger is more signal-like.
      folds: ``(n,)`` fold id of each scored event.
      classifier: the ``n_folds * n_members`` members as one ensemble ``Classifier``.
      member_folds: ``(K,)`` fold id of each member (it never saw that fold).
      fit: the engine's ``FitResult`` (histories carry the member axis).
    """

    scores: jax.Array
    folds: jax.Array
    classifier: Classifier
    member_folds: jax.Array
    fit: FitResult

    def score(
        self, x: jax.typing.ArrayLike, folds: jax.typing.ArrayLike | None = None
    ) -> jax.Array:
        """Scores new events: with ``folds``, out of fold; otherwise the mean of all members."""
        probs = jax.nn.sigmoid(classifier_logits(self.classifier, x))
        if folds is None:
            return jnp.mean(probs, axis=0)
        k = int(self.member_folds.shape[0])
        n_folds = int(jnp.max(self.member_folds)) + 1
        return out_of_fold_scores(probs, folds, k // n_folds)


WeightFn = Callable[[jax.Array], jax.Array]


@functools.cache
def _loss(model: nn.Module, dropout: bool):
    def loss_fn(params, batch, key):
        if dropout:
            out = model.apply(params, batch["x"], deterministic=False, rngs={"dropout": key})
        else:
            out = model.apply(params, batch["x"])
        return bce_with_logits(out[..., 0], batch["y"])

    return loss_fn


def train_kfold(
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    weight_fn: WeightFn,
    folds: jax.Array,
    *,
    n_folds: int,
    n_members: int,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> tuple[Classifier, jax.Array, FitResult]:
    """Trains ``n_folds * n_members`` BCE classifiers in one ``vmap`` (``fit_ensemble``).

    Member ``k`` of fold ``f = k // n_members`` trains with event weights
    ``weight_fn(folds != f)``: the weight function receives the member's training mask
    and must return ``(n,)`` weights that are zero outside it (events with fold ``-1``
    are in every member's mask). The weights may be negative (SA-CWoLa).

    Args:
      key: PRNG key.
      x: ``(n, d)`` features (validated by the caller).
      y: ``(n,)`` labels in {0, 1}.
      weight_fn: training mask ``(n,)`` -> weights ``(n,)``; jit-able.
      folds: ``(n,)`` fold ids, ``-1`` for training-only events.
      n_folds: number of folds.
      n_members: ensemble members per fold.
      model: flax module giving ``(n, 1)`` logits; default ``cwola_network()``. A module
        with a ``dropout`` attribute > 0 is applied with ``deterministic=False`` and a
        ``dropout`` rng while training.
      config: training settings (default ``CWOLA_FIT_CONFIG``).
      optimizer: default ``cwola_optimizer(config.learning_rate)``.

    Returns:
      ``(classifier, member_folds, fit_result)``; ``classifier`` is the ensemble.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.train import FitConfig
      >>> x = jax.random.normal(jax.random.key(0), (400, 2))
      >>> y = (x[:, 0] > 0).astype(jnp.float32)
      >>> folds = assign_folds(jax.random.key(1), 400, 2)
      >>> clf, mf, _ = train_kfold(jax.random.key(2), x, y, lambda m: m * 1.0, folds,
      ...                          n_folds=2, n_members=3, model=cwola_network((8,), dropout=0.0),
      ...                          config=FitConfig(epochs=2, batch_size=100, progress=False))
      >>> clf.num_members, mf.tolist()
      (6, [0, 0, 0, 1, 1, 1])
    """
    _check_folds(n_folds, n_members)
    config = CWOLA_FIT_CONFIG if config is None else config
    model = cwola_network() if model is None else model
    optimizer = cwola_optimizer(config.learning_rate) if optimizer is None else optimizer
    mf = member_folds(n_folds, n_members)
    masks = folds[None, :] != mf[:, None]  # (K, n); fold -1 is never excluded
    weights = jax.jit(jax.vmap(weight_fn))(masks)
    shift = jnp.mean(x, axis=0)
    scale = jnp.std(x, axis=0)
    scale = jnp.where(scale > 0, scale, 1.0)
    xs = (x - shift) / scale
    key_init, key_fit = jax.random.split(key)
    keys = jax.random.split(key_init, mf.shape[0])
    params = jax.vmap(model.init, in_axes=(0, None))(keys, xs[:1])
    dropout = float(getattr(model, "dropout", 0.0)) > 0
    result = fit_ensemble(
        _loss(model, dropout),
        params,
        {"x": xs, "y": jnp.asarray(y, jnp.float32)},
        key=key_fit,
        config=config,
        weights=weights,
        optimizer=optimizer,
    )
    return Classifier(model, result.params, shift, scale, True), mf, result


def _score_kfold(clf: Classifier, x: jax.Array, folds: jax.Array, n_members: int) -> jax.Array:
    probs = jax.nn.sigmoid(classifier_logits(clf, x))
    return out_of_fold_scores(probs, folds, n_members)


# --------------------------------------------------------------------------- CWoLa hunting


def cwola_hunt(
    key: jax.Array,
    x: jax.typing.ArrayLike,
    region: jax.typing.ArrayLike,
    *,
    n_folds: int = 5,
    n_members: int = 10,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
    folds: jax.typing.ArrayLike | None = None,
) -> KFoldResult:
    """CWoLa hunting (arXiv:1805.02664, 2104.02092): SR (1) vs SB (0), scored out of fold.

    Args:
      key: PRNG key (folds, initialisation, shuffling, dropout).
      x: ``(n, d)`` features of all events (SR, sidebands and outside).
      region: ``(n,)`` ints: 0 outside, 1 low SB, 2 SR, 3 high SB.
      n_folds: folds (5 in the papers); every event is scored by its fold's ensemble.
      n_members: classifiers per fold (10 in 2104.02092).
      model: classifier module (default ``cwola_network()``).
      config: training settings (default ``CWOLA_FIT_CONFIG``).
      folds: optional ``(n,)`` fold ids in ``0..n_folds-1`` (default ``assign_folds``).

    Returns:
      ``KFoldResult`` with out-of-fold scores of all ``n`` events.

    Raises:
      ValueError: for features that are not ``(n, d)`` or not finite, regions outside
        0..3 or of the wrong length, an empty SR or no sideband, bad fold ids.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.train import FitConfig
      >>> x = jax.random.normal(jax.random.key(0), (400, 2))
      >>> region = jax.random.randint(jax.random.key(1), (400,), 0, 4)
      >>> res = cwola_hunt(jax.random.key(2), x, region, n_folds=2, n_members=3,
      ...                  model=cwola_network((8,), dropout=0.0),
      ...                  config=FitConfig(epochs=2, batch_size=100, progress=False))
      >>> res.scores.shape, res.classifier.num_members
      ((400,), 6)
    """
    _check_folds(n_folds, n_members)
    x = check_features("x", x)
    r = check_region("region", region, x.shape[0])
    key_folds, key_train = jax.random.split(key)
    folds = _folds_or_default(folds, key_folds, x.shape[0], n_folds)
    clf, mf, result = train_kfold(
        key_train,
        x,
        (r == SR).astype(jnp.float32),
        functools.partial(_cwola_weights, r),
        folds,
        n_folds=n_folds,
        n_members=n_members,
        model=model,
        config=config,
    )
    return KFoldResult(_score_kfold(clf, x, folds, n_members), folds, clf, mf, result)


def _folds_or_default(folds, key, n, n_folds) -> jax.Array:
    if folds is None:
        return assign_folds(key, n, n_folds)
    f = np.asarray(folds)
    if f.shape != (n,) or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"`folds` must be integers of shape ({n},); got {f.dtype} {f.shape}.")
    if f.min() < 0 or f.max() >= n_folds:
        raise ValueError(f"`folds` must lie in 0..{n_folds - 1}; got {f.min()}..{f.max()}.")
    return jnp.asarray(f, jnp.int32)


# --------------------------------------------------------------------------- selections


def efficiency_thresholds(
    scores: jax.typing.ArrayLike,
    efficiencies: Sequence[float] = CWOLA_EFFICIENCIES,
    reference: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Score thresholds that keep the top fraction ``eps`` of the reference events.

    Args:
      scores: ``(n,)`` scores (larger = more anomalous).
      efficiencies: fractions in (0, 1], e.g. ``(0.1, 0.01, 0.002)``.
      reference: optional ``(n,)`` boolean mask of the events that define the
        efficiency (e.g. the sidebands); default all events.

    Returns:
      ``(m,)`` thresholds: ``scores >= t`` keeps ``ceil(eps * n_ref)`` reference events
      (more on ties).

    Example:
      >>> import jax.numpy as jnp
      >>> efficiency_thresholds(jnp.arange(10.0), (0.1, 0.5))
      Array([9., 5.], dtype=float32)
    """
    s = jnp.asarray(scores, jnp.float32)
    check_array("scores", s, ndim=1)
    eff = jnp.asarray(efficiencies, jnp.float32)
    check_array("efficiencies", eff, ndim=1)
    if not bool(jnp.all((eff > 0) & (eff <= 1))):
        raise ValueError(f"`efficiencies` must lie in (0, 1]; got {np.asarray(eff).tolist()}.")
    ref = jnp.ones(s.shape, bool) if reference is None else jnp.asarray(reference, bool)
    if ref.shape != s.shape:
        raise ValueError(f"`reference` must have shape {s.shape}; got {ref.shape}.")
    if not bool(jnp.any(ref)):
        raise ValueError("`reference` selects no events.")
    return _thresholds(s, eff, ref)


@jax.jit
def _thresholds(s, eff, ref):
    ranked = jnp.sort(jnp.where(ref, s, -jnp.inf))[::-1]
    n_ref = jnp.sum(ref)
    idx = jnp.clip(jnp.ceil(eff * n_ref).astype(jnp.int32) - 1, 0, n_ref - 1)
    return ranked[idx]


def select_at_efficiencies(
    scores: jax.typing.ArrayLike,
    efficiencies: Sequence[float] = CWOLA_EFFICIENCIES,
    reference: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Selections at fixed efficiencies (arXiv:1805.02664): thresholds and event masks.

    Returns:
      ``(thresholds (m,), masks (m, n))`` with ``masks[j] = scores >= thresholds[j]``.

    Example:
      >>> import jax.numpy as jnp
      >>> t, masks = select_at_efficiencies(jnp.arange(100.0))
      >>> masks.sum(axis=1).tolist()                        # 10 %, 1 %, 0.2 % of 100
      [10, 1, 1]
    """
    t = efficiency_thresholds(scores, efficiencies, reference)
    s = jnp.asarray(scores, jnp.float32)
    return t, s[None, :] >= t[:, None]
