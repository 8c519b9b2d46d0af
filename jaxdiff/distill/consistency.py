"""Consistency models (Song et al. 2023; improved consistency training, Song & Dhariwal 2023).

Everything lives in EDM's frame x~ = x + sigma~ n, sigma~(t) = sigma(t) / scale(t), of any
jaxdiff process: a network input z_t = scale(t) x~ is the process's own marginal, so a
student starts from the weights of a diffusion model trained on that process.

**Consistency function.** f(x~, t) maps every point of a probability-flow ODE trajectory
to its end at t_min. With the network's x0 prediction x^ (any parametrisation), read as
EDM's F through D = c_skip^EDM x~ + c_out^EDM F:

    f(x~, t) = c_skip(sigma~) x~ + c_out(sigma~) F
    c_skip = sd^2 / ((sigma~ - sigma_min)^2 + sd^2)
    c_out = sd (sigma~ - sigma_min) / sqrt(sd^2 + sigma~^2)

(sd = sigma_data). At sigma~ = sigma_min, c_skip = 1 and c_out = 0, so f(x~, t_min) = x~
exactly; far from it f is the diffusion model's own denoiser.

**Consistency distillation** (CD): on a grid t_1 < ... < t_M of the teacher's levels,
x~_{n+1} = x + sigma_{n+1} eps, one teacher Heun step of the ODE dx~/dsigma = (x~ -
D(x~)) / sigma gives x~_n, and the loss is lambda_n d(f(x~_{n+1}, t_{n+1}), sg f(x~_n,
t_n)). **Consistency training** (CT, iCT): no teacher, x~_n = x + sigma_n eps with the
same eps; pseudo-Huber d with c = 0.00054 sqrt(dim), lambda_n = 1 / (sigma_{n+1} -
sigma_n), n drawn from the lognormal (P_mean, P_std) mass of each interval, and the number
of grid intervals doubling from s0 to s1 over training (the curriculum). Both use the
student itself (stop-gradient) as the target network, as iCT does; keep an EMA of the
student for evaluation.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization
from jaxdiff._process import edm_frame, expand_like
from jaxdiff._types import Array, ModelFn
from jaxdiff.samplers.consistency import boundary_coefficients, combine

__all__ = [
    "boundary_coefficients",
    "combine",
    "consistency_fn",
    "denoiser",
    "heun_step",
    "interval_weight",
    "pseudo_huber",
    "sigma_hat",
    "squared_l2",
]

ICT_HUBER = 0.00054  # c = 0.00054 sqrt(dim), Song & Dhariwal (2023)


def sigma_hat(process, t: Array) -> Array:
    """sigma~(t) = sigma(t) / scale(t), shaped like t."""
    return edm_frame(process, jnp.asarray(t, jnp.float32))[0]


def consistency_fn(model_fn: ModelFn, kind: str, process, t_min: float, sigma_data=0.5):
    """``f(x~, t, **cond) -> x0`` of a network predicting ``kind`` on ``process``.

    Args:
      model_fn: ``(z, t, **cond) -> prediction``, z = scale(t) x~ (B, ...), t (B,).
      kind: what it predicts (``parametrization.KINDS``).
      process: its diffusion process.
      t_min: the time where f is the identity (sigma_min = sigma~(t_min)).
      sigma_data: the data's standard deviation.
    """

    def f(x_tilde, t, **cond):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x_tilde.shape[:1])
        # computed like sigma~(t) (same shape, same ops): at t = t_min, c_out is exactly 0
        sigma_min = sigma_hat(process, jnp.full_like(t, t_min))
        sigma, scale = edm_frame(process, t)
        z = expand_like(scale, x_tilde) * x_tilde
        x0_hat = parametrization.convert(model_fn(z, t, **cond), kind, "x0", z, t, process)
        return combine(x_tilde, x0_hat, sigma, sigma_min, sigma_data)

    return f


def denoiser(model_fn: ModelFn, kind: str, process) -> Callable:
    """``D(x~, t, **cond) -> x0`` of a diffusion model, in the EDM frame."""

    def d(x_tilde, t, **cond):
        z = expand_like(process.marginal(t)[0], x_tilde) * x_tilde
        return parametrization.convert(model_fn(z, t, **cond), kind, "x0", z, t, process)

    return d


def heun_step(denoise: Callable, process, x_tilde, t_hi, t_lo, **cond) -> Array:
    """One Heun step of dx~/dsigma~ = (x~ - D(x~)) / sigma~ from t_hi to t_lo (both > 0)."""
    s_hi, s_lo = sigma_hat(process, t_hi), sigma_hat(process, t_lo)
    h = expand_like(s_lo - s_hi, x_tilde)
    d_hi = (x_tilde - denoise(x_tilde, t_hi, **cond)) / expand_like(s_hi, x_tilde)
    x_euler = x_tilde + h * d_hi
    d_lo = (x_euler - denoise(x_euler, t_lo, **cond)) / expand_like(s_lo, x_tilde)
    return x_tilde + 0.5 * h * (d_hi + d_lo)


def pseudo_huber(a: Array, b: Array, c: float | None = None) -> Array:
    """sqrt(|a - b|^2 + c^2) - c per example (B,); c = 0.00054 sqrt(dim) by default."""
    dim = int(np.prod(a.shape[1:]))
    c = ICT_HUBER * np.sqrt(dim) if c is None else c
    sq = jnp.sum(jnp.square(a - b), axis=tuple(range(1, a.ndim)))
    return jnp.sqrt(sq + c**2) - c


def squared_l2(a: Array, b: Array) -> Array:
    """|a - b|^2 averaged over pixels, per example (B,)."""
    return jnp.mean(jnp.square(a - b), axis=tuple(range(1, a.ndim)))


DISTANCES = {"pseudo_huber": pseudo_huber, "l2": squared_l2}


def pair_loss(f, f_target, x_hi, t_hi, x_lo, t_lo, weight, distance, **cond):
    """weight * d(f(x_hi, t_hi), sg f_target(x_lo, t_lo)), per example (B,)."""
    target = jax.lax.stop_gradient(f_target(x_lo, t_lo, **cond))
    return weight * DISTANCES[distance](f(x_hi, t_hi, **cond), target)


WEIGHTINGS = ("uniform", "ict")


def interval_weight(weighting: str, s_hi: Array, s_lo: Array) -> Array:
    """lambda of a pair of levels: 1 ("uniform", Song et al. 2023) or 1 / (s_hi - s_lo)
    ("ict", Song & Dhariwal 2023, which keeps the low levels, where f meets the boundary,
    from being swamped by the high ones)."""
    if weighting == "uniform":
        return jnp.ones_like(s_hi)
    return 1.0 / (s_hi - s_lo)


def check_weighting(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"Unknown weighting {weighting!r}; valid: {list(WEIGHTINGS)}.")


def check_distance(distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; valid: {sorted(DISTANCES)}.")
