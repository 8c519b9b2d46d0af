"""Shared test setup: float32 by default, fast compiles, one place for fixtures."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
    """A fresh root key for a test."""
    return jax.random.key(0)


@pytest.fixture
def fast_compiles():
    """Cheaper XLA compilation for small networks (restored afterwards).

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("fast_compiles")``.
    """
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
