"""Networks: MLPs, residual MLPs and deep sets, as flax modules."""

from jaxgen.nn.deepsets import DeepSets
from jaxgen.nn.mlp import MLP, ResidualMLP, last_layer_kernel_init

__all__ = [
    "DeepSets",
    "MLP",
    "ResidualMLP",
    "last_layer_kernel_init",
]
