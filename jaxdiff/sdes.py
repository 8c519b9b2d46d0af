"""Continuous diffusion processes (Song et al. 2021): VP, sub-VP and VE SDEs.

Each SDE is a frozen ``flax.struct.dataclass`` defined by its marginal
p(x_t | x_0) = N(scale(t) x_0, sigma(t)^2 I); the forward drift and diffusion come from
:class:`jaxdiff._process.Process`. The reverse-time SDE and the probability-flow ODE of
any process are the two functions at the bottom of this module.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff import sdes
  >>> sde = sdes.VPSDE(beta_min=0.1, beta_max=20.0)
  >>> scale, sigma = sde.marginal(jnp.array([0.5]))
  >>> round(float(scale[0]), 4), round(float(sigma[0]), 4)
  (0.2812, 0.9597)
"""

from collections.abc import Callable

import flax.struct
import jax.numpy as jnp

from jaxdiff._process import Process, batch_time, expand_like, is_concrete_number
from jaxdiff._types import Array


def _vp_log_scale(t: Array, beta_min, beta_max) -> Array:
    """log scale(t) = -1/2 int_0^t beta(s) ds for beta(s) = beta_min + s (beta_max - beta_min)."""
    return -0.25 * jnp.square(t) * (beta_max - beta_min) - 0.5 * t * beta_min


def _check_betas(beta_min, beta_max) -> None:
    if is_concrete_number(beta_min, beta_max) and not 0 < beta_min <= beta_max:
        raise ValueError(
            f"Need 0 < beta_min <= beta_max; got beta_min={beta_min}, beta_max={beta_max}."
        )


@flax.struct.dataclass
class VPSDE(Process):
    """Variance-preserving SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw.

    .. math::

       \\beta(t) = \\beta_{min} + t(\\beta_{max} - \\beta_{min}),\\quad
       \\mathrm{scale}(t) = e^{-\\frac12\\int_0^t \\beta},\\quad
       \\sigma(t)^2 = 1 - \\mathrm{scale}(t)^2.

    The continuous form of DDPM's linear schedule (beta_i = beta(t_i) / N).

    Attributes:
      beta_min: beta(0), > 0.
      beta_max: beta(1), >= beta_min.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        _check_betas(self.beta_min, self.beta_max)

    def scale(self, t: Array) -> Array:
        return jnp.exp(_vp_log_scale(t, self.beta_min, self.beta_max))

    def variance(self, t: Array) -> Array:
        return -jnp.expm1(2.0 * _vp_log_scale(t, self.beta_min, self.beta_max))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(self.variance(t))

    @property
    def prior_std(self) -> float:
        return 1.0


@flax.struct.dataclass
class SubVPSDE(VPSDE):
    """Sub-VP SDE (Song et al. 2021): the VP drift (and scale) with a smaller diffusion.

    .. math::

       g(t)^2 = \\beta(t)\\,(1 - e^{-2\\int_0^t \\beta}),\\quad
       \\mathrm{scale}(t) = e^{-\\frac12\\int_0^t \\beta},\\quad
       \\sigma(t) = 1 - e^{-\\int_0^t \\beta}.

    Attributes:
      beta_min: beta(0), > 0.
      beta_max: beta(1), >= beta_min.
    """

    def variance(self, t: Array) -> Array:
        return jnp.square(self.sigma(t))

    def sigma(self, t: Array) -> Array:
        return -jnp.expm1(2.0 * _vp_log_scale(t, self.beta_min, self.beta_max))


@flax.struct.dataclass
class VESDE(Process):
    """Variance-exploding SDE (SMLD): dx = sqrt(d sigma^2 / dt) dw, scale = 1.

    .. math::

       \\sigma(t) = \\sigma_{min} (\\sigma_{max} / \\sigma_{min})^t,

    i.e. the integrated variance started from sigma_min^2 at t = 0, as in score_sde.

    Attributes:
      sigma_min: sigma(0), > 0.
      sigma_max: sigma(1) > sigma_min; also the prior's standard deviation.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self):
        if is_concrete_number(self.sigma_min, self.sigma_max) and not (
            0 < self.sigma_min < self.sigma_max
        ):
            raise ValueError(
                f"Need 0 < sigma_min < sigma_max; got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}."
            )

    def scale(self, t: Array) -> Array:
        return jnp.ones_like(t)

    def sigma(self, t: Array) -> Array:
        return self.sigma_min * jnp.power(self.sigma_max / self.sigma_min, t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max


SDES: dict[str, type[Process]] = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def from_name(name: str, **params) -> Process:
    """Builds an SDE from its name in :data:`SDES` ("vp", "subvp", "ve") and parameters.

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    if name not in SDES:
        raise ValueError(f"Unknown SDE {name!r}; valid names: {sorted(SDES)}.")
    return SDES[name](**params)


ScoreFn = Callable[..., Array]


def reverse_drift(
    process: Process, score_fn: ScoreFn, x: Array, t: Array, probability_flow: bool = False, **cond
) -> tuple[Array, Array]:
    """Drift and diffusion of the reverse-time SDE or of the probability-flow ODE.

    Reverse SDE (Anderson 1982), integrated from t = 1 down to 0:
    dx = [f(x, t) - g(t)^2 s(x, t)] dt + g(t) dw-bar.
    Probability-flow ODE: dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t), with no noise.

    Args:
      process: any :class:`~jaxdiff._process.Process` (SDE or discrete schedule).
      score_fn: ``(x, t, **cond) -> score``, shaped like x.
      x: state, shape (B, ...).
      t: times, shape (B,) or scalar.
      probability_flow: return the ODE drift (and zero diffusion) instead.
      **cond: conditioning passed through to ``score_fn``.

    Returns:
      ``(drift, g)``: drift shaped like ``x``; g of shape (B,) (zeros for the ODE).
    """
    t = batch_time(t, x)
    f, g = process.coefficients(x, t)
    weight = 0.5 if probability_flow else 1.0
    drift = f - expand_like(weight * jnp.square(g), x) * score_fn(x, t, **cond)
    return drift, (jnp.zeros_like(g) if probability_flow else g)


def probability_flow_drift(process: Process, score_fn: ScoreFn, x: Array, t: Array, **cond):
    """dx/dt of the probability-flow ODE, shaped like ``x`` (see :func:`reverse_drift`)."""
    return reverse_drift(process, score_fn, x, t, probability_flow=True, **cond)[0]
