"""Discrete-time samplers of a DiscreteSchedule: DDPM ancestral sampling and DDIM.

Both step between grid times t > s of the schedule (any respaced subset, Nichol &
Dhariwal 2021) through alpha_bar_t and alpha_bar_s, looked up exactly from
``schedule.alphas_cumprod`` (alpha_bar = 1 at t = 0). With alpha = alpha_bar_t /
alpha_bar_s and beta = 1 - alpha:

- DDPM (Ho et al. 2020): x_s ~ N(mu, var), mu the true posterior mean given the
  predicted x0, var = beta (``"beta"``), beta-tilde = beta (1 - alpha_bar_s) /
  (1 - alpha_bar_t) (``"beta_tilde"``), or learned (iDDPM: exp(f log beta + (1 - f)
  log beta-tilde_clipped), f = (v + 1) / 2; beta-tilde of the last step is clipped to
  that of the step before, as iDDPM's ``posterior_log_variance_clipped``). No noise is
  added on the final step.
- DDIM (Song et al. 2021): x_s = sqrt(alpha_bar_s) x0 + sqrt(1 - alpha_bar_s - s_eta^2)
  eps + s_eta z, s_eta^2 = eta^2 beta-tilde. eta = 1 is DDPM with beta-tilde; eta = 0 is
  deterministic (and runs backwards to encode data into noise).

``clip_x0=c`` (both; default None) clips the predicted x0 to [-c, c] and re-derives eps
from it, eps = (x - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t) (the "clip_denoised" of
Ho et al.'s and guided-diffusion's samplers). Data in [-1, 1] takes c = 1; it matters most
at the first steps of a grid starting near alpha_bar = 0 (trailing spacing), where the raw
x0 = (x - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) amplifies any error in eps.

Both draw the noise of step k as ``normal(fold_in(key, k))``: on one grid with one key
they consume identical noise.
"""

import flax.struct
import jax.numpy as jnp

from jaxdiff._process import expand_like
from jaxdiff.samplers._driver import Stepper, normal
from jaxdiff.samplers.options import NON_NEGATIVE, SamplerOptions, host, one_of, static, traced


@flax.struct.dataclass
class DiscreteOptions(SamplerOptions):
    """Options of ``ddpm`` and ``ddim`` (besides :class:`SamplerOptions`).

    Attributes:
      clip_x0: clip the predicted x0 to [-c, c] (None: no clipping; static).
    """

    grid: str | None = host("discrete")
    clip_x0: float | None = static(None, (lambda v: v is None or v > 0, "None or a float > 0"))


@flax.struct.dataclass
class DDPMOptions(DiscreteOptions):
    """``ddpm``: the fixed reverse variance, "beta_tilde" or "beta" (static)."""

    variance: str = static("beta_tilde", one_of("beta", "beta_tilde"))


@flax.struct.dataclass
class DDIMOptions(DiscreteOptions):
    """``ddim``: eta (traced), 0 deterministic, 1 DDPM with beta-tilde."""

    eta: float = traced(0.0, NON_NEGATIVE)


def alpha_bar(schedule, t):
    """alpha_bar at grid times t of a DiscreteSchedule (1 at t = 0), exact lookup.

    Shapes: t scalar or (B,) -> alpha_bar of the same shape.
    """
    at_data = jnp.asarray(t, jnp.float32) * schedule.num_steps < 0.5  # t = 0: before step 0
    return jnp.where(at_data, 1.0, schedule.alphas_cumprod[schedule.index(t)])


def _posterior(ab_t, ab_s):
    """(beta, beta_tilde) of the respaced step from alpha_bar_t to alpha_bar_s."""
    beta = 1.0 - ab_t / ab_s
    return beta, beta * (1.0 - ab_s) / jnp.maximum(1.0 - ab_t, 1e-20)


def _learned_log_variance(schedule, sd, v):
    """iDDPM: log var = f log beta + (1 - f) log beta-tilde (clipped at the last step)."""
    ab_t, ab_s = alpha_bar(schedule, sd.t), alpha_bar(schedule, sd.s)
    beta, tilde = _posterior(ab_t, ab_s)
    _, tilde_before = _posterior(alpha_bar(schedule, sd.t_prev), ab_t)
    log_min = jnp.log(jnp.where(sd.is_last, tilde_before, tilde))
    frac = (v + 1.0) / 2.0
    return frac * jnp.log(beta) + (1.0 - frac) * log_min


def _predict(net, x, sd, ab_t, opts):
    """The network's Prediction at sd.t, x0 clipped to [-c, c] when ``clip_x0 = c``."""
    pred = net(x, sd.t)
    clip = opts.clip_x0
    if clip is None:
        return pred
    x0 = jnp.clip(pred.x0, -clip, clip)
    eps = (x - jnp.sqrt(ab_t) * x0) / jnp.sqrt(jnp.maximum(1.0 - ab_t, 1e-20))
    return pred._replace(x0=x0, eps=eps)


def _normal(key, x):
    return normal(key, x.shape, x.dtype)


def ddpm_step(net, schedule, x, aux, sd, key, opts):
    """One ancestral step from grid time sd.t to sd.s; 1 network call.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    ab_t, ab_s = alpha_bar(schedule, sd.t), alpha_bar(schedule, sd.s)
    pred = _predict(net, x, sd, ab_t, opts)
    beta, tilde = _posterior(ab_t, ab_s)
    mean = (jnp.sqrt(ab_s) * beta * pred.x0 + jnp.sqrt(1.0 - beta) * (1.0 - ab_s) * x) / (
        1.0 - ab_t
    )
    if opts.learned_variance:
        log_var = _learned_log_variance(schedule, sd, pred.v)
    else:
        log_var = jnp.log({"beta": beta, "beta_tilde": tilde}[opts.variance])
        log_var = expand_like(log_var, x)
    std = jnp.where(sd.is_last, 0.0, jnp.exp(0.5 * log_var))
    return mean + std * _normal(key, x), aux, 1


def ddim_step(net, schedule, x, aux, sd, key, opts):
    """One DDIM step from grid time sd.t to sd.s (either direction when eta = 0); 1 call.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    ab_t, ab_s = alpha_bar(schedule, sd.t), alpha_bar(schedule, sd.s)
    pred = _predict(net, x, sd, ab_t, opts)
    _, tilde = _posterior(ab_t, ab_s)
    var = jnp.square(opts.eta) * jnp.maximum(tilde, 0.0)
    direction = jnp.sqrt(jnp.maximum(1.0 - ab_s - var, 0.0))
    x_next = jnp.sqrt(ab_s) * pred.x0 + direction * pred.eps
    return x_next + jnp.sqrt(var) * _normal(key, x), aux, 1


DDPM = Stepper(step=ddpm_step, order=1.0)
DDIM = Stepper(step=ddim_step, order=1.0)
