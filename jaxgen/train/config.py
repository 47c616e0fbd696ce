"""Training configuration and the default optimizer."""

from __future__ import annotations

import dataclasses

import optax

from jaxgen._checks import check_in
from jaxgen._checks import check_positive

SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How ``fit`` and ``fit_ensemble`` train.

    Attributes:
      epochs: maximum number of passes over the training data.
      batch_size: events per step; a ragged last batch is dropped (no recompile).
      learning_rate: peak learning rate of Adam.
      schedule: ``"cosine"`` (decay to 0 over all steps) or ``"constant"``.
      clip_norm: global gradient-norm clip; ``None`` disables it.
      weight_decay: decoupled weight decay (AdamW) if > 0.
      val_fraction: fraction of the data held out for validation when no explicit
        validation data is given; 0 disables validation (and early stopping).
      patience: epochs without validation improvement before stopping; ``None`` never
        stops early. The best-validation parameters are returned either way.
      progress: show a tqdm progress bar over epochs.
      checkpoint_dir: directory for orbax checkpoints; a run started again with the same
        directory and config resumes where the last one stopped.
      checkpoint_every: save every this many epochs.
      data_parallel: shard every batch over all local devices along a ``data`` mesh axis.
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    clip_norm: float | None = 5.0
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    patience: int | None = 10
    progress: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    data_parallel: bool = False

    def __post_init__(self):
        check_positive("epochs", self.epochs)
        check_positive("batch_size", self.batch_size)
        check_positive("learning_rate", self.learning_rate)
        check_in("schedule", self.schedule, SCHEDULES)
        if self.clip_norm is not None:
            check_positive("clip_norm", self.clip_norm)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in [0, 1); got {self.val_fraction!r}.")
        if self.patience is not None:
            check_positive("patience", self.patience)
        check_positive("checkpoint_every", self.checkpoint_every)


def make_optimizer(config: FitConfig, total_steps: int) -> optax.GradientTransformation:
    """Adam(W) with cosine decay over ``total_steps`` and global-norm clipping.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.train import FitConfig, make_optimizer
      >>> opt = make_optimizer(FitConfig(learning_rate=1e-3), total_steps=100)
      >>> state = opt.init({"w": jnp.zeros(3)})
      >>> updates, state = opt.update({"w": jnp.ones(3)}, state, {"w": jnp.zeros(3)})
      >>> updates["w"].shape
      (3,)
    """
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, max(total_steps, 1))
    else:
        lr = config.learning_rate
    if config.weight_decay > 0:
        opt = optax.adamw(lr, weight_decay=config.weight_decay)
    else:
        opt = optax.adam(lr)
    if config.clip_norm is None:
        return opt
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), opt)
