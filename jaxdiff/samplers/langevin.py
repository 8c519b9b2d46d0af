"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) over any process.

Each grid interval [t_k, t_{k+1}] moves to the next noise level t_{k+1}, then runs
``steps_per_level`` Langevin steps on p_{t_{k+1}}:

.. math::

   x \\leftarrow x + \\tfrac{\\alpha_i}{2} \\nabla \\log p_{t_i}(x) + \\sqrt{\\alpha_i}\\, z,
   \\qquad \\alpha_i = \\epsilon\\, \\sigma_i^2 / \\sigma_L^2,

with sigma_i = sigma(t_i) the noise std of the level and sigma_L that of the last level
(t_end). ``num_steps`` = L levels t_1 = t_start (sigma_1 = sigma_max, the top level, as
Song & Ermon start) ... t_L = t_end, so L >= 2; the default grid is uniform in log-SNR,
i.e. geometric sigma levels for VE, as the paper. The driver's grid for L levels is
(t_1, t_1, t_2, ..., t_L): step k runs the chain at level sd.s = t_{k+1}.
Langevin steps j of level k draw noise from ``fold_in(key_k, j)``.
"""

import flax.struct
import jax
import jax.numpy as jnp

from jaxdiff.samplers._driver import Stepper, fold_in, normal
from jaxdiff.samplers.options import POSITIVE, SamplerOptions, host, integer, static, traced


@flax.struct.dataclass
class LangevinOptions(SamplerOptions):
    """``annealed_langevin``: Langevin steps per level (static) and epsilon (traced)."""

    grid: str | None = host("log_snr")
    t_end: float = traced(1e-3)
    denoise_final: bool = static(True)
    steps_per_level: int = static(100, integer(1))
    step_size: float = traced(2e-5, POSITIVE)


def annealed_langevin_step(net, process, x, aux, sd, key, opts):
    """``steps_per_level`` Langevin steps at level sd.s; that many network calls.

    Options: ``step_size`` (epsilon), ``steps_per_level``, ``t_end`` (sets sigma_L).
    Shapes: x (B, ...) in; (x (B, ...) at level sd.s, aux, calls) out.
    """
    n = opts.steps_per_level
    sigma_level = process.sigma(sd.s)
    alpha = opts.step_size * jnp.square(sigma_level / process.sigma(opts.t_end))

    def body(j, x):
        z = normal(fold_in(key, j), x.shape, x.dtype)
        return x + 0.5 * alpha * net(x, sd.s).score + jnp.sqrt(alpha) * z

    return jax.lax.fori_loop(0, n, body, x), aux, n


ANNEALED_LANGEVIN = Stepper(step=annealed_langevin_step, order=1.0)
