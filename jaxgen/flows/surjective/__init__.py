"""Surjective flows: funnels (arXiv:2112.08069) and noise padding (SurVAE, arXiv:2007.02731)."""

from jaxgen.flows.surjective.decoders import FlowDecoder
from jaxgen.flows.surjective.decoders import GaussianDecoder
from jaxgen.flows.surjective.decoders import make_decoder
from jaxgen.flows.surjective.flow import SurjectiveFlow
from jaxgen.flows.surjective.flow import funnel_flow
from jaxgen.flows.surjective.funnels import Funnel
from jaxgen.flows.surjective.funnels import FunnelConv2d
from jaxgen.flows.surjective.funnels import LinearCoupling
from jaxgen.flows.surjective.funnels import coupling_funnel
from jaxgen.flows.surjective.funnels import linear_funnel
from jaxgen.flows.surjective.funnels import slice_funnel
from jaxgen.flows.surjective.padding import NoisePadding

__all__ = [
    "FlowDecoder",
    "Funnel",
    "FunnelConv2d",
    "GaussianDecoder",
    "LinearCoupling",
    "NoisePadding",
    "SurjectiveFlow",
    "coupling_funnel",
    "funnel_flow",
    "linear_funnel",
    "make_decoder",
    "slice_funnel",
]
