"""Consistency distillation and consistency training losses (see :mod:`.consistency`).

Both return ``loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond) -> (loss,
metrics)`` as :mod:`jaxdiff.losses`, with ``model_fn`` the student network; the training
loop runs them like any loss (``loop.train(config, workdir, loss_fn=...)``). The
consistency-training loss also takes ``step=`` (its curriculum; ``loss_fn.needs_step``).
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._process import expand_like
from jaxdiff.distill import consistency as cm
from jaxdiff.samplers import grids
from jaxdiff.schedules import DiscreteSchedule


def karras_times(process, num_intervals: int, t_min: float, rho: float = 7.0) -> np.ndarray:
    """Times (num_intervals + 1,) ascending from t_min, rho-spaced in sigma~ (Karras et al.).

    The top is sigma~(1), or sigma~ = 80 where the process is pure noise before t = 1
    (``grids.edm``). On a :class:`DiscreteSchedule` the times are its levels
    (``grids.on_levels``), where a discrete-time teacher is defined.
    """
    grid = grids.edm(process, num_intervals, t_start=1.0, t_end=t_min, rho=rho)
    if isinstance(process, DiscreteSchedule):
        grid = grids.on_levels(grid, process)
    return grid.times[::-1].astype(np.float32)


def _metrics(per_example, t_hi, t_weights):
    weighted = per_example if t_weights is None else per_example * t_weights
    loss = jnp.mean(weighted)
    return loss, {"loss": loss, "loss_per_example": per_example, "t": t_hi}


def make_cd_loss(
    teacher_fn,
    process,
    *,
    kind: str,
    teacher_kind: str,
    t_min: float,
    num_intervals: int = 18,
    sigma_data: float = 0.5,
    distance: str = "l2",
    rho: float = 7.0,
    ode_step: Callable | None = None,
    make_f: Callable | None = None,
    weighting: str = "uniform",
):
    """Consistency distillation (Song et al. 2023, Algorithm 2; target = the student, sg).

    Args:
      teacher_fn: ``(z, t, **cond) -> prediction`` of the teacher (guided or not).
      process: the process both networks use.
      kind, teacher_kind: what the student and the teacher predict.
      t_min: where the consistency function is the identity.
      num_intervals: N of the grid (:func:`karras_times`).
      sigma_data: the data's standard deviation.
      distance: "l2" (mean squared) or "pseudo_huber".
      rho: the grid's exponent.
      ode_step: ``(x~, t_hi, t_lo, **cond) -> x~`` replacing the teacher's Heun step
        (tests put the exact ODE solution here).
      make_f: ``model_fn -> f(x~, t, **cond)`` replacing the boundary parametrisation.
      weighting: lambda_n, "uniform" (1, the CD paper's) or "ict" (1 / (sigma_{n+1} -
        sigma_n), iCT's; :func:`consistency.interval_weight`).

    Returns:
      ``loss_fn`` (see the module docstring).
    """
    cm.check_distance(distance)
    cm.check_weighting(weighting)
    times = jnp.asarray(karras_times(process, num_intervals, t_min, rho))
    teacher = cm.denoiser(teacher_fn, teacher_kind, process)
    step = ode_step or (
        lambda x, t_hi, t_lo, **c: cm.heun_step(teacher, process, x, t_hi, t_lo, **c)
    )
    make_f = make_f or (lambda fn: cm.consistency_fn(fn, kind, process, t_min, sigma_data))

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        k_n, k_eps = jax.random.split(key)
        n = jax.random.randint(k_n, x0.shape[:1], 0, times.shape[0] - 1)
        t_lo, t_hi = times[n], times[n + 1]
        eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        s_hi = cm.sigma_hat(process, t_hi)
        x_hi = x0 + expand_like(s_hi, x0) * eps
        x_lo = jax.lax.stop_gradient(step(x_hi, t_hi, t_lo, **cond))
        f = make_f(model_fn)
        weight = cm.interval_weight(weighting, s_hi, cm.sigma_hat(process, t_lo))
        per_example = cm.pair_loss(f, f, x_hi, t_hi, x_lo, t_lo, weight, distance, **cond)
        return _metrics(per_example, t_hi, t_weights)

    return loss_fn


def curriculum(total_steps: int, s0: int = 10, s1: int = 1280) -> tuple[list[int], int]:
    """iCT's grid sizes s0, 2 s0, ..., s1 and the steps K' each lasts (the last: the rest)."""
    stages = [min(s0 * 2**i, s1) for i in range(int(math.log2(s1 / s0)) + 1)]
    stages = stages + ([s1] if stages[-1] < s1 else [])
    return stages, max(1, total_steps // len(stages))


def interval_log_probs(sigmas: np.ndarray, p_mean: float, p_std: float) -> np.ndarray:
    """log p(n) of each interval [sigma_n, sigma_{n+1}] under log sigma ~ N(p_mean, p_std^2)."""
    from scipy.special import erf

    cdf = erf((np.log(sigmas) - p_mean) / (np.sqrt(2.0) * p_std))
    mass = np.maximum(np.diff(cdf), 1e-30)
    return np.log(mass / mass.sum())


def ct_tables(process, total_steps, t_min, *, s0=10, s1=1280, p_mean=-1.1, p_std=2.0, rho=7.0):
    """(times (L, s1 + 1), log-probs (L, s1), steps per stage): padded per-stage grids."""
    stages, per_stage = curriculum(total_steps, s0, s1)
    times = np.ones((len(stages), s1 + 1), np.float32)
    logp = np.full((len(stages), s1), -np.inf, np.float32)
    for i, n in enumerate(stages):
        grid = grids.edm(process, n, t_start=1.0, t_end=t_min, rho=rho).times[::-1]
        times[i, : n + 1] = grid
        sig = np.asarray(cm.sigma_hat(process, jnp.asarray(grid)), np.float64)
        logp[i, :n] = interval_log_probs(sig, p_mean, p_std)
    return times, logp, per_stage


def make_ct_loss(
    process,
    *,
    kind: str,
    t_min: float,
    total_steps: int,
    s0: int = 10,
    s1: int = 1280,
    p_mean: float = -1.1,
    p_std: float = 2.0,
    sigma_data: float = 0.5,
    distance: str = "pseudo_huber",
    rho: float = 7.0,
):
    """Improved consistency training (Song & Dhariwal 2023): no teacher, no EMA target.

    Args:
      process, kind, t_min, sigma_data, distance, rho: as :func:`make_cd_loss`.
      total_steps: the run's training steps (the curriculum's length).
      s0, s1: grid intervals at the start and at most (doubling every K' steps).
      p_mean, p_std: the lognormal distribution of the noise level.

    Returns:
      ``loss_fn(..., step=)``; weight lambda_n = 1 / (sigma_{n+1} - sigma_n).
    """
    cm.check_distance(distance)
    times, logp, per_stage = (
        jnp.asarray(a)
        for a in ct_tables(
            process, total_steps, t_min, s0=s0, s1=s1, p_mean=p_mean, p_std=p_std, rho=rho
        )
    )

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, step=0, **cond):
        k_n, k_eps = jax.random.split(key)
        stage = jnp.minimum(step // per_stage, times.shape[0] - 1)
        n = jax.random.categorical(k_n, logp[stage], shape=x0.shape[:1])
        t_lo, t_hi = times[stage, n], times[stage, n + 1]
        s_lo, s_hi = cm.sigma_hat(process, t_lo), cm.sigma_hat(process, t_hi)
        eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        x_hi = x0 + expand_like(s_hi, x0) * eps
        x_lo = x0 + expand_like(s_lo, x0) * eps
        f = cm.consistency_fn(model_fn, kind, process, t_min, sigma_data)
        weight = cm.interval_weight("ict", s_hi, s_lo)
        per_example = cm.pair_loss(f, f, x_hi, t_hi, x_lo, t_lo, weight, distance, **cond)
        return _metrics(per_example, t_hi, t_weights)

    loss_fn.needs_step = True  # type: ignore[attr-defined]
    return loss_fn
