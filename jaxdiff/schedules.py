"""Discrete DDPM beta schedules (linear, cosine, sigmoid) and their continuous forms.

A :class:`DiscreteSchedule` of N steps is a :class:`~jaxdiff._process.Process`: its step
i (0-based) sits at t_i = (i + 1) / N, with alpha_bar(t_i) = alphas_cumprod[i] and
alpha_bar(0) = 1; between grid points log alpha_bar is linear in t. Each named schedule
also carries its continuous form (``schedule.continuous``), which SDE/ODE samplers use.

Example:
  >>> from jaxdiff import schedules
  >>> sched = schedules.DiscreteSchedule.from_name("cosine", num_steps=1000)
  >>> sched.num_steps, round(float(sched.alphas_cumprod[0]), 6)
  (1000, 0.999959)
"""

import math
from collections.abc import Callable

import flax.struct
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdiff._process import Process, batch_time, expand_like, is_concrete_number
from jaxdiff._types import Array
from jaxdiff.sdes import VPSDE

MAX_BETA = 0.999
_LOG_ALPHA_BAR_FLOOR = -46.0  # log(1e-20): keeps a zero-terminal-SNR schedule finite


def _check_num_steps(num_steps) -> None:
    is_int = isinstance(num_steps, (int, np.integer)) and not isinstance(num_steps, bool)
    if not is_int or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1; got num_steps={num_steps!r}.")


def _check_betas(betas: np.ndarray, allow_one: bool = False) -> None:
    upper_ok = betas <= 1 if allow_one else betas < 1
    bad = ~((betas > 0) & upper_ok)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"betas must lie in (0, 1{']' if allow_one else ')'}; got betas[{i}]={betas[i]}."
        )


def betas_from_alpha_bar(alpha_bar: Callable, num_steps: int, max_beta: float = MAX_BETA):
    """beta_i = min(1 - alpha_bar(t_{i+1}) / alpha_bar(t_i), max_beta) on t_i = i / N.

    The discretisation of a continuous alpha_bar(t) used by iDDPM (Nichol & Dhariwal 2021).

    Returns:
      float64 NumPy array of shape (num_steps,).
    """
    _check_num_steps(num_steps)
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    ab = alpha_bar(t)
    return np.minimum(1.0 - ab[1:] / ab[:-1], max_beta)


@flax.struct.dataclass
class AlphaBarProcess(Process):
    """A variance-preserving process given by a closed-form alpha_bar(t).

    scale(t) = sqrt(alpha_bar(t)), sigma(t) = sqrt(1 - alpha_bar(t)).

    Attributes:
      kind: "cosine" or "sigmoid" (static).
      params: the schedule's parameters as a tuple (static).
    """

    kind: str = flax.struct.field(pytree_node=False, default="cosine")
    params: tuple = flax.struct.field(pytree_node=False, default=(0.008,))

    def alpha_bar(self, t):
        """alpha_bar(t), exactly 1 at t = 0 (compiled cos/exp may round f(0) / f(0))."""
        return jnp.where(t == 0, 1.0, ALPHA_BARS[self.kind](t, *self.params))

    def scale(self, t: Array) -> Array:
        return jnp.sqrt(self.alpha_bar(jnp.asarray(t, jnp.float32)))

    def variance(self, t: Array) -> Array:
        return 1.0 - self.alpha_bar(jnp.asarray(t, jnp.float32))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(self.variance(t))

    @property
    def prior_std(self) -> float:
        return 1.0


def cosine_alpha_bar(t, s: float = 0.008):
    """Nichol & Dhariwal's cosine schedule.

    .. math::

       \\bar\\alpha(t) = f(t) / f(0),\\quad f(t) = \\cos^2\\!\\Big(\\frac{t + s}{1 + s}
       \\frac{\\pi}{2}\\Big).

    Works on NumPy (float64) and JAX arrays alike.
    """
    xp = jnp if isinstance(t, jnp.ndarray) else np
    f = lambda u: xp.square(xp.cos((u + s) / (1 + s) * math.pi / 2))
    return f(t) / f(0.0)


def sigmoid_alpha_bar(t, start: float = -3.0, end: float = 3.0, tau: float = 1.0):
    """Chen (2023) "On the importance of noise scheduling": the sigmoid schedule.

    .. math::

       \\bar\\alpha(t) = \\frac{v_{end} - \\mathrm{sig}((t(e - s) + s)/\\tau)}{v_{end} - v_{start}},
       \\quad v_{start} = \\mathrm{sig}(s/\\tau),\\ v_{end} = \\mathrm{sig}(e/\\tau),

    clipped below at 1e-9. Works on NumPy (float64) and JAX arrays alike.
    """
    xp = jnp if isinstance(t, jnp.ndarray) else np
    sig = lambda u: 1.0 / (1.0 + xp.exp(-u))
    v_start, v_end = sig(start / tau), sig(end / tau)
    out = (v_end - sig((t * (end - start) + start) / tau)) / (v_end - v_start)
    return xp.clip(out, 1e-9, 1.0)


ALPHA_BARS = {"cosine": cosine_alpha_bar, "sigmoid": sigmoid_alpha_bar}


def linear(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02):
    """Ho et al.'s linear schedule, rescaled by 1000 / N for N != 1000 (as iDDPM).

    beta_i = linspace(c beta_start, c beta_end, N)_i with c = 1000 / N; its continuous form
    is ``VPSDE(1000 beta_start, 1000 beta_end)``.

    Returns:
      ``(betas, continuous)``: float64 array (num_steps,) and the continuous process.
    """
    _check_num_steps(num_steps)
    c = 1000.0 / num_steps
    if is_concrete_number(beta_end) and c * beta_end >= 1.0:
        raise ValueError(
            f"The linear schedule rescales beta_end by 1000 / num_steps; with num_steps="
            f"{num_steps} that gives beta_end={c * beta_end} >= 1. Use num_steps > "
            f"{1000.0 * beta_end:g}."
        )
    betas = np.linspace(c * beta_start, c * beta_end, num_steps, dtype=np.float64)
    return betas, VPSDE(beta_min=1000.0 * beta_start, beta_max=1000.0 * beta_end)


def cosine(num_steps: int, s: float = 0.008):
    """Nichol & Dhariwal's cosine schedule (s = 0.008, beta clipped at 0.999).

    Returns:
      ``(betas, continuous)`` as :func:`linear`.
    """
    betas = betas_from_alpha_bar(lambda t: cosine_alpha_bar(t, s), num_steps)
    return betas, AlphaBarProcess(kind="cosine", params=(s,))


def sigmoid(num_steps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0):
    """Chen (2023)'s sigmoid schedule with ``start``, ``end``, ``tau`` exposed.

    Returns:
      ``(betas, continuous)`` as :func:`linear`.
    """
    if is_concrete_number(start, end, tau) and not (end > start and tau > 0):
        raise ValueError(f"Need end > start and tau > 0; got {start=}, {end=}, {tau=}.")
    alpha_bar = lambda t: sigmoid_alpha_bar(t, start, end, tau)
    return betas_from_alpha_bar(alpha_bar, num_steps), AlphaBarProcess(
        kind="sigmoid", params=(start, end, tau)
    )


SCHEDULES: dict[str, Callable] = {"linear": linear, "cosine": cosine, "sigmoid": sigmoid}


def rescale_zero_terminal_snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """Lin et al. (2024): shift and scale sqrt(alpha_bar) so the last step has SNR = 0.

    sqrt(alpha_bar) -> (sqrt(alpha_bar) - a_T) a_0 / (a_0 - a_T), keeping the first value.
    """
    root = np.sqrt(alphas_cumprod)
    first, last = root[0], root[-1]
    return np.square((root - last) * first / (first - last))


@flax.struct.dataclass
class ZeroTerminalSNR(Process):
    """Continuous form of the zero-terminal-SNR rescale of a variance-preserving process.

    scale(t) = (b(t) - b(1)) / (1 - b(1)) with b the base process's scale, so scale(0) = 1,
    scale(1) = 0 (SNR 0 at t = 1) and sigma(t)^2 = 1 - scale(t)^2. Near t = 1 the forward
    drift d log scale / dt diverges, as it must for a process that reaches pure noise.

    Attributes:
      base: the process being rescaled (e.g. a schedule's ``continuous`` form).
    """

    base: Process

    def scale(self, t: Array) -> Array:
        t = jnp.asarray(t, jnp.float32)
        last = self.base.scale(jnp.ones_like(t))
        return jnp.maximum(self.base.scale(t) - last, 0.0) / (1.0 - last)

    def variance(self, t: Array) -> Array:
        return 1.0 - jnp.square(self.scale(t))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(self.variance(t))

    @property
    def prior_std(self) -> float:
        return 1.0


@flax.struct.dataclass
class DiscreteSchedule(Process):
    """A DDPM forward chain of N steps, behind the common Process interface.

    Attributes:
      betas: beta_i, shape (N,).
      alphas_cumprod: alpha_bar_i = prod_{j <= i} (1 - beta_j), shape (N,).
      continuous: the schedule's continuous form (a Process), used by SDE/ODE samplers.
    """

    betas: Array
    alphas_cumprod: Array
    continuous: Process

    @classmethod
    def from_name(
        cls, name: str, num_steps: int = 1000, zero_terminal_snr: bool = False, **params
    ) -> "DiscreteSchedule":
        """Builds a named schedule ("linear", "cosine", "sigmoid") of ``num_steps`` steps.

        Args:
          name: a key of :data:`SCHEDULES`.
          num_steps: N >= 1.
          zero_terminal_snr: rescale so alpha_bar at the last step is 0 (Lin et al. 2024).
          **params: the schedule function's parameters (e.g. ``s`` for cosine).

        Raises:
          ValueError: unknown name (listing the valid ones) or impossible parameters.
        """
        if name not in SCHEDULES:
            raise ValueError(f"Unknown schedule {name!r}; valid names: {sorted(SCHEDULES)}.")
        betas, continuous = SCHEDULES[name](num_steps, **params)
        return cls.from_betas(betas, continuous, zero_terminal_snr=zero_terminal_snr)

    @classmethod
    def from_betas(cls, betas, continuous: Process | None = None, zero_terminal_snr=False):
        """Builds a schedule from explicit betas.

        Args:
          betas: beta_i in (0, 1), shape (N,).
          continuous: the continuous form; defaults to the VPSDE with beta(t) = N beta.
          zero_terminal_snr: rescale alpha_bar so its last value is 0 (Lin et al. 2024).

        Raises:
          ValueError: betas of a wrong shape or outside (0, 1), quoting the first bad value.
        """
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size < 1:
            raise ValueError(f"betas must have shape (N,) with N >= 1; got {betas.shape}.")
        _check_betas(betas)
        alphas_cumprod = np.cumprod(1.0 - betas)
        if continuous is None:
            continuous = VPSDE(beta_min=betas[0] * betas.size, beta_max=betas[-1] * betas.size)
        if zero_terminal_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
            betas = 1.0 - alphas_cumprod / np.concatenate([[1.0], alphas_cumprod[:-1]])
            continuous = ZeroTerminalSNR(base=continuous)
        return cls(
            betas=jnp.asarray(betas, jnp.float32),
            alphas_cumprod=jnp.asarray(alphas_cumprod, jnp.float32),
            continuous=continuous,
        )

    @property
    def num_steps(self) -> int:
        """N, the number of steps (static: it is an array shape)."""
        return self.betas.shape[0]

    @property
    def prior_std(self) -> float:
        return 1.0

    def timesteps(self) -> Array:
        """The grid t_i = (i + 1) / N, shape (N,)."""
        return jnp.arange(1, self.num_steps + 1, dtype=jnp.float32) / self.num_steps

    def index(self, t: Array) -> Array:
        """The step index i = round(t N) - 1 of grid times, clipped to [0, N - 1].

        Returns:
          int32 indices, shaped like ``t``.
        """
        i = jnp.round(jnp.asarray(t, jnp.float32) * self.num_steps).astype(jnp.int32) - 1
        return jnp.clip(i, 0, self.num_steps - 1)

    def round_to_level(self, t: ArrayLike) -> Array:
        """The nearest time whose noise level the schedule defines: (i + 1) / N, or 0.

        t = 0 (clean data) stays 0; any t > 0 goes to the nearest step time, at least 1 / N
        (EDM's ``round_sigma`` for discrete-time networks). Works on NumPy and JAX arrays.

        Returns:
          times shaped like ``t`` (NumPy float64 for NumPy input, float32 JAX otherwise).
        """
        xp = np if isinstance(t, (float, int, np.ndarray, np.number)) else jnp
        n = self.num_steps
        k = xp.clip(xp.round(xp.asarray(t) * n), 1, n)
        return xp.where(xp.asarray(t) > 0, k / n, 0.0)

    def _log_alpha_bar(self, t: Array) -> Array:
        grid = jnp.arange(self.num_steps + 1, dtype=jnp.float32) / self.num_steps
        values = jnp.log(jnp.concatenate([jnp.ones((1,)), self.alphas_cumprod]))
        values = jnp.maximum(values, _LOG_ALPHA_BAR_FLOOR)
        return jnp.interp(jnp.asarray(t, jnp.float32), grid, values)

    def scale(self, t: Array) -> Array:
        return jnp.exp(0.5 * self._log_alpha_bar(t))

    def variance(self, t: Array) -> Array:
        return -jnp.expm1(self._log_alpha_bar(t))

    def sigma(self, t: Array) -> Array:
        return jnp.sqrt(self.variance(t))

    def _step_terms(self, t: Array):
        """(beta_i, alpha_bar_i, alpha_bar_{i-1}) at grid times t, with alpha_bar_{-1} = 1."""
        i = self.index(t)
        prev = jnp.where(i > 0, self.alphas_cumprod[jnp.maximum(i - 1, 0)], 1.0)
        return self.betas[i], self.alphas_cumprod[i], prev

    def posterior_variance(self, t: Array, kind: str = "beta_tilde") -> Array:
        """Variance of the reverse step x_{t_i} -> x_{t_{i-1}}: beta_i or beta-tilde_i.

        beta-tilde_i = beta_i (1 - alpha_bar_{i-1}) / (1 - alpha_bar_i), the variance of the
        true posterior q(x_{i-1} | x_i, x_0); beta_i is its upper bound (Ho et al. 2020).

        Args:
          t: grid times, shape (B,) or scalar.
          kind: "beta_tilde" or "beta".
        """
        beta, ab, ab_prev = self._step_terms(t)
        variances = {"beta": beta, "beta_tilde": beta * (1.0 - ab_prev) / (1.0 - ab)}
        if kind not in variances:
            raise ValueError(f"Unknown variance {kind!r}; valid: {sorted(variances)}.")
        return variances[kind]

    def log_variance_bounds(self, t: Array) -> tuple[Array, Array]:
        """(log beta-tilde_i clipped at step 0 to beta-tilde_1, log beta_i), as iDDPM.

        A learned variance interpolates between these two (see :meth:`learned_log_variance`).
        """
        i = self.index(t)
        beta, ab, ab_prev = self._step_terms(t)
        tilde = beta * (1.0 - ab_prev) / (1.0 - ab)
        tilde_1 = (
            self.betas[1 % self.num_steps]
            * (1.0 - self.alphas_cumprod[0])
            / (1.0 - self.alphas_cumprod[1 % self.num_steps])
        )
        return jnp.log(jnp.where(i == 0, tilde_1, tilde)), jnp.log(beta)

    def fixed_log_variance(self, t: Array, kind: str = "beta") -> Array:
        """The reverse step's fixed log variance as DDPM's and iDDPM's reference code.

        ``"beta"`` (fixed-large) is log beta_i, except at step 0 where it is
        log beta-tilde_1 (that code's ``np.append(posterior_variance[1], betas[1:])``, "to
        get a better decoder log likelihood"); ``"beta_tilde"`` (fixed-small) is log
        beta-tilde_i clipped at step 0 to beta-tilde_1. Only the decoder term of the bound
        sees the difference: samplers add no noise on the last step.

        Args:
          t: grid times, shape (B,) or scalar.
          kind: "beta" or "beta_tilde".

        Returns:
          log variances shaped like ``t``.
        """
        log_tilde, log_beta = self.log_variance_bounds(t)
        fixed = {
            "beta": jnp.where(self.index(t) == 0, log_tilde, log_beta),
            "beta_tilde": log_tilde,
        }
        if kind not in fixed:
            raise ValueError(f"Unknown variance {kind!r}; valid: {sorted(fixed)}.")
        return fixed[kind]

    def learned_log_variance(self, v: Array, t: Array) -> Array:
        """iDDPM's learned variance: log var = f log beta + (1 - f) log beta-tilde, f = (v+1)/2.

        Args:
          v: the network's variance output in [-1, 1], shape (B, ...).
          t: grid times, shape (B,) or scalar.

        Returns:
          log variance, shaped like ``v``.
        """
        t = batch_time(t, v)
        log_min, log_max = self.log_variance_bounds(t)
        frac = (v + 1.0) / 2.0
        return frac * expand_like(log_max, v) + (1.0 - frac) * expand_like(log_min, v)

    def posterior_mean(self, x0: Array, xt: Array, t: Array) -> Array:
        """Mean of the true posterior q(x_{i-1} | x_i, x_0) at grid times t.

        mu = beta_i sqrt(alpha_bar_{i-1}) / (1 - alpha_bar_i) x_0
             + (1 - alpha_bar_{i-1}) sqrt(1 - beta_i) / (1 - alpha_bar_i) x_i.

        Args:
          x0: clean data, shape (B, ...).
          xt: the noisy state at step i, shape (B, ...).
          t: grid times, shape (B,) or scalar.

        Returns:
          The posterior mean, shaped like ``xt``.
        """
        t = batch_time(t, xt)
        beta, ab, ab_prev = self._step_terms(t)
        coef_x0 = beta * jnp.sqrt(ab_prev) / (1.0 - ab)
        coef_xt = (1.0 - ab_prev) * jnp.sqrt(1.0 - beta) / (1.0 - ab)
        return expand_like(coef_x0, xt) * x0 + expand_like(coef_xt, xt) * xt
