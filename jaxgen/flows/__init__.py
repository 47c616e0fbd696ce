"""Normalizing flows built on distrax bijectors.

Factories return ``(flow, params)``; a ``Flow`` evaluates ``log_prob``, ``sample``,
``sample_and_log_prob``, ``forward`` and ``inverse`` as pure functions of ``params``, and
``flow.distribution(params)`` is a ``distrax.Distribution``. Any flow can be the base of
another (``base=flow.distribution(params)``): flows for flows.
"""

from jaxgen.flows.autoregressive import MADE, MaskedAutoregressiveLayer
from jaxgen.flows.builders import coupling_flow, masked_autoregressive_flow
from jaxgen.flows.coupling import CouplingLayer
from jaxgen.flows.flow import Flow, FlowDistribution, Stack
from jaxgen.flows.linear import LULinearLayer
from jaxgen.flows.permutation import Permute
from jaxgen.flows.sequential import SequentialLayer
from jaxgen.flows.spline import RationalQuadraticSpline
from jaxgen.flows.training import fit_flow
from jaxgen.flows.transformers import AffineTransformer, SplineTransformer

__all__ = [
    "AffineTransformer",
    "CouplingLayer",
    "Flow",
    "FlowDistribution",
    "LULinearLayer",
    "MADE",
    "MaskedAutoregressiveLayer",
    "Permute",
    "RationalQuadraticSpline",
    "SequentialLayer",
    "SplineTransformer",
    "Stack",
    "coupling_flow",
    "fit_flow",
    "masked_autoregressive_flow",
]
