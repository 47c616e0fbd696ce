"""One small, config-driven experiment per paper; ``python -m experiments.reproduce`` runs all."""

from experiments._framework import check
from experiments._framework import check_positive_fields
from experiments._framework import check_subset
from experiments._framework import discover
from experiments._framework import main
from experiments._framework import make_config
from experiments._framework import not_checked
from experiments._framework import run_experiment

__all__ = [
    "check_positive_fields",
    "check_subset",
    "check",
    "discover",
    "main",
    "make_config",
    "not_checked",
    "run_experiment",
]
