"""LHC-Olympics-like dijets: synthetic generator, SR/sideband regions, real LHCO R&D data.

See ``DATA.md`` beside this file for the packaged real data and its provenance.
"""

# ruff: noqa: I001  (one public name per line, as the project style asks)

from jaxgen.data.dijets.generator import FEATURES
from jaxgen.data.dijets.generator import MJJ_RANGE
from jaxgen.data.dijets.generator import NO_DISTORTION
from jaxgen.data.dijets.generator import SIMULATION
from jaxgen.data.dijets.generator import STRESS_SHIFT
from jaxgen.data.dijets.generator import DijetEvents
from jaxgen.data.dijets.generator import Distortion
from jaxgen.data.dijets.generator import apply_shift
from jaxgen.data.dijets.generator import background_fraction
from jaxgen.data.dijets.generator import check_events
from jaxgen.data.dijets.generator import generate
from jaxgen.data.dijets.generator import signal_count
from jaxgen.data.dijets.generator import signal_fraction
from jaxgen.data.dijets.generator import simulation
from jaxgen.data.dijets.lhco import PROVENANCE
from jaxgen.data.dijets.lhco import inject
from jaxgen.data.dijets.lhco import load_full_mjj
from jaxgen.data.dijets.lhco import load_sr
from jaxgen.data.dijets.lhco import read_lhco_file
from jaxgen.data.dijets.regions import HIGH_SIDEBAND
from jaxgen.data.dijets.regions import LOW_SIDEBAND
from jaxgen.data.dijets.regions import OUTSIDE
from jaxgen.data.dijets.regions import SIGNAL_REGION
from jaxgen.data.dijets.regions import Regions
from jaxgen.data.dijets.regions import log_uniform_bins
from jaxgen.data.dijets.regions import scan_regions
from jaxgen.data.dijets.regions import select

__all__ = [
    "FEATURES",
    "HIGH_SIDEBAND",
    "LOW_SIDEBAND",
    "MJJ_RANGE",
    "NO_DISTORTION",
    "OUTSIDE",
    "PROVENANCE",
    "SIGNAL_REGION",
    "SIMULATION",
    "STRESS_SHIFT",
    "DijetEvents",
    "Distortion",
    "Regions",
    "apply_shift",
    "background_fraction",
    "check_events",
    "generate",
    "inject",
    "load_full_mjj",
    "load_sr",
    "log_uniform_bins",
    "read_lhco_file",
    "scan_regions",
    "select",
    "signal_count",
    "signal_fraction",
    "simulation",
]
