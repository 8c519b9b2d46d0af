"""Probability-flow ODE steppers on a fixed grid: Euler (order 1) and EDM's Heun (order 2).

Both integrate the probability-flow ODE in EDM's coordinates (Karras et al. 2022, eq. 4
with the scaling divided out): y = x / scale(t) and the noise level
sigma-hat(t) = sigma(t) / scale(t), where it reads

.. math::

   \\frac{dy}{d\\hat\\sigma} = \\hat\\epsilon(x, t) = \\frac{y - D(x, t)}{\\hat\\sigma}.

The exact solution is the same curve x(t) as the score_sde form dx/dt = f - g^2 s / 2
(a change of variables), but the right-hand side is nearly constant for simple data,
so the same number of steps is far more accurate. Euler in these coordinates is DDIM with
eta = 0. Heun corrects with the slope at the next point whenever that point has a noise
level sigma-hat > 0 (Karras et al. 2022, Algorithm 1: "if sigma_{i+1} != 0"); a step to
sigma-hat = 0 is Euler, since the slope is undefined there. So N intervals cost 2N - 1
network calls on a grid ending at sigma = 0 (VP, discrete schedules, t_end = 0) and 2N on
one ending above it (VE, whose sigma(0) = sigma_min, or t_end > 0).
"""

import flax.struct
import jax
import jax.numpy as jnp

from jaxdiff._process import edm_frame
from jaxdiff.samplers._driver import Stepper
from jaxdiff.samplers.options import SamplerOptions, host


@flax.struct.dataclass
class ODEOptions(SamplerOptions):
    """``ode_euler`` and ``ode_heun``: EDM's grid down to t_end = 0, no final denoise."""

    grid: str | None = host("edm")


def euler_step(net, process, x, aux, sd, key, opts):
    """One Euler step of dy/d sigma-hat = eps from sd.t to sd.s; 1 network call.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    del key, opts
    s_t, a_t = edm_frame(process, sd.t)
    s_s, a_s = edm_frame(process, sd.s)
    d = net(x, sd.t).eps
    y = x / a_t + (s_s - s_t) * d
    return a_s * y, aux, 1


def heun_update(net, process, x, t, s, d):
    """EDM's Heun step from t to s given the slope d = eps(x, t) at the start.

    Returns:
      x at time s, shape (B, ...), after one more network call (at the Euler predictor).
    """
    s_t, a_t = edm_frame(process, t)
    s_s, a_s = edm_frame(process, s)
    y_euler = x / a_t + (s_s - s_t) * d
    d_next = net(a_s * y_euler, s).eps
    y = x / a_t + (s_s - s_t) * 0.5 * (d + d_next)
    return a_s * y


def heun_or_euler(net, process, x, t, s, d):
    """Heun from t to s, or Euler when sigma-hat(s) = 0 (Alg. 1's ``if sigma_{i+1} != 0``).

    Args:
      net: the wrapped model.
      process: the process.
      x: the state at time t, shape (B, ...).
      t, s: scalar times, s < t.
      d: eps(x, t), shape (B, ...).

    Returns:
      ``(x_s, calls)``: x at time s (B, ...) and the network calls made (0 or 1, int32).
    """
    s_t, a_t = edm_frame(process, t)
    s_s, a_s = edm_frame(process, s)
    to_zero = s_s <= 0.0

    def euler(x):
        return a_s * (x / a_t + (s_s - s_t) * d)

    x_next = jax.lax.cond(to_zero, euler, lambda x: heun_update(net, process, x, t, s, d), x)
    return x_next, jnp.where(to_zero, 0, 1).astype(jnp.int32)


def heun_step(net, process, x, aux, sd, key, opts):
    """One EDM Heun step (Karras et al. 2022, Alg. 1): 2 calls, 1 on a step to sigma = 0.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    del key, opts
    d = net(x, sd.t).eps
    x_next, calls = heun_or_euler(net, process, x, sd.t, sd.s, d)
    return x_next, aux, 1 + calls


EULER = Stepper(step=euler_step, order=1.0)
HEUN = Stepper(step=heun_step, order=2.0)
