"""Reverse-SDE steppers: Euler-Maruyama, and predictor-corrector (Song et al. 2021).

Both use the reverse-time SDE of the process,
dx = [f(x, t) - g(t)^2 grad log p_t(x)] dt + g(t) dw-bar, from
:func:`jaxdiff.sdes.reverse_drift`; the score comes from the network in any
parametrization. Noise of step k is drawn from ``fold_in(key_k, j)``: j = 0 for the
predictor, j = 1..n for the corrector's Langevin steps.
"""

import flax.struct
import jax
import jax.numpy as jnp

from jaxdiff import sdes
from jaxdiff._process import expand_like
from jaxdiff.samplers._driver import Stepper, fold_in, normal
from jaxdiff.samplers.options import POSITIVE, SamplerOptions, host, integer, static, traced


@flax.struct.dataclass
class SDEOptions(SamplerOptions):
    """``euler_maruyama``: uniform grid to t_end = 1e-3, then a final denoise."""

    grid: str | None = host("uniform")
    t_end: float = traced(1e-3)
    denoise_final: bool = static(True)


@flax.struct.dataclass
class PCOptions(SDEOptions):
    """``pc``: the corrector's signal-to-noise ratio (traced) and steps per level (static)."""

    snr: float = traced(0.16, POSITIVE)
    n_corrector: int = static(1, integer(0))


def _normal(key, x, j: int = 0):
    return normal(fold_in(key, j), x.shape, x.dtype)


def euler_maruyama_step(net, process, x, aux, sd, key, opts):
    """x_s = x + drift (s - t) + g sqrt(t - s) z, with the reverse drift at (x, t); 1 call.

    Shapes: x (B, ...) at time sd.t in, (x at sd.s (B, ...), aux, calls: int32 scalar) out;
    the arguments are those of :class:`~jaxdiff.samplers._driver.Stepper`'s ``step``.
    """
    del opts
    score_fn = lambda x, t: net(x, t).score
    drift, g = sdes.reverse_drift(process, score_fn, x, sd.t)
    dt = sd.s - sd.t
    noise = expand_like(g, x) * jnp.sqrt(-dt) * _normal(key, x)
    return x + drift * dt + noise, aux, 1


def _discretized(process, t, s):
    """The forward chain x_t = a x_s + G z between grid times (score_sde's ``discretize``).

    a = scale(t) / scale(s), G^2 = sigma(t)^2 - a^2 sigma(s)^2: beta_i for VP, the variance
    increment for VE.
    """
    a = process.scale(t) / process.scale(s)
    g2 = jnp.square(process.sigma(t)) - jnp.square(a * process.sigma(s))
    return a, jnp.maximum(g2, 0.0)


def langevin_correct(net, process, x, t, s, key, snr, n_corrector):
    """score_sde's LangevinCorrector: ``n_corrector`` steps at time t, SNR-set step size.

    step = 2 a^2 (snr mean||z|| / mean||score||)^2 with the norms averaged over the batch
    (as score_sde: a per-example ratio would make the step depend on the position, which
    biases unadjusted Langevin), a^2 = scale(t)^2 / scale(s)^2 (the ``alpha`` of the VP
    chain, 1 for VE); x <- x + step score + sqrt(2 step) z.

    Returns:
      x after the corrector, shape (B, ...).
    """
    a, _ = _discretized(process, t, s)
    norm = lambda v: jnp.mean(jnp.sqrt(jnp.sum(jnp.square(v).reshape(v.shape[0], -1), -1)))

    def body(j, x):
        score = net(x, t).score
        z = _normal(key, x, j + 1)
        step = 2.0 * jnp.square(a) * jnp.square(snr * norm(z) / norm(score))
        return x + step * score + jnp.sqrt(2.0 * step) * z

    return jax.lax.fori_loop(0, n_corrector, body, x)


def pc_step(net, process, x, aux, sd, key, opts):
    """Langevin corrector at t, then the reverse-diffusion predictor from t to s.

    Predictor (score_sde's ReverseDiffusionPredictor on the discretized chain):
    x_s = x - (a - 1) x + G^2 score + G z. Calls: 1 + n_corrector.

    Shapes: x (B, ...) at sd.t in; (x at sd.s (B, ...), aux, calls) out.
    """
    n_corrector = opts.n_corrector
    x = langevin_correct(net, process, x, sd.t, sd.s, key, opts.snr, n_corrector)
    a, g2 = _discretized(process, sd.t, sd.s)
    score = net(x, sd.t).score
    x_mean = (2.0 - a) * x + g2 * score
    return x_mean + jnp.sqrt(g2) * _normal(key, x), aux, 1 + n_corrector


EULER_MARUYAMA = Stepper(step=euler_maruyama_step, order=1.0)
PC = Stepper(step=pc_step, order=1.0)
