"""Normalizing flows built on distrax bijectors.

Factories return ``(flow, params)``; a ``Flow`` evaluates ``log_prob``, ``sample``,
``sample_and_log_prob``, ``forward`` and ``inverse`` as pure functions of ``params``, and
``flow.distribution(params)`` is a ``distrax.Distribution``. Any flow can be the base of
another (``base=flow.distribution(params)``): flows for flows.
"""

from jaxgen.flows.autoregressive import MADE
from jaxgen.flows.autoregressive import MaskedAutoregressiveLayer
from jaxgen.flows.builders import coupling_flow
from jaxgen.flows.builders import masked_autoregressive_flow
from jaxgen.flows.coupling import CouplingLayer
from jaxgen.flows.elementwise import ElementwiseLayer
from jaxgen.flows.flow import Flow
from jaxgen.flows.flow import FlowDistribution
from jaxgen.flows.flow import Stack
from jaxgen.flows.flowify import ElementwiseSpline
from jaxgen.flows.flowify import FlowifiedConv2d
from jaxgen.flows.flowify import FlowifiedLinear
from jaxgen.flows.flowify import LeakyReLU
from jaxgen.flows.flowify import Logit
from jaxgen.flows.flowify import UniformDequantization
from jaxgen.flows.flowify import bits_per_dim
from jaxgen.flows.flowify import flowify_mlp
from jaxgen.flows.linear import LULinearLayer
from jaxgen.flows.permutation import Permute
from jaxgen.flows.sequential import SequentialLayer
from jaxgen.flows.spline import RationalQuadraticSpline
from jaxgen.flows.surjective import FlowDecoder
from jaxgen.flows.surjective import Funnel
from jaxgen.flows.surjective import FunnelConv2d
from jaxgen.flows.surjective import GaussianDecoder
from jaxgen.flows.surjective import LinearCoupling
from jaxgen.flows.surjective import NoisePadding
from jaxgen.flows.surjective import SurjectiveFlow
from jaxgen.flows.surjective import coupling_funnel
from jaxgen.flows.surjective import funnel_flow
from jaxgen.flows.surjective import linear_funnel
from jaxgen.flows.surjective import slice_funnel
from jaxgen.flows.training import fit_flow
from jaxgen.flows.transformers import AffineTransformer
from jaxgen.flows.transformers import SplineTransformer

__all__ = [
    "AffineTransformer",
    "CouplingLayer",
    "ElementwiseLayer",
    "ElementwiseSpline",
    "Flow",
    "FlowDecoder",
    "FlowDistribution",
    "FlowifiedConv2d",
    "FlowifiedLinear",
    "Funnel",
    "FunnelConv2d",
    "GaussianDecoder",
    "LULinearLayer",
    "LeakyReLU",
    "LinearCoupling",
    "Logit",
    "MADE",
    "MaskedAutoregressiveLayer",
    "NoisePadding",
    "Permute",
    "RationalQuadraticSpline",
    "SequentialLayer",
    "SplineTransformer",
    "Stack",
    "SurjectiveFlow",
    "UniformDequantization",
    "bits_per_dim",
    "coupling_flow",
    "coupling_funnel",
    "fit_flow",
    "flowify_mlp",
    "funnel_flow",
    "linear_funnel",
    "masked_autoregressive_flow",
    "slice_funnel",
]
