"""The training engine: ``fit``, ``fit_ensemble`` and their configuration."""

from jaxgen.train.config import FitConfig, make_optimizer
from jaxgen.train.fit import (
    FitResult,
    LossFn,
    TrainState,
    fit,
    fit_ensemble,
    num_train_steps,
    poisson_bootstrap_weights,
)

__all__ = [
    "FitConfig",
    "FitResult",
    "LossFn",
    "TrainState",
    "fit",
    "fit_ensemble",
    "make_optimizer",
    "num_train_steps",
    "poisson_bootstrap_weights",
]
