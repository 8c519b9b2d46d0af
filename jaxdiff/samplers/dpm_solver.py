"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): multistep, data prediction.

With lambda(t) = log(scale / sigma), h = lambda_s - lambda_t and D the denoised estimate,

.. math::

   x_s = \\frac{\\sigma_s}{\\sigma_t} x_t - \\alpha_s (e^{-h} - 1)\\, \\tilde D,\\qquad
   \\tilde D = (1 + \\tfrac{1}{2r}) D_t - \\tfrac{1}{2r} D_{t_{prev}},\\ r = h_{prev} / h,

where D-tilde = D_t on the first step (first order; also where h is infinite, a step to
sigma = 0). The previous D is the stepper's memory; one network call per step.
"""

import flax.struct
import jax.numpy as jnp

from jaxdiff.samplers._driver import Stepper
from jaxdiff.samplers.options import SamplerOptions, host, traced


@flax.struct.dataclass
class DPMSolverOptions(SamplerOptions):
    """``dpm_solver++``: uniform log-SNR grid to t_end = 1e-3."""

    grid: str | None = host("log_snr")
    t_end: float = traced(1e-3)


def _lam(process, t):
    scale, sigma = process.marginal(t)
    return jnp.log(scale) - jnp.log(sigma), scale, sigma


def dpm_solver_pp_step(net, process, x, d_prev, sd, key, opts):
    """One DPM-Solver++(2M) step from sd.t to sd.s; returns the new D as memory.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    del key, opts
    lam_t, _, sigma_t = _lam(process, sd.t)
    lam_s, scale_s, sigma_s = _lam(process, sd.s)
    lam_prev, _, _ = _lam(process, sd.t_prev)
    d = net(x, sd.t).x0
    h = lam_s - lam_t
    first = (sd.step == 0) | ~jnp.isfinite(h)
    r = (lam_t - lam_prev) / jnp.where(first, 1.0, h)
    r = jnp.where(first, 1.0, r)
    d_mix = jnp.where(first, d, (1.0 + 0.5 / r) * d - (0.5 / r) * d_prev)
    x_next = (sigma_s / sigma_t) * x - scale_s * jnp.expm1(-h) * d_mix
    return x_next, d, 1


DPM_SOLVER_PP = Stepper(step=dpm_solver_pp_step, order=2.0, init=jnp.zeros_like)
