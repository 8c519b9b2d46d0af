"""Conversions between the four things a diffusion network may predict.

With x_t = scale x_0 + sigma eps (scale, sigma from the process marginal at t):

- ``"eps"``: the noise eps;
- ``"x0"``: the clean data x_0;
- ``"v"``: v = scale eps - sigma x_0 (Salimans & Ho 2022; exact for any process, so
  x_0 = (scale x_t - sigma v) / (scale^2 + sigma^2));
- ``"score"``: grad log p(x_t) = -eps / sigma.

Every conversion goes through the pair (x_0, eps), in one place, for every process.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff import parametrization, sdes
  >>> sde = sdes.VESDE(sigma_min=0.01, sigma_max=50.0)
  >>> x, t = jnp.ones((1, 2)), jnp.array([0.5])
  >>> eps = jnp.full((1, 2), 0.5)
  >>> x0 = parametrization.convert(eps, "eps", "x0", x, t, sde)
"""

from collections.abc import Callable

import chex
import jax.numpy as jnp

from jaxdiff._process import Process, batch_time, expand_like
from jaxdiff._types import Array, ModelFn

KINDS = ("eps", "x0", "v", "score")


def check_kind(kind: str) -> None:
    """Raises a ValueError naming the valid kinds unless ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"Unknown prediction kind {kind!r}; valid kinds: {list(KINDS)}.")


def _v_to_x0_eps(v, x, scale, sigma):
    norm = jnp.square(scale) + jnp.square(sigma)
    return (scale * x - sigma * v) / norm, (sigma * x + scale * v) / norm


def _score_to_x0_eps(score, x, scale, sigma):
    eps = -sigma * score
    return (x - sigma * eps) / scale, eps


# (prediction, x, scale, sigma) -> (x0, eps) for each kind; scale, sigma broadcast with x.
_TO_X0_EPS: dict[str, Callable] = {
    "eps": lambda eps, x, scale, sigma: ((x - sigma * eps) / scale, eps),
    "x0": lambda x0, x, scale, sigma: (x0, (x - scale * x0) / sigma),
    "v": _v_to_x0_eps,
    "score": _score_to_x0_eps,
}

_FROM_X0_EPS: dict[str, Callable] = {
    "eps": lambda x0, eps, scale, sigma: eps,
    "x0": lambda x0, eps, scale, sigma: x0,
    "v": lambda x0, eps, scale, sigma: scale * eps - sigma * x0,
    "score": lambda x0, eps, scale, sigma: -eps / sigma,
}


def convert(pred: Array, from_kind: str, to_kind: str, x: Array, t: Array, process: Process):
    """Converts a prediction between kinds ("eps", "x0", "v", "score").

    Args:
      pred: the prediction, shape (B, ...), same as ``x``.
      from_kind: what ``pred`` is.
      to_kind: what to return.
      x: the noisy input x_t the prediction was made at, shape (B, ...).
      t: times, shape (B,) or scalar.
      process: the process whose marginal defines x_t.

    Returns:
      The prediction of kind ``to_kind``, shaped like ``x``.

    Raises:
      ValueError: unknown kind, or ``pred`` and ``x`` of different shapes.
    """
    check_kind(from_kind)
    check_kind(to_kind)
    if pred.shape != x.shape:
        raise ValueError(f"pred and x must have one shape; got {pred.shape} and {x.shape}.")
    if from_kind == to_kind:
        return pred
    t = batch_time(t, x)
    scale, sigma = (expand_like(a, x) for a in process.marginal(t))
    chex.assert_equal_rank([scale, x])
    x0, eps = _TO_X0_EPS[from_kind](pred, x, scale, sigma)
    return _FROM_X0_EPS[to_kind](x0, eps, scale, sigma)


def convert_model_fn(model_fn: ModelFn, from_kind: str, to_kind: str, process: Process):
    """Wraps ``model_fn`` predicting ``from_kind`` into one predicting ``to_kind``.

    Returns:
      ``(x, t, **cond) -> prediction`` of kind ``to_kind``, shaped like x.
    """
    check_kind(from_kind)
    check_kind(to_kind)
    if from_kind == to_kind:
        return model_fn

    def converted(x: Array, t: Array, **cond) -> Array:
        t = batch_time(t, x)
        return convert(model_fn(x, t, **cond), from_kind, to_kind, x, t, process)

    return converted


def to_score_fn(model_fn: ModelFn, kind: str, process: Process) -> ModelFn:
    """Turns a model predicting ``kind`` into a score function ``(x, t, **cond) -> score``."""
    return convert_model_fn(model_fn, kind, "score", process)


def to_denoiser(model_fn: ModelFn, kind: str, process: Process) -> ModelFn:
    """Turns a model predicting ``kind`` into a denoiser ``(x, t, **cond) -> x0``."""
    return convert_model_fn(model_fn, kind, "x0", process)


def true_prediction(kind: str, x0: Array, eps: Array, t: Array, process: Process) -> Array:
    """The exact target of ``kind`` for x_t = scale x0 + sigma eps (what a loss regresses on).

    Computed from (x0, eps) directly, without going through x_t, so it stays exact where
    scale or sigma is tiny.

    Args:
      kind: one of :data:`KINDS`.
      x0: clean data, shape (B, ...).
      eps: the noise, shaped like ``x0``.
      t: times, shape (B,) or scalar.
      process: the process whose marginal gives scale and sigma.

    Returns:
      The target, shaped like ``x0``.
    """
    check_kind(kind)
    chex.assert_equal_shape([x0, eps])
    t = batch_time(t, x0)
    scale, sigma = (expand_like(a, x0) for a in process.marginal(t))
    return _FROM_X0_EPS[kind](x0, eps, scale, sigma)
