"""Datasets and simulators: import the submodule you need, e.g. ``from jaxgen.data import toys``.

- ``toys``: 2D toy densities, conditional toys, Gaussian mixtures.
"""
