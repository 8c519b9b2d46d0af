"""Progressive distillation (Salimans & Ho 2022, Algorithm 2) on a discrete schedule.

A student with S steps learns to do in one DDIM step what its teacher does in two. On a
:class:`~jaxdiff.schedules.DiscreteSchedule` of N steps the student's grid is the levels
k = N, N - s, ..., s, 0 with stride s = N / S (level k is time k / N; 0 is clean data);
its teacher walks the grid of stride s / 2. For a training image x and noise eps at a
student level k (uniform over the S levels):

    z_t   = a_t x + s_t eps                                  (t = k / N)
    z_t'  = DDIM_teacher(z_t,  t  -> t')                      (t' = (k - s/2) / N)
    z_t'' = DDIM_teacher(z_t', t' -> t'')                     (t'' = (k - s) / N)
    x~    = (z_t'' - (s_t''/s_t) z_t) / (a_t'' - (s_t''/s_t) a_t)

x~ is the clean image for which the student's single DDIM step t -> t'' lands exactly on
z_t''. The loss is the "truncated SNR" weighted error max(a_t^2 / s_t^2, 1) |x^ - x~|^2,
averaged over pixels, with x^ the student's prediction converted to x0.

The student samples with ``samplers.sample(method="ddim", num_steps=S, spacing="trailing")``,
which visits exactly these levels (:func:`student_levels`).

Example::

  loss_fn = progressive.make_loss(teacher_fn, process, student_steps=64, kind="v")
  loss, metrics = loss_fn(student_fn, key, images, label=labels)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization
from jaxdiff._process import expand_like
from jaxdiff._types import Array, ModelFn


def check_steps(num_train_steps: int, student_steps: int) -> int:
    """The student's stride N / S; raises ValueError unless S divides N / 2.

    Args:
      num_train_steps: N, the schedule's steps.
      student_steps: S, the student's steps.
    """
    if student_steps < 1 or num_train_steps % (2 * student_steps):
        raise ValueError(
            f"a student of {student_steps} steps needs a teacher grid of {2 * student_steps} "
            f"steps that divides the schedule's {num_train_steps}: choose a power of two "
            f"<= {num_train_steps // 2}."
        )
    return num_train_steps // student_steps


def student_levels(num_train_steps: int, student_steps: int) -> np.ndarray:
    """The levels N, N - s, ..., s, 0 (S + 1,) a student of S steps visits."""
    stride = check_steps(num_train_steps, student_steps)
    return np.arange(student_steps, -1, -1) * stride


def ddim_step(x0_fn: ModelFn, z: Array, t: Array, s: Array, process, **cond) -> Array:
    """One deterministic DDIM step z_t -> z_s (eta = 0).

    Args:
      x0_fn: ``(z, t, **cond) -> x0`` prediction, shaped like z.
      z: (B, ...) noisy images at times t.
      t, s: (B,) times, s < t, t > 0.
      process: a process with ``marginal(t) -> (scale, sigma)``.

    Returns:
      z_s = a_s x^ + s_s (z - a_t x^) / s_t, shaped like z.
    """
    x0 = x0_fn(z, t, **cond)
    a_t, s_t = (expand_like(v, z) for v in process.marginal(t))
    a_s, s_s = (expand_like(v, z) for v in process.marginal(s))
    return a_s * x0 + s_s * (z - a_t * x0) / s_t


def one_step_target(z_t: Array, z_end: Array, t: Array, t_end: Array, process) -> Array:
    """x~ (B, ...): the x0 whose one DDIM step t -> t_end takes z_t to z_end."""
    a_t, s_t = (expand_like(v, z_t) for v in process.marginal(t))
    a_e, s_e = (expand_like(v, z_t) for v in process.marginal(t_end))
    ratio = s_e / s_t
    return (z_end - ratio * z_t) / (a_e - ratio * a_t)


def two_step_target(teacher_x0_fn, z_t, times, process, **cond) -> Array:
    """x~ of two teacher DDIM steps over ``times`` = (t, t', t''), each (B,)."""
    t, t_mid, t_end = times
    z_mid = ddim_step(teacher_x0_fn, z_t, t, t_mid, process, **cond)
    z_end = ddim_step(teacher_x0_fn, z_mid, t_mid, t_end, process, **cond)
    return one_step_target(z_t, z_end, t, t_end, process)


def truncated_snr_weight(t: Array, process) -> Array:
    """max(a_t^2 / s_t^2, 1), shape (B,)."""
    scale, sigma = process.marginal(t)
    return jnp.maximum(jnp.square(scale / sigma), 1.0)


def make_loss(
    teacher_fn: ModelFn,
    process,
    student_steps: int,
    *,
    kind: str = "v",
    teacher_kind: str | None = None,
) -> Callable:
    """The progressive-distillation loss of a student with ``student_steps`` steps.

    Args:
      teacher_fn: ``(z, t, **cond) -> prediction`` of the teacher (guided or not); its
        output is treated as a constant.
      process: the :class:`~jaxdiff.schedules.DiscreteSchedule` both were trained on.
      student_steps: S; S must divide N / 2.
      kind: what the student predicts (``parametrization.KINDS``).
      teacher_kind: what the teacher predicts (default: ``kind``).

    Returns:
      ``loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond) -> (loss, metrics)``
      as :mod:`jaxdiff.losses` (``t`` given: the student times, on its grid); metrics hold
      "loss", "loss_per_example" (B,) and "t" (B,).
    """
    n = process.num_steps
    stride = check_steps(n, student_steps)
    teacher_x0 = parametrization.to_denoiser(teacher_fn, teacher_kind or kind, process)

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        k_level, k_eps = jax.random.split(key)
        if t is None:
            k = jax.random.randint(k_level, x0.shape[:1], 1, student_steps + 1) * stride
            t = k.astype(jnp.float32) / n
        times = (t, t - 0.5 * stride / n, t - stride / n)
        eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
        scale, sigma = (expand_like(v, x0) for v in process.marginal(t))
        z_t = scale * x0 + sigma * eps
        target = jax.lax.stop_gradient(two_step_target(teacher_x0, z_t, times, process, **cond))
        pred = parametrization.convert(model_fn(z_t, t, **cond), kind, "x0", z_t, t, process)
        mse = jnp.mean(jnp.square(pred - target), axis=tuple(range(1, x0.ndim)))
        per_example = truncated_snr_weight(t, process) * mse
        weighted = per_example if t_weights is None else per_example * t_weights
        loss = jnp.mean(weighted)
        return loss, {"loss": loss, "loss_per_example": per_example, "t": t}

    return loss_fn
