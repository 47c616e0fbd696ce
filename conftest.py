"""Test settings shared by the tests in ``tests/`` and the doctests of ``jaxgen/``."""

import os

# Tests run on CPU with deterministic float32 and no preallocation surprises.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Frees every module's compiled XLA programs when the module ends.

    Each CPU executable holds its own memory mappings; the whole suite compiles thousands
    of programs, and kept alive in jax's caches they exhaust the kernel's limit of
    65,530 mappings per process (``vm.max_map_count``), after which XLA segfaults while
    compiling (seen here after ~500 tests).
    """
    yield
    jax.clear_caches()
    gc.collect()
