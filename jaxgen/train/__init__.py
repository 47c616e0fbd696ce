"""The training engine: ``fit``, ``fit_ensemble`` and their configuration."""

from jaxgen.train.compiler import compiler_options
from jaxgen.train.config import FitConfig
from jaxgen.train.config import make_optimizer
from jaxgen.train.fit import FitResult
from jaxgen.train.fit import LossFn
from jaxgen.train.fit import TrainState
from jaxgen.train.fit import fit
from jaxgen.train.fit import fit_ensemble
from jaxgen.train.fit import num_train_steps
from jaxgen.train.fit import poisson_bootstrap_weights

__all__ = [
    "FitConfig",
    "FitResult",
    "LossFn",
    "TrainState",
    "compiler_options",
    "fit",
    "fit_ensemble",
    "make_optimizer",
    "num_train_steps",
    "poisson_bootstrap_weights",
]
