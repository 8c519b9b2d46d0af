"""Level choices of discrete-time samplers in NumPy alone (no JAX import).

Shared by :mod:`jaxdiff.samplers.grids` and the ONNX Runtime sampler of
:mod:`jaxdiff.export`, so that both visit the same noise levels of a discrete schedule.
Levels are integers k: the schedule's step k - 1 sits at time k / N, and k = 0 is clean
data (alpha_bar = 1).
"""

import numpy as np

SPACINGS = ("leading", "linspace", "trailing")


def spaced_indices(lo: int, hi: int, count: int, spacing: str) -> np.ndarray:
    """``count`` training indices in [lo, hi], descending, by a diffusers spacing rule.

    Args:
      lo, hi: the lowest and highest index available.
      count: how many to choose (<= hi - lo + 1).
      spacing: "leading" (i = lo + k (M // S)), "trailing" (lo + round(M - k M / S) - 1)
        or "linspace" (lo + round(linspace(0, M - 1, S))), M = hi - lo + 1, S = count.

    Returns:
      int64 array of shape (count,), descending.

    Raises:
      ValueError: an unknown spacing (listing the valid ones).
    """
    m = hi - lo + 1
    rules = {
        "leading": lambda: np.arange(count) * (m // count),
        "trailing": lambda: np.round(m - np.arange(count) * m / count).astype(np.int64) - 1,
        "linspace": lambda: np.round(np.linspace(0, m - 1, count)).astype(np.int64),
    }
    if spacing not in rules:
        raise ValueError(f"Unknown spacing {spacing!r}; valid spacings: {sorted(rules)}.")
    return lo + np.sort(rules[spacing]())[::-1]


def separate_levels(levels: np.ndarray) -> np.ndarray:
    """Makes descending levels strictly descending, keeping both ends.

    Where several times landed on one level (a grid denser than the schedule there), the
    later ones move to the next levels down, then the earlier ones up.

    Args:
      levels: (N + 1,) levels, non-increasing.

    Returns:
      (N + 1,) float64 levels; strictly decreasing unless the span has too few levels
      (the caller checks).
    """
    k = np.array(levels, dtype=np.float64)
    for j in range(1, k.size - 1):  # top down, then bottom up
        k[j] = min(k[j], k[j - 1] - 1)
    for j in range(k.size - 2, 0, -1):
        k[j] = max(k[j], k[j + 1] + 1)
    return k
