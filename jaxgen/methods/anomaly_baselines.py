"""Reference taggers of resonant anomaly detection: fully supervised and idealised AD.

Every weakly supervised method (CWoLa hunting, arXiv:1805.02664; SALAD, arXiv:2009.02205;
CATHODE, arXiv:2109.00546) is plotted against two references:

- **Fully supervised**: signal (1) vs background (0) with the true labels; the best any
  tagger on these features can do.
- **Idealised anomaly detector**: signal-region data (1) vs a sample of true background
  in the signal region (0); the limit of methods that model the SR background perfectly
  (SALAD, CATHODE, CURTAINs). Its optimal output is monotonic in
  ``p_data/p_bkg = 1 + (S/B) p_S/p_B``.

Both are trained with balanced class totals, k-fold (``jaxgen.methods.cwola.train_kfold``:
all folds x members in one ``vmap``), so every event is scored out of fold.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.methods.cwola import KFoldResult
from jaxgen.methods.cwola import _check_folds
from jaxgen.methods.cwola import _folds_or_default
from jaxgen.methods.cwola import _score_kfold
from jaxgen.methods.cwola import check_features
from jaxgen.methods.cwola import train_kfold
from jaxgen.train import FitConfig


@jax.jit
def balanced_weights(y: jax.Array, w: jax.Array, mask: jax.Array) -> jax.Array:
    """Weights ``w`` on ``mask`` with class 1 rescaled to the class-0 total (jit-able).

    Example:
      >>> import jax.numpy as jnp
      >>> balanced_weights(jnp.array([0., 0., 0., 1.]), jnp.ones(4), jnp.ones(4, bool))
      Array([1., 1., 1., 3.], dtype=float32)
    """
    w = jnp.where(mask, w, 0.0).astype(jnp.float32)
    s0 = jnp.sum(w * (y == 0))
    s1 = jnp.sum(w * (y == 1))
    return jnp.where(y == 1, w * s0 / jnp.where(s1 > 0, s1, 1.0), w)


def _two_sample(key, x0, x1, n_folds, n_members, model, config, names):
    _check_folds(n_folds, n_members)
    x0 = check_features(names[0], x0)
    x1 = check_features(names[1], x1, num_features=x0.shape[1])
    n0, n1 = x0.shape[0], x1.shape[0]
    k0, k1, k_train = jax.random.split(key, 3)
    f0 = _folds_or_default(None, k0, n0, n_folds)
    f1 = _folds_or_default(None, k1, n1, n_folds)
    x = jnp.concatenate([x0, x1])
    y = jnp.concatenate([jnp.zeros(n0), jnp.ones(n1)])
    folds = jnp.concatenate([f0, f1])
    clf, mf, result = train_kfold(
        k_train,
        x,
        y,
        functools.partial(balanced_weights, y, jnp.ones_like(y)),
        folds,
        n_folds=n_folds,
        n_members=n_members,
        model=model,
        config=config,
    )
    return KFoldResult(_score_kfold(clf, x, folds, n_members), folds, clf, mf, result)


def supervised_tagger(
    key: jax.Array,
    x_background: jax.typing.ArrayLike,
    x_signal: jax.typing.ArrayLike,
    *,
    n_folds: int = 5,
    n_members: int = 1,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
) -> KFoldResult:
    """The fully supervised reference: signal (1) vs background (0), balanced, k-fold.

    Args:
      key: PRNG key.
      x_background: ``(n0, d)`` background events.
      x_signal: ``(n1, d)`` signal events.
      n_folds: folds; every event is scored by models that never saw it.
      n_members: ensemble members per fold.
      model: classifier module (default ``jaxgen.methods.cwola.cwola_network()``).
      config: training settings (default ``CWOLA_FIT_CONFIG``).

    Returns:
      ``KFoldResult`` whose ``scores`` are ``(n0 + n1,)``: background events first.

    Example:
      >>> import jax
      >>> from jaxgen.methods.cwola import cwola_network
      >>> from jaxgen.train import FitConfig
      >>> b = jax.random.normal(jax.random.key(0), (200, 2))
      >>> s = 1.0 + jax.random.normal(jax.random.key(1), (200, 2))
      >>> res = supervised_tagger(jax.random.key(2), b, s, n_folds=2, n_members=3,
      ...                         model=cwola_network((8,), dropout=0.0),
      ...                         config=FitConfig(epochs=2, batch_size=100, progress=False))
      >>> res.scores.shape
      (400,)
    """
    names = ("x_background", "x_signal")
    return _two_sample(key, x_background, x_signal, n_folds, n_members, model, config, names)


def idealized_tagger(
    key: jax.Array,
    x_data: jax.typing.ArrayLike,
    x_background: jax.typing.ArrayLike,
    *,
    n_folds: int = 5,
    n_members: int = 1,
    model: nn.Module | None = None,
    config: FitConfig | None = None,
) -> KFoldResult:
    """The idealised anomaly detector: SR data (1) vs true SR background (0), k-fold.

    Args:
      key: PRNG key.
      x_data: ``(n1, d)`` signal-region data (background plus any signal).
      x_background: ``(n0, d)`` an independent sample of true background in the SR.
      n_folds: folds; every event is scored by models that never saw it.
      n_members: ensemble members per fold.
      model: classifier module (default ``jaxgen.methods.cwola.cwola_network()``).
      config: training settings (default ``CWOLA_FIT_CONFIG``).

    Returns:
      ``KFoldResult`` whose ``scores`` are ``(n1,)``, the out-of-fold scores of the data.

    Example:
      >>> import jax
      >>> from jaxgen.methods.cwola import cwola_network
      >>> from jaxgen.train import FitConfig
      >>> data = jax.random.normal(jax.random.key(0), (200, 2))
      >>> bkg = jax.random.normal(jax.random.key(1), (200, 2))
      >>> res = idealized_tagger(jax.random.key(2), data, bkg, n_folds=2, n_members=3,
      ...                        model=cwola_network((8,), dropout=0.0),
      ...                        config=FitConfig(epochs=2, batch_size=100, progress=False))
      >>> res.scores.shape
      (200,)
    """
    names = ("x_background", "x_data")
    res = _two_sample(key, x_background, x_data, n_folds, n_members, model, config, names)
    n0 = jnp.shape(x_background)[0]
    return res._replace(scores=res.scores[n0:], folds=res.folds[n0:])

