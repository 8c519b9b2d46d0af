"""jaxdiff: diffusion models in JAX/Flax.

The package re-exports its modules only; each module documents its own API. Modules load
on first use (``jaxdiff.samplers`` imports JAX then), so that the parts that need no JAX
(``jaxdiff.pretrained.read_weights``, the ONNX Runtime path) can run without it.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_MODULES = (
    "autoencoder",
    "cascade",
    "evaluation",
    "guidance",
    "latent",
    "losses",
    "models",
    "parametrization",
    "pretrained",
    "render",
    "samplers",
    "schedules",
    "sdes",
    "sds",
    "super_res",
    "text",
    "time_sampling",
)
__all__ = list(_MODULES)

if TYPE_CHECKING:
    from jaxdiff import (  # noqa: F401
        autoencoder,
        cascade,
        evaluation,
        guidance,
        latent,
        losses,
        models,
        parametrization,
        pretrained,
        render,
        samplers,
        schedules,
        sdes,
        sds,
        super_res,
        text,
        time_sampling,
    )


def __getattr__(name: str):
    """Imports ``jaxdiff.NAME`` on first access (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"jaxdiff.{name}")
    raise AttributeError(f"module 'jaxdiff' has no attribute {name!r}")
