"""SUPA-like particle-shower simulator (arXiv:2202.05012) and its HDF5 format."""

# ruff: noqa: I001  (one public name per line, as the project style asks)

from jaxgen.data.showers._config import PoolCapacities
from jaxgen.data.showers._config import ShowerConfig
from jaxgen.data.showers._config import default_max_points
from jaxgen.data.showers._config import generation_moments
from jaxgen.data.showers._config import mean_points
from jaxgen.data.showers._config import particle_moments
from jaxgen.data.showers._config import pool_capacities
from jaxgen.data.showers._grids import to_grids
from jaxgen.data.showers._hdf5 import generate_hdf5
from jaxgen.data.showers._hdf5 import read_hdf5
from jaxgen.data.showers._hdf5 import write_hdf5
from jaxgen.data.showers._kinematics import split_kinematics
from jaxgen.data.showers._simulate import Showers
from jaxgen.data.showers._simulate import simulate

__all__ = [
    "PoolCapacities",
    "ShowerConfig",
    "Showers",
    "default_max_points",
    "generate_hdf5",
    "generation_moments",
    "mean_points",
    "particle_moments",
    "pool_capacities",
    "read_hdf5",
    "simulate",
    "split_kinematics",
    "to_grids",
    "write_hdf5",
]
