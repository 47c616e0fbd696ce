"""Networks: MLPs, residual MLPs and deep sets, as flax modules."""

from jaxgen.nn.deepsets import DeepSets
from jaxgen.nn.mlp import MLP
from jaxgen.nn.mlp import GroupedDense
from jaxgen.nn.mlp import ResidualMLP
from jaxgen.nn.mlp import last_layer_kernel_init

__all__ = [
    "DeepSets",
    "GroupedDense",
    "MLP",
    "ResidualMLP",
    "last_layer_kernel_init",
]
