"""A jitted function over a large array, a chunk at a time (bounded memory, one compile)."""

from collections.abc import Callable

import numpy as np


def map_in_chunks(fn: Callable, array: np.ndarray, size: int = 500) -> np.ndarray:
    """``fn`` over ``array`` (N, ...) in chunks of ``size`` along axis 0.

    Args:
      fn: maps (B, ...) -> (B, ...); e.g. a classifier's jitted logits or features.
      array: the inputs, (N, ...).
      size: the chunk length (the last chunk may be shorter).

    Returns:
      The outputs as one NumPy array, (N, ...).
    """
    chunks = range(0, len(array), size)
    return np.concatenate([np.asarray(fn(array[i : i + size])) for i in chunks])
