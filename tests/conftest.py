"""Shared test setup: float32 by default, fast compiles, one place for fixtures."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
    """A fresh root key for a test."""
    return jax.random.key(0)
