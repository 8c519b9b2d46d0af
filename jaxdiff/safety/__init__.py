"""Safety for served images: an invisible keyed watermark and a pluggable content filter.

- :mod:`jaxdiff.safety.watermark`: :class:`Watermark` embeds a presence mark plus payload
  bits in uint8 images and detects it with a bounded false-positive rate (numpy +
  PyWavelets, no JAX); ``python -m jaxdiff.safety.watermark embed|detect``.
- :mod:`jaxdiff.safety.content_filter`: :class:`ContentFilter` blocks prompts with listed
  words and images that a classifier assigns to listed classes.

Names load on first use, so the content filter works without PyWavelets installed.
See docs/safety.md for the measured detection rates and the limits.
"""

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Blocked": "content_filter",
    "ContentFilter": "content_filter",
    "ImageCheck": "content_filter",
    "classifier_from_dir": "content_filter",
    "Detection": "watermark",
    "Watermark": "watermark",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from jaxdiff.safety.content_filter import (  # noqa: F401
        Blocked,
        ContentFilter,
        ImageCheck,
        classifier_from_dir,
    )
    from jaxdiff.safety.watermark import Detection, Watermark  # noqa: F401


def __getattr__(name: str):
    """Imports the module that defines ``name`` on first access (PEP 562)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"jaxdiff.safety.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'jaxdiff.safety' has no attribute {name!r}")
