"""Type aliases shared by every module: arrays, keys and the model-function protocol.

Shape conventions used in docstrings: ``B`` batch, ``H, W, C`` image axes (NHWC),
``...`` any trailing data axes. Time ``t`` is a float in [0, 1] of shape (B,).
"""

from typing import Any, Protocol

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any


class ModelFn(Protocol):
    """A network turned into a function of (x, t): ``(x: (B, ...), t: (B,), **cond) -> (B, ...)``.

    What it predicts (``"eps"``, ``"x0"``, ``"v"`` or ``"score"``) is said by the ``kind``
    argument of whatever consumes it; :mod:`jaxdiff.parametrization` converts between kinds.
    """

    def __call__(self, x: Array, t: Array, **cond: Any) -> Array: ...
