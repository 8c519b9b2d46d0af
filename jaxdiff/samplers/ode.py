"""Probability-flow ODE steppers on a fixed grid: Euler (order 1) and EDM's Heun (order 2).

Both integrate the probability-flow ODE in EDM's coordinates (Karras et al. 2022, eq. 4
with the scaling divided out): y = x / scale(t) and the noise level
sigma-hat(t) = sigma(t) / scale(t), where it reads

.. math::

   \\frac{dy}{d\\hat\\sigma} = \\hat\\epsilon(x, t) = \\frac{y - D(x, t)}{\\hat\\sigma}.

The exact solution is the same curve x(t) as the score_sde form dx/dt = f - g^2 s / 2
(a change of variables), but the right-hand side is nearly constant for simple data,
so the same number of steps is far more accurate. Euler in these coordinates is DDIM with
eta = 0. Heun corrects with the slope at the next point, except on the last step
(Euler), so N intervals cost 2N - 1 network calls.
"""

import jax
import jax.numpy as jnp

from jaxdiff.samplers._driver import Stepper


def _sigma_hat(process, t):
    scale, sigma = process.marginal(t)
    return sigma / scale, scale


def euler_step(net, process, x, aux, sd, key, opts):
    """One Euler step of dy/d sigma-hat = eps from sd.t to sd.s; 1 network call."""
    del key, opts
    s_t, a_t = _sigma_hat(process, sd.t)
    s_s, a_s = _sigma_hat(process, sd.s)
    d = net(x, sd.t).eps
    y = x / a_t + (s_s - s_t) * d
    return a_s * y, aux, 1


def heun_update(net, process, x, t, s, d):
    """EDM's Heun step from t to s given the slope d = eps(x, t) at the start.

    Returns:
      x at time s, shape (B, ...), after one more network call (at the Euler predictor).
    """
    s_t, a_t = _sigma_hat(process, t)
    s_s, a_s = _sigma_hat(process, s)
    y_euler = x / a_t + (s_s - s_t) * d
    d_next = net(a_s * y_euler, s).eps
    y = x / a_t + (s_s - s_t) * 0.5 * (d + d_next)
    return a_s * y


def heun_step(net, process, x, aux, sd, key, opts):
    """One EDM Heun step (Karras et al. 2022, Alg. 1): 2 calls, 1 on the last step."""
    del key, opts
    d = net(x, sd.t).eps

    def euler(x):
        s_t, a_t = _sigma_hat(process, sd.t)
        s_s, a_s = _sigma_hat(process, sd.s)
        return a_s * (x / a_t + (s_s - s_t) * d)

    x_next = jax.lax.cond(
        sd.is_last, euler, lambda x: heun_update(net, process, x, sd.t, sd.s, d), x
    )
    return x_next, aux, jnp.where(sd.is_last, 1, 2)


EULER = Stepper(step=euler_step, order=1.0)
HEUN = Stepper(step=heun_step, order=2.0)
