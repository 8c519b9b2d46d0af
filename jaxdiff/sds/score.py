"""The score distillation gradient (Poole et al. 2022, "DreamFusion", Eq. 3).

For an image x = g(theta) rendered from parameters theta, noise eps ~ N(0, I) and a time t,

    grad_theta L_SDS = E_{t, eps}[ w(t) (eps_hat(x_t; y, t) - eps) dx/dtheta ],
    x_t = scale(t) x + sigma(t) eps,

where eps_hat is the (guided) noise prediction of a frozen diffusion model. The U-Net's
Jacobian is left out: :func:`sds_gradient` computes ``w(t) (eps_hat - eps)`` under
``stop_gradient`` and :func:`sds_loss` is the surrogate ``sum(x * stop_gradient(g)) / B``
whose gradient with respect to x is g / B (one view's formula, averaged over the views).
Back-propagating that surrogate through the renderer gives the SDS gradient exactly, and
nothing flows into the diffusion model.

Timestep annealing narrows the range of t as the optimisation proceeds (coarse shape
from large t first, details from small t later; as ProlificDreamer and DreamTime do).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import schedules
  >>> from jaxdiff.sds import score
  >>> process = schedules.DiscreteSchedule.from_name("cosine", num_steps=1000)
  >>> eps_fn = lambda x_t, t: jnp.zeros_like(x_t)
  >>> x, t = jnp.zeros((2, 4, 4, 3)), jnp.array([0.5, 0.5])
  >>> g = score.sds_gradient(jax.random.key(0), x, t, eps_fn, process)
  >>> g.shape
  (2, 4, 4, 3)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import guidance as guidance_lib
from jaxdiff import parametrization
from jaxdiff._process import Process, expand_like
from jaxdiff._types import Array, ModelFn, PRNGKey


def _sigma2(process: Process, t: Array) -> Array:
    return jnp.square(process.marginal(t)[1])


def _uniform(process: Process, t: Array) -> Array:
    return jnp.ones_like(t)


# w(t): "sigma2" is DreamFusion's sigma_t^2 = 1 - alpha_bar_t; "uniform" is w = 1.
WEIGHTINGS: dict[str, Callable[[Process, Array], Array]] = {
    "sigma2": _sigma2,
    "uniform": _uniform,
}


def _constant(progress, t_min, t_max, t_end):
    return t_min, t_max


def _linear(progress, t_min, t_max, t_end):
    return t_min, t_max + (t_end - t_max) * progress


def _sqrt(progress, t_min, t_max, t_end):
    return t_min, t_max + (t_end - t_max) * jnp.sqrt(progress)


# Upper bound of t over the run (progress = step / num_steps in [0, 1]): "none" keeps
# [t_min, t_max]; "linear" and "sqrt" move the upper bound from t_max to t_end.
ANNEALING: dict[str, Callable] = {"none": _constant, "linear": _linear, "sqrt": _sqrt}


def check_name(name: str, registry: dict, what: str) -> None:
    """Raises a ValueError naming the valid choices unless ``name`` is in ``registry``."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}.")


def t_range(
    step, num_steps: int, *, t_min=0.02, t_max=0.98, t_end=0.5, schedule: str = "linear"
) -> tuple[Array, Array]:
    """The interval [lo, hi] that t is drawn from at ``step`` of ``num_steps``.

    Args:
      step: the current step (int or traced scalar), 0-based.
      num_steps: the length of the run.
      t_min, t_max: the interval at the start.
      t_end: the upper bound at the end ("linear", "sqrt"); t_min <= t_end <= t_max.
      schedule: a key of :data:`ANNEALING`.

    Returns:
      (lo, hi) float32 scalars.

    Raises:
      ValueError: an unknown schedule or bounds out of order.
    """
    check_name(schedule, ANNEALING, "t annealing")
    if not 0.0 <= t_min <= t_end <= t_max <= 1.0:
        raise ValueError(
            f"need 0 <= t_min <= t_end <= t_max <= 1; got t_min={t_min}, t_end={t_end}, "
            f"t_max={t_max}."
        )
    progress = jnp.clip(jnp.asarray(step, jnp.float32) / max(num_steps - 1, 1), 0.0, 1.0)
    lo, hi = ANNEALING[schedule](progress, t_min, t_max, t_end)
    return jnp.float32(lo), jnp.asarray(hi, jnp.float32)


def sample_t(key: PRNGKey, batch: int, lo: Array, hi: Array, process: Process) -> Array:
    """t ~ U[lo, hi], shape (B,), moved to the nearest trained level of a discrete schedule."""
    t = jax.random.uniform(key, (batch,), minval=lo, maxval=hi)
    round_to_level = getattr(process, "round_to_level", None)
    return t if round_to_level is None else round_to_level(t)


def guided_eps_fn(
    model_fn: ModelFn,
    kind: str,
    process: Process,
    *,
    guidance: float = 0.0,
    null_label: int | None = None,
) -> ModelFn:
    """``eps_fn(x_t, t, **cond)``: a model's (classifier-free guided) noise prediction.

    Args:
      model_fn: ``(x, t, **cond) -> prediction`` of ``kind``.
      kind: "eps", "x0", "v" or "score" (see :mod:`jaxdiff.parametrization`).
      process: the process the model was trained with.
      guidance: w >= 0 in (1 + w) pred(x | y) - w pred(x | null); 0 is unguided.
      null_label: the null class (the model's num_classes); needed when guidance > 0.

    Raises:
      ValueError: an unknown kind, or guidance without a null label.
    """
    parametrization.check_kind(kind)
    if guidance:
        if null_label is None:
            raise ValueError("guidance > 0 needs null_label (the model's num_classes).")
        model_fn = guidance_lib.cfg(model_fn, guidance, null_label)
    return parametrization.convert_model_fn(model_fn, kind, "eps", process)


def sds_gradient(
    key: PRNGKey,
    x: Array,
    t: Array,
    eps_fn: Callable,
    process: Process,
    *,
    weighting: str = "sigma2",
    **cond,
) -> Array:
    """``w(t) (eps_hat(x_t; y, t) - eps)``, the SDS gradient with respect to the image x.

    Args:
      key: draws eps.
      x: rendered images (B, H, W, C) in the model's data range ([-1, 1]).
      t: times (B,).
      eps_fn: ``(x_t, t, **cond) -> eps_hat`` (e.g. :func:`guided_eps_fn`).
      process: the diffusion process (its marginal gives x_t).
      weighting: a key of :data:`WEIGHTINGS`.
      **cond: conditioning for eps_fn (e.g. label=).

    Returns:
      The gradient (B, H, W, C), under ``stop_gradient``: the denoiser gets no gradient.

    Raises:
      ValueError: an unknown weighting or a t that is not (B,).
    """
    check_name(weighting, WEIGHTINGS, "weighting")
    if jnp.shape(t) != x.shape[:1]:
        raise ValueError(f"t must have shape (B,) = ({x.shape[0]},); got {jnp.shape(t)}.")
    x = jax.lax.stop_gradient(x)
    eps = jax.random.normal(key, x.shape, x.dtype)
    scale, sigma = process.marginal(t)
    x_t = expand_like(scale, x) * x + expand_like(sigma, x) * eps
    eps_hat = eps_fn(x_t, t, **cond)
    grad = expand_like(WEIGHTINGS[weighting](process, t), x) * (eps_hat - eps)
    return jax.lax.stop_gradient(grad)


def sds_loss(x: Array, grad: Array) -> Array:
    """The surrogate ``sum(x * stop_gradient(grad)) / B``: d loss / dx = grad / B.

    Its value means nothing; its gradient through the renderer is the SDS gradient.
    """
    if x.shape != grad.shape:
        raise ValueError(f"x and grad must have one shape; got {x.shape} and {grad.shape}.")
    return jnp.sum(x * jax.lax.stop_gradient(grad)) / x.shape[0]
