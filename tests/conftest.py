"""Shared test setup: float32 by default, fast compiles, one place for fixtures."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# the entry points' persistent compilation cache stays off in tests (and their
# subprocesses): a test's compile counts and timings do not depend on earlier runs
os.environ.setdefault("JAXDIFF_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
    """A fresh root key for a test."""
    return jax.random.key(0)


def _cheap_compiles():
    """Cheaper XLA compilation for small networks while active (restored afterwards)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


# Modules opt in with ``pytestmark = pytest.mark.usefixtures("fast_compiles")``, or with
# "fast_module_compiles" when their module-scoped fixtures compile too (it is set up
# before them).
fast_compiles = pytest.fixture(_cheap_compiles, name="fast_compiles")
fast_module_compiles = pytest.fixture(_cheap_compiles, scope="module", name="fast_module_compiles")
