"""Adaptive probability-flow ODE solve: Dormand-Prince 5(4) with a PI step-size controller.

The solver and the controller are separate objects (as in diffrax): the solver proposes a
step and an error estimate, the controller accepts or rejects it and picks the next step
size. The loop is :func:`jaxdiff.samplers._driver.run_adaptive` (a ``lax.while_loop``),
so everything stays on device (unlike score_sde's host-side scipy ``solve_ivp``).

The ODE is the score_sde form dx/dt = f(x, t) - g(t)^2 score(x, t) / 2 in t, from t_start
down to t_end (> 0: the score is singular at t = 0 for VP).
"""

from typing import NamedTuple

import flax.struct
import jax.numpy as jnp

from jaxdiff import sdes
from jaxdiff.samplers._driver import run_adaptive
from jaxdiff.samplers.options import POSITIVE, SamplerOptions, integer, static, traced


@flax.struct.dataclass
class AdaptiveOptions(SamplerOptions):
    """``ode_adaptive``: tolerances (traced) and the most attempted steps (static)."""

    t_end: float = traced(1e-3)
    denoise_final: bool = static(True)
    rtol: float = traced(1e-5, POSITIVE)
    atol: float = traced(1e-5, POSITIVE)
    max_steps: int = static(10_000, integer(1))


# Dormand & Prince (1980), the tableau of RK5(4)7FM (FSAL).
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


class DormandPrince(NamedTuple):
    """The embedded RK5(4) pair of Dormand & Prince: order 5, error estimate of order 4.

    ``step(drift, t, x, h, f)`` with f = drift(x, t) returns (x_new, x_err, f_new, calls):
    the 5th-order solution, the difference to the 4th-order one, the drift at the new
    point (first same as last) and the 6 network calls made.
    """

    order: int = 5

    def step(self, drift, t, x, h, f):
        """One RK5(4) step; x, f (B, ...) -> (x_new (B, ...), x_err (B, ...), f_new, 6)."""
        ks = [f]
        for i in range(1, 7):
            dx = sum(a * k for a, k in zip(_A[i], ks, strict=False) if a != 0.0)
            ks.append(drift(x + h * dx, t + _C[i] * h))
        x_new = x + h * sum(b * k for b, k in zip(_B5, ks, strict=True) if b != 0.0)
        x_err = h * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks, strict=True))
        return x_new, x_err, ks[-1], 6


class PIController(NamedTuple):
    """A proportional-integral step-size controller (Gustafsson 1991; Hairer et al. II.4).

    The error norm is the largest per-example RMS of x_err / (atol + rtol max(|x|, |x_new|));
    a step is accepted when it is <= 1. The next step is
    h * clip(safety * err^(-alpha) * err_prev^beta, factor_min, factor_max) with
    alpha = 0.7 / k, beta = 0.4 / k, k = order of the error estimate + 1; after a rejection
    the factor is at most 1.

    Attributes:
      rtol, atol: relative and absolute tolerances (> 0).
      order: k above (5 for Dormand-Prince).
      safety, factor_min, factor_max: the usual safeguards.
    """

    rtol: float
    atol: float
    order: int = 5
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0

    def error_norm(self, x, x_new, x_err):
        """The largest per-example RMS of the scaled error; x, x_new, x_err (B, ...) -> scalar."""
        tol = self.atol + self.rtol * jnp.maximum(jnp.abs(x), jnp.abs(x_new))
        ratio = jnp.square(x_err / tol).reshape(x.shape[0], -1)
        return jnp.max(jnp.sqrt(jnp.mean(ratio, axis=-1)))

    def adapt(self, x, x_new, x_err, h, err_prev):
        """(accept, h_next, err_prev) scalars from the step's states (B, ...) and error."""
        err = jnp.maximum(self.error_norm(x, x_new, x_err), 1e-10)
        accept = err <= 1.0
        factor = self.safety * err ** (-0.7 / self.order) * err_prev ** (0.4 / self.order)
        factor = jnp.clip(factor, self.factor_min, self.factor_max)
        factor = jnp.where(accept, factor, jnp.minimum(factor, 1.0))
        return accept, h * factor, jnp.maximum(err, 1e-4)


def solve(net, process, x, opts: AdaptiveOptions):
    """Integrates the probability-flow ODE from opts.t_start to opts.t_end.

    The first step is (t_end - t_start) / num_steps; ``max_steps`` bounds the attempts.

    Returns:
      ``(x, info)`` as :func:`jaxdiff.samplers._driver.run_adaptive`.
    """
    score_fn = lambda x, t: net(x, t).score
    drift = lambda x, t: sdes.probability_flow_drift(process, score_fn, x, t)
    controller = PIController(rtol=opts.rtol, atol=opts.atol)
    t0, t1 = opts.t_start, opts.t_end
    h0 = (jnp.float32(t1) - t0) / opts.num_steps
    return run_adaptive(DormandPrince(), controller, drift, x, t0, t1, h0, opts.max_steps)
