"""Consistency sampling (Song et al. 2023, Algorithm 1): one step, or a few with renoising.

The model is a consistency model of :mod:`jaxdiff.distill.consistency`: its network's x0
prediction at (z_t, t) becomes f(x~, t) = c_skip x~ + c_out F with the boundary
coefficients, so f is the identity at ``t_min``. Each step maps the state at t to the
data, f(z_t / scale(t), t), then noises that estimate to the next grid time s,
z_s = scale(s) (x0 + sqrt(sigma~_s^2 - sigma~_min^2) n); the last step returns the
estimate. ``num_steps`` is the number of network calls. With the default ``edm`` grid,
``sigma_min`` sets the lowest intermediate noise level (e.g. 2 steps visit sigma~ = 80,
sigma_min).
"""

import flax.struct
import jax.numpy as jnp

from jaxdiff._process import edm_frame, expand_like
from jaxdiff._types import Array
from jaxdiff.samplers._driver import Stepper, normal
from jaxdiff.samplers.options import POSITIVE, SamplerOptions, host, static, traced
from jaxdiff.schedules import DiscreteSchedule


@flax.struct.dataclass
class ConsistencyOptions(SamplerOptions):
    """``consistency``: the consistency function's constants.

    Attributes:
      sigma_data: the data's standard deviation in the boundary coefficients (traced).
      t_min: where f is the identity (static); None: :func:`default_t_min` (the first
        level 1 / N of a DiscreteSchedule, 1e-3 otherwise).
    """

    grid: str | None = host("edm")
    sigma_data: float = traced(0.5, POSITIVE)
    t_min: float | None = static(None, (lambda v: v is None or 0 < v < 1, "None or in (0, 1)"))


def boundary_coefficients(sigma, sigma_min, sigma_data: float = 0.5):
    """(c_skip, c_out) of the consistency function, each shaped like ``sigma``."""
    d = sigma - sigma_min
    c_skip = sigma_data**2 / (jnp.square(d) + sigma_data**2)
    c_out = sigma_data * d / jnp.sqrt(sigma_data**2 + jnp.square(sigma))
    return c_skip, c_out


def combine(x_tilde: Array, x0_hat: Array, sigma: Array, sigma_min, sigma_data: float = 0.5):
    """f from the input x~ (B, ...) and the network's x0 prediction; sigma (B,), sigma_min
    a scalar or (B,)."""
    sigma = expand_like(sigma, x_tilde)
    if jnp.ndim(sigma_min):
        sigma_min = expand_like(sigma_min, x_tilde)
    edm_skip = sigma_data**2 / (jnp.square(sigma) + sigma_data**2)
    edm_out = sigma * sigma_data / jnp.sqrt(jnp.square(sigma) + sigma_data**2)
    c_skip, c_out = boundary_coefficients(sigma, sigma_min, sigma_data)
    return c_skip * x_tilde + c_out * (x0_hat - edm_skip * x_tilde) / edm_out


CONTINUOUS_T_MIN = 1e-3  # score_sde's t_eps of VP models


def default_t_min(process) -> float:
    """1 / N for a DiscreteSchedule (its first level), else :data:`CONTINUOUS_T_MIN`."""
    if isinstance(process, DiscreteSchedule):
        return 1.0 / process.num_steps
    return CONTINUOUS_T_MIN


def t_min_of(process, opts) -> float:
    """``opts.t_min``, or :func:`default_t_min`."""
    return default_t_min(process) if opts.t_min is None else opts.t_min


def consistency_step(net, process, x, aux, sd, key, opts):
    """x0 = f(z_t / scale, t); z_s = scale(s) (x0 + sqrt(sigma~_s^2 - sigma~_min^2) n); 1 call.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s, or the data estimate at the last step,
    aux, calls) out; the arguments are those of ``Stepper.step``.
    """
    sigma_t, scale_t = edm_frame(process, sd.t)
    sigma_s, scale_s = edm_frame(process, sd.s)
    sigma_min = edm_frame(process, jnp.float32(t_min_of(process, opts)))[0]
    x_tilde = x / scale_t
    sigma_t = jnp.broadcast_to(sigma_t, x.shape[:1])
    x0 = combine(x_tilde, net(x, sd.t).x0, sigma_t, sigma_min, opts.sigma_data)
    std = jnp.sqrt(jnp.maximum(jnp.square(sigma_s) - sigma_min**2, 0.0))
    noised = scale_s * (x0 + std * normal(key, x.shape, x.dtype))
    return jnp.where(sd.is_last, x0, noised), aux, 1


CONSISTENCY = Stepper(step=consistency_step, order=0.0)
