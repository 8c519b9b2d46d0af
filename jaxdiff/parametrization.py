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

import jax.numpy as jnp

from jaxdiff._process import Process, batch_time, expand_like
from jaxdiff._types import Array, ModelFn

KINDS = ("eps", "x0", "v", "score")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown prediction kind {kind!r}; valid kinds: {list(KINDS)}.")


def _to_x0_eps(pred: Array, kind: str, x: Array, scale: Array, sigma: Array):
    """(x0, eps) implied by a prediction of ``kind`` at x; scale, sigma broadcast with x."""
    if kind == "eps":
        return (x - sigma * pred) / scale, pred
    if kind == "x0":
        return pred, (x - scale * pred) / sigma
    if kind == "v":
        norm = jnp.square(scale) + jnp.square(sigma)
        return (scale * x - sigma * pred) / norm, (sigma * x + scale * pred) / norm
    eps = -sigma * pred  # score
    return (x - sigma * eps) / scale, eps


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
    _check_kind(from_kind)
    _check_kind(to_kind)
    if pred.shape != x.shape:
        raise ValueError(f"pred and x must have one shape; got {pred.shape} and {x.shape}.")
    if from_kind == to_kind:
        return pred
    t = batch_time(t, x)
    scale, sigma = (expand_like(a, x) for a in process.marginal(t))
    x0, eps = _to_x0_eps(pred, from_kind, x, scale, sigma)
    return _FROM_X0_EPS[to_kind](x0, eps, scale, sigma)


def convert_model_fn(model_fn: ModelFn, from_kind: str, to_kind: str, process: Process):
    """Wraps ``model_fn`` predicting ``from_kind`` into one predicting ``to_kind``.

    Returns:
      ``(x, t, **cond) -> prediction`` of kind ``to_kind``, shaped like x.
    """
    _check_kind(from_kind)
    _check_kind(to_kind)
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
