"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churned Heun steps.

At each step the state is first pushed up to a higher noise level,
sigma-hat' = sigma-hat_t (1 + gamma) with gamma = min(S_churn / N, sqrt(2) - 1) inside
[S_tmin, S_tmax] (0 outside), by adding fresh noise of std
sqrt(sigma-hat'^2 - sigma-hat_t^2) S_noise; then one Heun step of the probability-flow ODE
(:mod:`jaxdiff.samplers.ode`) goes from sigma-hat' down to sigma-hat_s (Euler on a step
to sigma-hat = 0, as Algorithm 2's ``if sigma_{i+1} != 0``). Where gamma = 0 (S_churn = 0,
or a level outside [S_tmin, S_tmax]) the step is exactly ``ode_heun``'s: no noise is
added, not even the rounding error of sqrt(sigma-hat'^2 - sigma-hat_t^2). Noise levels are
sigma-hat = sigma / scale in units of the data, as in the paper; the time of the churned
level comes from inverting the log-SNR (capped at t = 1) and, for a DiscreteSchedule, is
rounded to the nearest trained level (EDM's ``round_sigma``); the added noise then makes up
the variance of that level exactly.
"""

import flax.struct
import jax.numpy as jnp

from jaxdiff.samplers._driver import Stepper, normal
from jaxdiff.samplers.grids import time_at_log_snr
from jaxdiff.samplers.ode import ODEOptions, heun_or_euler
from jaxdiff.samplers.options import NON_NEGATIVE, POSITIVE, traced
from jaxdiff.schedules import DiscreteSchedule


@flax.struct.dataclass
class EDMOptions(ODEOptions):
    """``edm_stochastic``: Karras et al.'s churn parameters (all traced).

    Attributes:
      S_churn: total churn; gamma = min(S_churn / N, sqrt(2) - 1).
      S_tmin, S_tmax: churn only at noise levels sigma-hat in [S_tmin, S_tmax].
      S_noise: scale of the added noise (slightly > 1 offsets the denoiser's bias).
    """

    S_churn: float = traced(40.0, NON_NEGATIVE)
    S_tmin: float = traced(0.05)
    S_tmax: float = traced(50.0)
    S_noise: float = traced(1.0, POSITIVE)


def _churn(process, x, t, key, opts: EDMOptions):
    """Returns (x_hat, t_hat): x moved to the churned noise level and its time."""
    scale_t, sigma_t = process.marginal(t)
    s_t = sigma_t / scale_t
    inside = (s_t >= opts.S_tmin) & (s_t <= opts.S_tmax)
    gamma = jnp.where(inside, jnp.minimum(opts.S_churn / opts.num_steps, 2**0.5 - 1), 0.0)
    scale_1, sigma_1 = process.marginal(jnp.float32(1.0))
    s_hat = jnp.minimum(s_t * (1.0 + gamma), sigma_1 / scale_1)
    t_hat = jnp.where(gamma > 0, time_at_log_snr(process, -2.0 * jnp.log(s_hat)), t)
    churn = gamma > 0
    if isinstance(process, DiscreteSchedule):  # static: the process's Python type
        t_hat = process.round_to_level(t_hat)
        churn = t_hat > t
        scale_hat, sigma_hat = process.marginal(t_hat)
        s_hat = sigma_hat / scale_hat
    z = normal(key, x.shape, x.dtype)
    extra = jnp.sqrt(jnp.maximum(jnp.square(s_hat) - jnp.square(s_t), 0.0))
    y_hat = x / scale_t + extra * opts.S_noise * z
    # No churn: exactly the deterministic state (no rounding noise, no rescaling).
    x_hat = jnp.where(churn, process.scale(t_hat) * y_hat, x)
    return x_hat, t_hat


def edm_stochastic_step(net, process, x, aux, sd, key, opts):
    """Churn, then Heun from the churned level to sd.s (Euler on a step to sigma = 0).

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    x_hat, t_hat = _churn(process, x, sd.t, key, opts)
    d = net(x_hat, t_hat).eps
    x_next, calls = heun_or_euler(net, process, x_hat, t_hat, sd.s, d)
    return x_next, aux, 1 + calls


EDM_STOCHASTIC = Stepper(step=edm_stochastic_step, order=1.0)
