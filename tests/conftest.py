import jax  # noqa: F401  (the environment is set in the root conftest.py)
import pytest


@pytest.fixture
def x64():
    """Runs a test in float64 (precision checks; float32 runs elsewhere)."""
    with jax.enable_x64(True):
        yield
