"""The training engine: ``fit`` one model, ``fit_ensemble`` K models at once with ``vmap``.

An epoch is one jitted ``lax.scan`` over device-resident, pre-shuffled batches. Between
epochs Python only does bookkeeping: validation, early stopping with best-parameter
restore, non-finite detection, checkpoints and the progress bar.

The loss is per example: ``loss_fn(params, batch, key) -> (batch_size,)``. A loss that
declares a ``step`` parameter also receives the global step (an int32 scalar) while
training and ``None`` while evaluating the validation loss; that is how schedules such
as an annealed penalty or alternating objectives are written. A loss that also declares
``training`` receives ``training=True`` with the step while training and, at validation,
``training=False`` with the number of steps taken so far instead of ``None``, so a
schedule is scored where training stands (e.g. an annealed penalty weight). The engine
forms the weighted mean ``mean_b(w_b * l_b)`` with event weights normalised to mean one
over the training set, so weighted (even negatively weighted) samples need no special
loss functions.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm.auto as tqdm

from jaxgen._checks import check_array
from jaxgen._checks import leading_size
from jaxgen.train.checkpoint import Checkpointer
from jaxgen.train.compiler import compiler_options
from jaxgen.train.config import FitConfig
from jaxgen.train.config import make_optimizer

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch, jax.Array], jax.Array]
Callback = Callable[[int, dict], None]

_EVAL_CHUNK = 8192


class TrainState(NamedTuple):
    """What an epoch carries: parameters, optimizer state and per-model status."""

    params: Params
    opt_state: optax.OptState
    last_good: Params  # the last parameters whose loss and gradient were finite
    active: jax.Array  # bool: still training (not stopped early, no non-finite loss)
    first_bad_step: jax.Array  # int32: global step of the first non-finite loss, or -1
    step: jax.Array  # int32: global step counter


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      params: the best-validation parameters (or the last good ones without validation).
      history: ``train_loss`` and ``val_loss`` per epoch (``(epochs,)`` or
        ``(epochs, K)`` for ensembles), and ``best_epoch``.
      stop_reason: ``"completed"``, ``"early_stopping"`` or ``"non_finite"`` (for an
        ensemble: the reason of the member that stopped last).
      non_finite_step: global step of the first non-finite loss (``-1`` if none; per
        member for ensembles).
    """

    params: Params
    history: dict[str, np.ndarray]
    stop_reason: str
    non_finite_step: np.ndarray


def _where(cond: jax.Array, a: Any, b: Any) -> Any:
    """Selects pytree ``a`` where ``cond`` else ``b``; ``cond`` broadcasts from the left."""

    def sel(x, y):
        c = jnp.reshape(cond, jnp.shape(cond) + (1,) * (jnp.ndim(x) - jnp.ndim(cond)))
        return jnp.where(c, x, y)

    return jax.tree_util.tree_map(sel, a, b)


def _tree_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _take(tree: Any, idx: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _normalise_weights(name: str, w: jax.Array) -> jax.Array:
    mean = jnp.mean(w, axis=-1, keepdims=True)
    if not bool(jnp.all(mean > 0)):
        raise ValueError(f"`{name}` must have a positive mean (per ensemble member).")
    return w / mean


def _pad_to_chunks(tree: Any, w: jax.Array, chunk: int) -> tuple[Any, jax.Array]:
    """Pads the event axis to a multiple of ``chunk`` with weight-0 copies of event 0."""
    n = leading_size("validation data", tree)
    n_pad = (-n) % chunk
    idx = jnp.concatenate([jnp.arange(n), jnp.zeros(n_pad, jnp.int32)])
    padded = _take(tree, idx)
    w = jnp.concatenate([w, jnp.zeros(w.shape[:-1] + (n_pad,), w.dtype)], axis=-1)
    n_chunks = (n + n_pad) // chunk
    padded = jax.tree_util.tree_map(lambda a: a.reshape((n_chunks, chunk) + a.shape[1:]), padded)
    return padded, w.reshape(w.shape[:-1] + (n_chunks, chunk))


class _Trainer:
    """Builds the jitted epoch and evaluation functions for one (possibly vmapped) model."""

    def __init__(self, loss_fn, optimizer, steps_per_epoch, batch_size, ensemble, sharding):
        self.loss_fn = _with_step(loss_fn)
        self.optimizer = optimizer
        self.steps = steps_per_epoch
        self.batch_size = batch_size
        self.sharding = sharding
        epoch, evaluate = self._epoch, self._evaluate
        if ensemble:
            epoch = jax.vmap(epoch, in_axes=(0, None, 0, 0))
            evaluate = jax.vmap(evaluate, in_axes=(0, None, 0, None, 0))
        self.epoch = jax.jit(epoch, donate_argnums=(0,), compiler_options=compiler_options())
        self.evaluate = jax.jit(evaluate, compiler_options=compiler_options())

    def _objective(self, params, batch, w, key, step):
        losses = self.loss_fn(params, batch, key, step, True)
        return jnp.mean(w * losses)

    def _epoch(self, state: TrainState, data, weights, key):
        n = leading_size("data", data)
        key_perm, key_steps = jax.random.split(key)
        idx = jax.random.permutation(key_perm, n)[: self.steps * self.batch_size]
        idx = idx.reshape(self.steps, self.batch_size)
        step_keys = jax.random.split(key_steps, self.steps)

        def body(st: TrainState, xs):
            i, k = xs
            batch, w = _take(data, i), weights[i]
            if self.sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, self.sharding)
                w = jax.lax.with_sharding_constraint(w, self.sharding)
            loss, grads = jax.value_and_grad(self._objective)(
                st.params, batch, w, k, st.step
            )
            updates, new_opt = self.optimizer.update(grads, st.opt_state, st.params)
            new_params = optax.apply_updates(st.params, updates)
            finite = jnp.isfinite(loss) & _tree_finite(grads)
            take = st.active & finite
            failed = st.active & ~finite
            first_bad = jnp.where(failed, st.step, st.first_bad_step)
            # On failure roll back to the last parameters verified finite: the current
            # ones produced the non-finite loss.
            kept = _where(failed, st.last_good, st.params)
            new_state = TrainState(
                params=_where(take, new_params, kept),
                opt_state=_where(take, new_opt, st.opt_state),
                last_good=_where(take, st.params, st.last_good),
                active=take,
                first_bad_step=first_bad,
                step=st.step + 1,
            )
            return new_state, jnp.where(take, loss, jnp.nan)

        return jax.lax.scan(body, state, (idx, step_keys))

    def _evaluate(self, params, chunks, chunk_weights, key, step):
        def body(total, xs):
            batch, w = xs
            return total + jnp.sum(w * self.loss_fn(params, batch, key, step, False)), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (chunks, chunk_weights))
        return total / jnp.sum(chunk_weights)


@functools.lru_cache(maxsize=64)
def _cached_trainer(loss_fn, optimizer, steps, batch_size, ensemble, sharding) -> _Trainer:
    """Reuses compiled epochs across ``fit`` calls with the same loss and optimizer.

    Methods that call ``fit`` repeatedly (OmniFold iterations, bootstrap loops) pass the
    same loss function and optimizer objects and then compile once instead of per call.
    """
    return _Trainer(loss_fn, optimizer, steps, batch_size, ensemble, sharding)


@functools.lru_cache(maxsize=64)
def _default_optimizer(config: FitConfig, total_steps: int) -> optax.GradientTransformation:
    return make_optimizer(config, total_steps)


def _with_step(loss_fn: LossFn):
    """Normalises ``loss_fn`` to ``(params, batch, key, step, training)``."""
    try:
        names = inspect.signature(loss_fn).parameters
    except (TypeError, ValueError):
        names = {}
    if "step" in names and "training" in names:
        return lambda p, b, k, step, training: loss_fn(p, b, k, step=step, training=training)
    if "step" in names:
        return lambda p, b, k, step, training: loss_fn(p, b, k, step=step if training else None)
    return lambda p, b, k, step, training: loss_fn(p, b, k)


def num_train_steps(n: int, config: FitConfig, *, has_val_data: bool = False) -> int:
    """Total optimisation steps ``fit`` takes on ``n`` events (without early stopping).

    Useful for step schedules inside a loss (see the module docstring).

    Example:
      >>> from jaxgen.train import FitConfig, num_train_steps
      >>> num_train_steps(1000, FitConfig(epochs=3, batch_size=100, val_fraction=0.0))
      30
    """
    n_val = 0 if has_val_data or config.val_fraction == 0 else int(round(n * config.val_fraction))
    return config.epochs * ((n - n_val) // config.batch_size)


def _split_validation(data, weights, val_fraction, key):
    n = leading_size("data", data)
    n_val = int(round(n * val_fraction))
    if n_val < 1:
        raise ValueError(
            f"`val_fraction`={val_fraction} leaves no validation events out of {n}; "
            "use more data or val_fraction=0."
        )
    perm = jax.random.permutation(key, n)
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    return (
        _take(data, tr_idx),
        weights[..., tr_idx],
        _take(data, val_idx),
        weights[..., val_idx],
    )


def _run(
    loss_fn: LossFn,
    params: Params,
    data: Batch,
    *,
    key: jax.Array,
    config: FitConfig,
    weights: jax.Array | None,
    val_data: Batch | None,
    val_weights: jax.Array | None,
    optimizer: optax.GradientTransformation | None,
    callback: Callback | None,
    ensemble_size: int | None,
) -> FitResult:
    ensemble = ensemble_size is not None
    member_shape = (ensemble_size,) if ensemble else ()
    data = jax.tree_util.tree_map(jnp.asarray, data)
    for i, leaf in enumerate(jax.tree_util.tree_leaves(data)):
        check_array(f"data (leaf {i})", leaf, finite=True)
    n = leading_size("data", data)
    w_shape = member_shape + (n,)
    weights = jnp.ones(w_shape, jnp.float32) if weights is None else jnp.asarray(weights)
    if weights.shape not in (w_shape, (n,)):
        raise ValueError(f"`weights` must have shape {w_shape}; got {weights.shape}.")
    check_array("weights", weights)
    weights = jnp.broadcast_to(weights, w_shape).astype(jnp.float32)

    key_split, key_train, key_eval = jax.random.split(key, 3)
    if val_data is not None:
        val_data = jax.tree_util.tree_map(jnp.asarray, val_data)
        for i, leaf in enumerate(jax.tree_util.tree_leaves(val_data)):
            check_array(f"val_data (leaf {i})", leaf)
        n_val = leading_size("val_data", val_data)
        vw = jnp.ones((n_val,)) if val_weights is None else jnp.asarray(val_weights)
        val_weights = jnp.broadcast_to(vw, member_shape + (n_val,)).astype(jnp.float32)
    elif config.val_fraction > 0:
        data, weights, val_data, val_weights = _split_validation(
            data, weights, config.val_fraction, key_split
        )
    has_val = val_data is not None

    n_train = leading_size("data", data)
    steps = n_train // config.batch_size
    if steps < 1:
        raise ValueError(
            f"`batch_size`={config.batch_size} is larger than the {n_train} training events."
        )
    weights = _normalise_weights("weights", weights)
    if optimizer is None:
        optimizer = _default_optimizer(config, config.epochs * steps)

    sharding = None
    if config.data_parallel:
        if ensemble:
            raise ValueError("`data_parallel` is supported by `fit`, not by `fit_ensemble`.")
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
        if config.batch_size % mesh.size:
            raise ValueError(
                f"`batch_size`={config.batch_size} must be divisible by the {mesh.size} devices."
            )
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        data, weights, params = jax.device_put((data, weights, params), replicated)

    # Validate the loss once, eagerly, on one batch's shapes.
    batch0 = _take(data, jnp.arange(config.batch_size))
    p0 = jax.tree_util.tree_map(lambda a: a[0], params) if ensemble else params
    out = jax.eval_shape(functools.partial(_with_step(loss_fn), training=True), p0, batch0, key,
                         jnp.zeros((), jnp.int32))
    if out.shape != (config.batch_size,):
        raise ValueError(
            f"`loss_fn` must return per-example losses of shape ({config.batch_size},); "
            f"got {out.shape}."
        )

    trainer = _cached_trainer(loss_fn, optimizer, steps, config.batch_size, ensemble, sharding)
    init_opt = jax.vmap(optimizer.init) if ensemble else optimizer.init
    # The epoch donates its state: train on copies, so neither the caller's arrays nor
    # the best-params bookkeeping share buffers with it.
    copy = lambda tree: jax.tree_util.tree_map(jnp.copy, tree)  # noqa: E731
    state = TrainState(
        params=copy(params),
        opt_state=init_opt(copy(params)),
        last_good=copy(params),
        active=jnp.ones(member_shape, bool),
        first_bad_step=jnp.full(member_shape, -1, jnp.int32),
        step=jnp.zeros(member_shape, jnp.int32),
    )
    if has_val:
        val_chunks, val_chunk_w = _pad_to_chunks(
            val_data, _normalise_weights("val_weights", val_weights), _EVAL_CHUNK
        )

    nan_hist = np.full((config.epochs,) + member_shape, np.nan, np.float32)
    loop = {
        "state": state,
        "best_params": copy(params),
        "best_val": jnp.full(member_shape, jnp.inf, jnp.float32),
        "best_epoch": jnp.full(member_shape, -1, jnp.int32),
        "since_best": jnp.zeros(member_shape, jnp.int32),
        "early_stopped": jnp.zeros(member_shape, bool),
        "train_loss": jnp.asarray(nan_hist),
        "val_loss": jnp.asarray(nan_hist),
    }
    start = 0
    ckpt = None
    if config.checkpoint_dir is not None:
        fingerprint = {
            "config": {
                k: v
                for k, v in vars(config).items()
                if k not in ("progress", "checkpoint_dir", "checkpoint_every")
            },
            "n_train": n_train,
            "ensemble_size": ensemble_size,
        }
        ckpt = Checkpointer(config.checkpoint_dir, fingerprint)
        restored = ckpt.restore_latest(loop)
        if restored is not None:
            start, loop = restored

    if ensemble:
        member_keys = jax.random.split(key_train, ensemble_size)
        epoch_key = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
    else:
        member_keys = key_train
        epoch_key = jax.random.fold_in

    bar = tqdm.tqdm(
        range(start, config.epochs),
        initial=start,
        total=config.epochs,
        desc="fit",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    for epoch in bar:
        if not bool(jnp.any(loop["state"].active)):
            break
        was_active = jnp.copy(loop["state"].active)  # the epoch donates its input state
        state, losses = trainer.epoch(loop["state"], data, weights, epoch_key(member_keys, epoch))
        loop["state"] = state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs of stopped members
            train_loss = jnp.asarray(np.nanmean(np.asarray(losses), axis=-1))
        loop["train_loss"] = loop["train_loss"].at[epoch].set(train_loss)
        if has_val:
            val = trainer.evaluate(state.params, val_chunks, val_chunk_w, key_eval, state.step)
            loop["val_loss"] = loop["val_loss"].at[epoch].set(val)
            score = val
        else:
            score = train_loss
        improved = was_active & jnp.isfinite(score) & (score < loop["best_val"])
        loop["best_params"] = _where(improved, state.params, loop["best_params"])
        loop["best_val"] = jnp.where(improved, score, loop["best_val"])
        loop["best_epoch"] = jnp.where(improved, epoch, loop["best_epoch"])
        loop["since_best"] = jnp.where(improved, 0, loop["since_best"] + 1)
        if config.patience is not None and has_val:
            stop = state.active & (loop["since_best"] >= config.patience)
            loop["early_stopped"] = loop["early_stopped"] | stop
            loop["state"] = state._replace(active=state.active & ~stop)
        if ckpt is not None and ((epoch + 1) % config.checkpoint_every == 0):
            ckpt.save(epoch + 1, loop)
        if config.progress:
            post = {"loss": f"{float(jnp.nanmean(train_loss)):.4g}"}
            if has_val:
                post["val"] = f"{float(jnp.nanmean(score)):.4g}"
            bar.set_postfix(post)
        if callback is not None:
            callback(epoch, {"train_loss": np.asarray(train_loss), "val_loss": np.asarray(score)})
    bar.close()

    state = loop["state"]
    bad = np.asarray(state.first_bad_step)
    if np.any(bad >= 0):
        where = f"step {int(bad)}" if bad.ndim == 0 else f"steps {bad.tolist()} (-1: fine)"
        warnings.warn(
            f"fit: the loss or its gradient became non-finite at {where}; training stopped "
            "and the last good parameters were kept.",
            RuntimeWarning,
            stacklevel=3,
        )
        reason = "non_finite"
    elif bool(np.any(np.asarray(loop["early_stopped"]))):
        reason = "early_stopping"
    else:
        reason = "completed"
    # Members that never improved (e.g. non-finite in epoch 0) keep their last good params.
    never = np.asarray(loop["best_epoch"]) < 0
    final = _where(jnp.asarray(never), state.params, loop["best_params"])
    history = {
        "train_loss": np.asarray(loop["train_loss"]),
        "val_loss": np.asarray(loop["val_loss"]),
        "best_epoch": np.asarray(loop["best_epoch"]),
    }
    return FitResult(final, history, reason, bad)


def fit(
    loss_fn: LossFn,
    params: Params,
    data: Batch,
    *,
    key: jax.Array,
    config: FitConfig | None = None,
    weights: jax.typing.ArrayLike | None = None,
    val_data: Batch | None = None,
    val_weights: jax.typing.ArrayLike | None = None,
    optimizer: optax.GradientTransformation | None = None,
    callback: Callback | None = None,
) -> FitResult:
    """Trains ``params`` to minimise the (weighted) mean of ``loss_fn`` over ``data``.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> losses`` of shape ``(batch_size,)``;
        ``batch`` has the structure of ``data`` with ``batch_size`` events.
      params: initial parameters (any pytree).
      data: a pytree of arrays sharing the leading event axis ``(n, ...)``.
      key: PRNG key for the validation split, shuffling and the loss.
      config: ``FitConfig`` (defaults if ``None``).
      weights: per-event weights ``(n,)``; normalised to mean one. Negative entries are
        allowed (background subtraction) as long as the mean is positive.
      val_data: explicit validation set; otherwise ``config.val_fraction`` is held out.
      val_weights: weights of ``val_data``.
      optimizer: replaces the default (Adam, cosine decay, gradient clipping).
      callback: called as ``callback(epoch, {"train_loss", "val_loss"})`` after each
        epoch; an exception raised there stops training (checkpoints are kept).

    Returns:
      A ``FitResult`` with the best parameters and the loss history.

    Raises:
      ValueError: for inconsistent shapes, non-finite data, a loss that is not per
        example, a batch larger than the training set, or a ``checkpoint_dir`` of
        another run, with a damaged ``fit_config.json`` or without a step that restores
        (a damaged newest step is skipped with a warning: see ``jaxgen.train.checkpoint``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.train import FitConfig, fit
      >>> x = 3.0 + jax.random.normal(jax.random.key(0), (1000,))
      >>> loss = lambda mu, batch, key: (batch - mu) ** 2   # per-example losses
      >>> result = fit(loss, jnp.zeros(()), x, key=jax.random.key(1),
      ...              config=FitConfig(epochs=20, batch_size=100, learning_rate=0.1,
      ...                               progress=False))
      >>> bool(abs(result.params - x.mean()) < 0.05)       # least squares: the sample mean
      True
    """
    config = FitConfig() if config is None else config
    return _run(
        loss_fn,
        params,
        data,
        key=key,
        config=config,
        weights=weights,
        val_data=val_data,
        val_weights=val_weights,
        optimizer=optimizer,
        callback=callback,
        ensemble_size=None,
    )


def fit_ensemble(
    loss_fn: LossFn,
    params: Params,
    data: Batch,
    *,
    key: jax.Array,
    config: FitConfig | None = None,
    weights: jax.typing.ArrayLike | None = None,
    val_data: Batch | None = None,
    val_weights: jax.typing.ArrayLike | None = None,
    optimizer: optax.GradientTransformation | None = None,
    callback: Callback | None = None,
) -> FitResult:
    """Trains K models at once with ``vmap``; each member stops early on its own.

    Same arguments as ``fit``, except that every leaf of ``params`` has a leading
    ensemble axis of size K (e.g. ``jax.vmap(model.init)(keys, x)``), and ``weights``
    may be ``(K, n)`` for per-member event weights such as Poisson bootstrap weights
    (see ``poisson_bootstrap_weights``). Members shuffle with independent keys.

    Returns:
      A ``FitResult`` whose params and history carry the leading ensemble axis.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.train import FitConfig, fit_ensemble, poisson_bootstrap_weights
      >>> x = jax.random.normal(jax.random.key(0), (1000,))
      >>> w = poisson_bootstrap_weights(jax.random.key(1), 4, 1000)    # 4 bootstrap replicas
      >>> loss = lambda mu, batch, key: (batch - mu) ** 2
      >>> result = fit_ensemble(loss, jnp.zeros((4,)), x, key=jax.random.key(2), weights=w,
      ...                       config=FitConfig(epochs=5, batch_size=100, learning_rate=0.1,
      ...                                        val_fraction=0.0, patience=None,
      ...                                        progress=False))
      >>> result.params.shape                               # one mean per member
      (4,)
    """
    config = FitConfig() if config is None else config
    sizes = {int(np.shape(x)[0]) for x in jax.tree_util.tree_leaves(params)}
    if len(sizes) != 1:
        raise ValueError(f"`params` leaves must share a leading ensemble axis; got {sizes}.")
    return _run(
        loss_fn,
        params,
        data,
        key=key,
        config=config,
        weights=weights,
        val_data=val_data,
        val_weights=val_weights,
        optimizer=optimizer,
        callback=callback,
        ensemble_size=sizes.pop(),
    )


def poisson_bootstrap_weights(key: jax.Array, num_members: int, n: int) -> jax.Array:
    """Poisson(1) bootstrap weights of shape ``(num_members, n)``.

    Example:
      >>> import jax
      >>> from jaxgen.train import poisson_bootstrap_weights
      >>> w = poisson_bootstrap_weights(jax.random.key(0), 8, 10_000)
      >>> w.shape, abs(float(w.mean()) - 1.0) < 0.01     # Poisson(1): mean 1, sd 1/sqrt(8e4)
      ((8, 10000), True)
    """
    return jax.random.poisson(key, 1.0, (num_members, n)).astype(jnp.float32)
