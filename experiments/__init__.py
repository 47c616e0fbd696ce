"""One small, config-driven experiment per paper; ``python -m experiments.reproduce`` runs all."""

from experiments._framework import check, discover, main, make_config, run_experiment

__all__ = [
    "check",
    "discover",
    "main",
    "make_config",
    "run_experiment",
]
