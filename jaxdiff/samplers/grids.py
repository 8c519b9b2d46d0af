"""Time grids for samplers: plain data, validated when built, kept apart from the steppers.

A grid is the sequence of N + 1 times t_0 = t_start > t_1 > ... > t_N = t_end a sampler
visits (``num_steps = N`` intervals). Builders turn a process and a spacing rule into such a
grid; the steppers never see how it was chosen (as diffrax's ``StepTo`` and EDM's sigma
grids). Grids are built outside ``jit`` from concrete processes; the times then enter the
compiled sampler as an ordinary (N + 1,) array.

Spacings:

- ``uniform``: t_k = t_start + k/N (t_end - t_start).
- ``quadratic``: t_k = t_end + (t_start - t_end) (1 - k/N)^2, dense near t_end (DDIM's "quad").
- ``edm``: Karras et al. (2022) eq. 5 in the noise level sigma-hat = sigma / scale:
  sigma-hat_k = (smax^(1/rho) + k/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, rho = 7.
- ``log_snr``: uniform in lambda = log(scale^2 / sigma^2) (DPM-Solver's "logSNR" spacing).
- ``discrete``: training steps of a :class:`~jaxdiff.schedules.DiscreteSchedule` chosen by
  diffusers' ``leading`` / ``trailing`` / ``linspace`` rules, then t_end (0 means
  alpha_bar = 1, DDIM's final step).

Any grid built for a DiscreteSchedule holds only its levels: each time is moved to the
nearest step time (i + 1) / N (0 stays 0; see :func:`on_levels`), so a discrete-time
network is queried only at noise levels it was trained on; the ``edm`` grid then stops at
the schedule's smallest level, as EDM's ``sigma_min = max(sigma_min, net.sigma_min)``.

Example:
  >>> from jaxdiff import sdes
  >>> from jaxdiff.samplers import grids
  >>> g = grids.uniform(sdes.VPSDE(), num_steps=4, t_end=0.2)
  >>> [round(float(t), 2) for t in g.times]
  [1.0, 0.8, 0.6, 0.4, 0.2]
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import _spacing
from jaxdiff._process import Process
from jaxdiff._types import Array
from jaxdiff.schedules import DiscreteSchedule

EDM_SIGMA_MIN = 0.002  # Karras et al. (2022), Table 1
EDM_SIGMA_MAX = 80.0  # ditto; where a degenerate process's edm grid starts (see ``edm``)
_DEGENERATE_SIGMA_HAT = 1e4  # sigma / scale beyond this: t is unresolvable in float32


@dataclasses.dataclass(frozen=True)
class TimeGrid:
    """The N + 1 times a sampler visits, strictly monotone, in [0, 1].

    Attributes:
      times: float32 NumPy array of shape (N + 1,), N >= 1. Decreasing for sampling,
        increasing for encoding (DDIM inversion).

    Raises:
      ValueError: when built from times that are not 1-D, too short, non-finite, outside
        [0, 1] or not strictly monotone.
    """

    times: np.ndarray

    def __post_init__(self):
        t = np.asarray(self.times, dtype=np.float32)
        if t.ndim != 1 or t.size < 2:
            raise ValueError(f"A time grid needs shape (N + 1,) with N >= 1; got {t.shape}.")
        if not np.all(np.isfinite(t)) or t.min() < 0 or t.max() > 1:
            raise ValueError(f"Grid times must be finite and lie in [0, 1]; got {t}.")
        d = np.diff(t)
        if not (np.all(d < 0) or np.all(d > 0)):
            k = int(np.argmax(d >= 0)) if d[0] < 0 else int(np.argmax(d <= 0))
            raise ValueError(
                f"Grid times must be strictly monotone; t[{k}]={t[k]} and t[{k + 1}]={t[k + 1]} "
                "are not (too many steps for float32 near t_end?)."
            )
        object.__setattr__(self, "times", t)

    @property
    def num_steps(self) -> int:
        """N, the number of intervals."""
        return self.times.size - 1

    def reversed(self) -> "TimeGrid":
        """The same times in the opposite order (for encoding data into noise)."""
        return TimeGrid(self.times[::-1].copy())


def check_span(num_steps, t_start, t_end) -> None:
    """Validates num_steps (int >= 1) and 0 <= t_end < t_start <= 1.

    Raises:
      ValueError: naming the offending value and the allowed range.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"num_steps must be an integer >= 1; got num_steps={num_steps!r}.")
    if num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1; got num_steps={num_steps}.")
    if not 0.0 <= t_end < 1.0:
        raise ValueError(f"t_end must lie in [0, 1); got t_end={t_end}.")
    if not t_end < t_start <= 1.0:
        raise ValueError(f"t_start must lie in (t_end, 1] = ({t_end}, 1]; got t_start={t_start}.")


def time_at_log_snr(process: Process, lam: Array, num_iters: int = 64) -> Array:
    """Inverts the (decreasing) log-SNR of a process by bisection on [0, 1].

    Works eagerly and under ``jit`` (a ``lax.fori_loop``).

    Args:
      process: any process whose log-SNR decreases in t.
      lam: target log-SNR values, any shape; +inf maps to 0, -inf to 1.
      num_iters: bisection steps (64 reaches float32 resolution).

    Returns:
      times t with log_snr(t) = lam, shaped like ``lam``.
    """
    lam = jnp.asarray(lam, jnp.float32)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = process.log_snr(mid) > lam  # mid is too early
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, num_iters, body, (jnp.zeros_like(lam), jnp.ones_like(lam)))
    return 0.5 * (lo + hi)


_time_at_log_snr_jit = jax.jit(time_at_log_snr, static_argnums=2)


def _times_at_log_snr(process: Process, lam) -> np.ndarray:
    """Eager grid-building form of :func:`time_at_log_snr` (compiled once per process type)."""
    return np.asarray(_time_at_log_snr_jit(process, jnp.asarray(lam, jnp.float32), 64))


def _with_ends(times, t_start, t_end) -> TimeGrid:
    times = np.asarray(times, dtype=np.float64)
    times[0], times[-1] = t_start, t_end
    return TimeGrid(times)


def uniform(process: Process, num_steps: int, t_start: float = 1.0, t_end: float = 0.0):
    """Uniform times t_k = t_start + k/N (t_end - t_start), k = 0..N.

    Returns:
      a :class:`TimeGrid` of N + 1 times.
    """
    del process
    check_span(num_steps, t_start, t_end)
    return _with_ends(np.linspace(t_start, t_end, num_steps + 1), t_start, t_end)


def quadratic(process: Process, num_steps: int, t_start: float = 1.0, t_end: float = 0.0):
    """Quadratic times t_k = t_end + (t_start - t_end)(1 - k/N)^2, dense near t_end.

    Returns:
      a :class:`TimeGrid` of N + 1 times.
    """
    del process
    check_span(num_steps, t_start, t_end)
    u = 1.0 - np.arange(num_steps + 1) / num_steps
    return _with_ends(t_end + (t_start - t_end) * np.square(u), t_start, t_end)


def _sigma_hat(process: Process, t: float) -> float:
    return float(jnp.exp(-0.5 * process.log_snr(jnp.float32(t))))


def edm(
    process: Process,
    num_steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    rho: float = 7.0,
    sigma_min: float = EDM_SIGMA_MIN,
):
    """Karras et al. (2022)'s rho-spaced grid in sigma-hat = sigma(t) / scale(t).

    .. math::

       \\hat\\sigma_k = \\big(\\hat\\sigma_{max}^{1/\\rho} + \\tfrac{k}{M}
       (\\hat\\sigma_{min}^{1/\\rho} - \\hat\\sigma_{max}^{1/\\rho})\\big)^{\\rho}.

    With sigma-hat_max = sigma-hat(t_start): if sigma-hat(t_end) < ``sigma_min`` (e.g.
    t_end = 0 for a VP process), the grid is EDM's: N rho-spaced levels down to
    ``sigma_min`` (M = N - 1) and a last step to t_end; otherwise N + 1 rho-spaced levels
    from sigma-hat(t_start) to sigma-hat(t_end) (M = N).

    A process whose sigma-hat(t_start) exceeds 1e4 (the cosine schedule's continuous form
    at t = 1 has sigma-hat ~ 2e7) is pure noise there and its times near t_start are not
    resolvable in float32; the grid then starts at sigma-hat = 80 (EDM's sigma_max), i.e.
    its first time is t(80) < t_start, as EDM starts its VP sampler at sigma_max.

    Args:
      process: the process (defines sigma-hat(t)).
      num_steps: N >= 1.
      t_start, t_end: first and last time, 0 <= t_end < t_start <= 1.
      rho: the exponent (> 0); 7 as EDM.
      sigma_min: EDM's smallest noise level before the final step.

    Returns:
      a :class:`TimeGrid` of N + 1 times.
    """
    check_span(num_steps, t_start, t_end)
    if not rho > 0:
        raise ValueError(f"rho must be > 0; got rho={rho}.")
    if isinstance(process, DiscreteSchedule):  # no level below the first step's
        sigma_min = max(sigma_min, _sigma_hat(process, 1.0 / process.num_steps))
    s_max, s_end = _sigma_hat(process, t_start), _sigma_hat(process, t_end)
    degenerate = s_max > _DEGENERATE_SIGMA_HAT
    s_max = EDM_SIGMA_MAX if degenerate else s_max
    last = s_end if s_end >= sigma_min else sigma_min
    levels = num_steps + 1 if s_end >= sigma_min else num_steps
    if not s_max > last:
        raise ValueError(
            f"edm grid needs sigma-hat(t_start)={s_max} > sigma_min={last}; lower sigma_min."
        )
    u = np.arange(levels) / max(levels - 1, 1)
    s = (s_max ** (1 / rho) + u * (last ** (1 / rho) - s_max ** (1 / rho))) ** rho
    times = _times_at_log_snr(process, -2.0 * np.log(s)).astype(np.float64)
    if levels == num_steps:
        times = np.append(times, t_end)
    return _with_ends(times, times[0] if degenerate else t_start, t_end)


def log_snr(process: Process, num_steps: int, t_start: float = 1.0, t_end: float = 1e-3):
    """Times uniform in log-SNR lambda(t) = log(scale^2 / sigma^2) (DPM-Solver).

    Raises:
      ValueError: if lambda is infinite at t_start or t_end (e.g. t_end = 0 for VP).

    Returns:
      a :class:`TimeGrid` of N + 1 times.
    """
    check_span(num_steps, t_start, t_end)
    lam0, lam1 = (
        float(process.log_snr(jnp.float32(t_start))),
        float(process.log_snr(jnp.float32(t_end))),
    )
    if not (np.isfinite(lam0) and np.isfinite(lam1)):
        raise ValueError(
            f"log_snr grid needs a finite log-SNR at both ends; got {lam0} at t_start={t_start} "
            f"and {lam1} at t_end={t_end}. Use t_end > 0."
        )
    lams = np.linspace(lam0, lam1, num_steps + 1)
    return _with_ends(_times_at_log_snr(process, lams), t_start, t_end)


def _grid_index(schedule: DiscreteSchedule, t: float, name: str) -> int:
    k = t * schedule.num_steps
    if abs(k - round(k)) > 1e-4:
        raise ValueError(
            f"{name}={t} is not on the schedule's grid k / N (N = {schedule.num_steps})."
        )
    return int(round(k))


def discrete(
    schedule: Process,
    num_steps: int,
    t_start: float = 1.0,
    t_end: float = 0.0,
    spacing: str = "trailing",
):
    """Training steps of a discrete schedule (diffusers' spacings), then t_end.

    The schedule's step i sits at t = (i + 1) / N_train. The steps with times in
    (t_end, t_start] are spaced by ``spacing``:

    - ``leading``: i = lo + k * (M // S), k < S (DDIM paper, diffusers' default);
    - ``trailing``: i = lo + round(M - k M / S) - 1 (Lin et al. 2024; starts at t_start);
    - ``linspace``: i = lo + round(linspace(0, M - 1, S)) (iDDPM respacing);

    for S = num_steps steps out of M available; the last interval ends at t_end (t_end = 0:
    alpha_bar = 1, a step to clean data).

    Raises:
      ValueError: not a DiscreteSchedule, times off the grid, or S > M.

    Returns:
      a :class:`TimeGrid` of S + 1 times.
    """
    if not isinstance(schedule, DiscreteSchedule):
        raise ValueError(
            f"The discrete grid needs a DiscreteSchedule; got {type(schedule).__name__}."
        )
    check_span(num_steps, t_start, t_end)
    hi = _grid_index(schedule, t_start, "t_start") - 1
    lo = _grid_index(schedule, t_end, "t_end")
    if num_steps > hi - lo + 1:
        raise ValueError(
            f"num_steps={num_steps} exceeds the {hi - lo + 1} schedule steps in "
            f"(t_end, t_start] = ({t_end}, {t_start}]."
        )
    idx = _spacing.spaced_indices(lo, hi, num_steps, spacing)
    times = np.append((idx + 1) / schedule.num_steps, t_end)
    return TimeGrid(times)


GRIDS: dict[str, Callable[..., TimeGrid]] = {
    "uniform": uniform,
    "quadratic": quadratic,
    "edm": edm,
    "log_snr": log_snr,
    "discrete": discrete,
}

GRID_PARAMS: dict[str, tuple[str, ...]] = {
    "uniform": (),
    "quadratic": (),
    "edm": ("rho", "sigma_min"),
    "log_snr": (),
    "discrete": ("spacing",),
}


def on_levels(grid: TimeGrid, schedule: DiscreteSchedule) -> TimeGrid:
    """The grid with every time moved to a level of a discrete schedule, keeping N steps.

    Levels are the step times (i + 1) / N and 0. Each time goes to the nearest level
    (``DiscreteSchedule.round_to_level``); where two land on one level (a grid denser than
    the schedule there, e.g. uniform log-SNR near the cosine schedule's last step, whose
    beta is clipped at 0.999) the later ones move to the next levels down, then the earlier
    ones up, so both ends keep their own levels.

    Raises:
      ValueError: if the grid has more times than the schedule has levels in its span.
    """
    times = grid.times.astype(np.float64)
    if times[0] < times[-1]:
        return on_levels(grid.reversed(), schedule).reversed()
    k = np.round(np.asarray(schedule.round_to_level(times)) * schedule.num_steps)
    k = _spacing.separate_levels(k)
    if np.any(np.diff(k) >= 0) or k[-1] < (0 if times[-1] == 0 else 1):
        raise ValueError(
            f"A grid of {grid.num_steps} steps from t={times[0]} to t={times[-1]} needs more "
            f"levels than the {schedule.num_steps}-step schedule has there: a discrete-time "
            "network has no noise level between its steps. Use fewer steps."
        )
    return TimeGrid(k / schedule.num_steps)


def build(name: str, process: Process, num_steps: int, t_start: float, t_end: float, **params):
    """Builds the grid ``name`` of :data:`GRIDS` with its extra ``params``.

    For a DiscreteSchedule the times are moved to its levels (:func:`on_levels`).

    Raises:
      ValueError: unknown grid name (listing valid ones) or a parameter it does not take.
    """
    if name not in GRIDS:
        raise ValueError(f"Unknown grid {name!r}; valid grids: {sorted(GRIDS)}.")
    extra = sorted(set(params) - set(GRID_PARAMS[name]))
    if extra:
        raise ValueError(
            f"Grid {name!r} takes parameters {list(GRID_PARAMS[name])}; got also {extra}."
        )
    grid = GRIDS[name](process, num_steps, t_start, t_end, **params)
    return on_levels(grid, process) if isinstance(process, DiscreteSchedule) else grid
