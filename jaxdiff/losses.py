"""Training losses: batch in, (mean loss, metrics) out, per-example values inside.

Every factory in :data:`LOSSES` takes a process and options and returns

    ``loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond) -> (loss, metrics)``

with ``model_fn(x, t, **cond)`` the network, ``x0`` clean data (B, ...), ``t`` the times
(drawn by the loss with ``time_sampler`` and ``t_min`` when None), ``t_weights`` (B,)
multiplying the per-example losses (importance weights from
:func:`jaxdiff.time_sampling.importance_sample`) and ``cond`` passed through to the model.
``metrics`` holds
``"loss"``, ``"loss_per_example"`` (B,, before ``t_weights``) and ``"t"`` (B,).

Losses (x_t = scale x0 + sigma eps):

- ``"dsm"``: 1/2 lambda(t) ||s(x_t, t) + eps / sigma||^2 summed over data axes (Song et
  al. 2021), lambda = sigma^2 ("sigma2"), g(t)^2 ("likelihood") or 1 ("none");
- ``"eps"``, ``"v"``, ``"x0"``: mean squared error against that target (Ho et al. 2020;
  Salimans & Ho 2022), averaged over data axes;
- ``"edm"``: Karras et al. (2022), ln sigma ~ N(P_mean, P_std^2), weight
  (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, a denoiser ``model_fn(x, sigma)``;
- ``"hybrid"``: iDDPM's L_simple + lambda L_vlb for a learned variance.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import losses, sdes
  >>> loss_fn = losses.make_loss("eps", sdes.VPSDE())
  >>> model_fn = lambda x, t: jnp.zeros_like(x)
  >>> loss, metrics = loss_fn(model_fn, jax.random.key(0), jnp.ones((4, 2)))
"""

import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, ndtr, ndtri
from jax.typing import ArrayLike

from jaxdiff import parametrization
from jaxdiff._process import Process, batch_time, expand_like
from jaxdiff._types import Array, ModelFn, PRNGKey
from jaxdiff.schedules import DiscreteSchedule
from jaxdiff.time_sampling import TIME_SAMPLERS, sample_time, sample_unit

LossFn = Callable[..., tuple[Array, dict]]
_LOG2 = math.log(2.0)


def _check_choice(what: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid names: {sorted(valid)}.")


def _check_process(process, loss: str, cls=Process) -> None:
    if not isinstance(process, cls):
        raise ValueError(f"The {loss!r} loss needs a {cls.__name__}; got {type(process).__name__}.")


def mean_over_data(a: Array) -> Array:
    """Mean over all non-batch axes: (B, ...) -> (B,)."""
    return jnp.mean(a.reshape(a.shape[0], -1), axis=-1)


def sum_over_data(a: Array) -> Array:
    """Sum over all non-batch axes: (B, ...) -> (B,)."""
    return jnp.sum(a.reshape(a.shape[0], -1), axis=-1)


REDUCTIONS: dict[str, Callable[[Array], Array]] = {"sum": sum_over_data, "mean": mean_over_data}


def _draw_t(key, x0, t, process, time_sampler, t_min) -> Array:
    if t is None:
        t = sample_time(key, x0.shape[0], process, time_sampler, t_min)
    return batch_time(t, x0)


def _finish(per_example: Array, t: Array, t_weights, **extra) -> tuple[Array, dict]:
    """Mean of t_weights * per_example and the metrics dict."""
    chex.assert_rank(per_example, 1)
    weighted = per_example
    if t_weights is not None:
        t_weights = jnp.asarray(t_weights)
        chex.assert_shape(t_weights, per_example.shape)
        weighted = per_example * t_weights
    loss = jnp.mean(weighted)
    return loss, {"loss": loss, "loss_per_example": per_example, "t": t, **extra}


def _sigma2_weight(process: Process, x: Array, t: Array) -> Array:
    return process.variance(t)


def _likelihood_weight(process: Process, x: Array, t: Array) -> Array:
    return jnp.square(process.coefficients(x, t)[1])


# name -> (process, x, t) -> lambda(t), shape (B,)
DSM_WEIGHTINGS: dict[str, Callable] = {
    "sigma2": _sigma2_weight,
    "likelihood": _likelihood_weight,
    "none": lambda process, x, t: jnp.ones_like(t),
}


def dsm_loss(
    process: Process,
    *,
    kind: str = "score",
    weighting: str = "sigma2",
    reduce: str = "sum",
    time_sampler: str = "uniform",
    t_min: float = 1e-3,
) -> LossFn:
    """Denoising score matching (Vincent 2011; Song et al. 2021).

    Per example: 1/2 lambda(t) R(|s(x_t, t) + eps / sigma(t)|^2) with R the sum
    (``reduce="sum"``, score_sde's default) or the mean over data axes. Its expectation is
    minimised by the true score of p_t; with ``weighting="likelihood"`` (lambda = g^2) and
    the sum it is the score-matching bound on -log p(x_0) up to a constant.

    Args:
      process: the forward process.
      kind: what ``model_fn`` predicts ("score", "eps", "x0", "v"); converted to a score.
      weighting: "sigma2", "likelihood" or "none".
      reduce: "sum" or "mean" over data axes.
      time_sampler: "uniform" or "antithetic".
      t_min: smallest time drawn for a continuous process.

    Returns:
      ``loss_fn``; its metrics also hold ``"score_sq_norm"`` (B,) = |s(x_t, t)|^2, the
      values fed to importance sampling in mode "score_norm".
    """
    _check_process(process, "dsm")
    parametrization.check_kind(kind)
    _check_choice("weighting", weighting, DSM_WEIGHTINGS)
    _check_choice("reduction", reduce, REDUCTIONS)
    _check_choice("time sampler", time_sampler, TIME_SAMPLERS)

    def loss_fn(model_fn: ModelFn, key: PRNGKey, x0: Array, *, t=None, t_weights=None, **cond):
        key_t, key_noise = jax.random.split(key)
        t = _draw_t(key_t, x0, t, process, time_sampler, t_min)
        x_t, eps = process.sample_marginal(key_noise, x0, t)
        pred = model_fn(x_t, t, **cond)
        chex.assert_equal_shape([pred, x0])
        score = parametrization.convert(pred, kind, "score", x_t, t, process)
        target = -eps / expand_like(process.sigma(t), x0)
        lam = DSM_WEIGHTINGS[weighting](process, x0, t)
        per_example = 0.5 * lam * REDUCTIONS[reduce](jnp.square(score - target))
        return _finish(per_example, t, t_weights, score_sq_norm=sum_over_data(jnp.square(score)))

    return loss_fn


def _mse_loss(process: Process, target_kind: str, kind: str, time_sampler: str, t_min: float):
    """MSE of the ``target_kind`` prediction (the model's ``kind`` converted), per example."""
    _check_process(process, target_kind)
    parametrization.check_kind(kind)
    _check_choice("time sampler", time_sampler, TIME_SAMPLERS)

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        key_t, key_noise = jax.random.split(key)
        t = _draw_t(key_t, x0, t, process, time_sampler, t_min)
        x_t, eps = process.sample_marginal(key_noise, x0, t)
        pred = model_fn(x_t, t, **cond)
        chex.assert_equal_shape([pred, x0])
        pred = parametrization.convert(pred, kind, target_kind, x_t, t, process)
        target = parametrization.true_prediction(target_kind, x0, eps, t, process)
        return _finish(mean_over_data(jnp.square(pred - target)), t, t_weights)

    return loss_fn


def eps_loss(
    process: Process, *, kind: str = "eps", time_sampler: str = "uniform", t_min: float = 1e-3
) -> LossFn:
    """Mean squared error of the eps prediction, averaged over data (Ho et al. 2020).

    Args:
      process: the forward process.
      kind: what ``model_fn`` predicts; converted to eps before the comparison.
      time_sampler: "uniform" or "antithetic".
      t_min: smallest time drawn for a continuous process.

    Returns:
      ``loss_fn`` (see the module docstring).
    """
    return _mse_loss(process, "eps", kind, time_sampler, t_min)


def v_loss(
    process: Process, *, kind: str = "v", time_sampler: str = "uniform", t_min: float = 1e-3
) -> LossFn:
    """Mean squared error of the v prediction, averaged over data (Salimans & Ho 2022).

    Args: as :func:`eps_loss` (``kind`` converted to v).

    Returns:
      ``loss_fn`` (see the module docstring).
    """
    return _mse_loss(process, "v", kind, time_sampler, t_min)


def x0_loss(
    process: Process, *, kind: str = "x0", time_sampler: str = "uniform", t_min: float = 1e-3
) -> LossFn:
    """Mean squared error of the x0 prediction, averaged over data.

    Args: as :func:`eps_loss` (``kind`` converted to x0).

    Returns:
      ``loss_fn`` (see the module docstring).
    """
    return _mse_loss(process, "x0", kind, time_sampler, t_min)


def _edm_sigma(key, batch, p_mean, p_std, time_sampler) -> Array:
    u = sample_unit(key, batch, time_sampler)
    u = jnp.clip(u, 1e-7, 1.0 - 1e-7)
    return jnp.exp(p_mean + p_std * ndtri(u))


def edm_loss(
    process=None,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
    time_sampler: str = "uniform",
) -> LossFn:
    """Karras et al. (2022)'s loss for a denoiser ``model_fn(x, sigma, **cond) -> x0``.

    ln sigma ~ N(p_mean, p_std^2) (stratified through the normal quantile with
    ``time_sampler="antithetic"``), x = x0 + sigma n, per example
    lambda(sigma) mean((D(x, sigma) - x0)^2) with
    lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.

    Args:
      process: unused (EDM's process is x0 + sigma n); accepted for a uniform API.
      p_mean, p_std: the log-normal noise-level distribution.
      sigma_data: the data's standard deviation.
      time_sampler: "uniform" or "antithetic".

    Returns:
      ``loss_fn``; its ``t`` argument and ``metrics["t"]`` are the noise levels sigma (B,).
    """
    del process
    _check_choice("time sampler", time_sampler, TIME_SAMPLERS)
    if not (p_std > 0 and sigma_data > 0):
        raise ValueError(f"Need p_std > 0 and sigma_data > 0; got {p_std=}, {sigma_data=}.")

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        key_sigma, key_noise = jax.random.split(key)
        if t is None:
            t = _edm_sigma(key_sigma, x0.shape[0], p_mean, p_std, time_sampler)
        sigma = batch_time(t, x0)
        noise = jax.random.normal(key_noise, x0.shape, x0.dtype) * expand_like(sigma, x0)
        denoised = model_fn(x0 + noise, sigma, **cond)
        chex.assert_equal_shape([denoised, x0])
        weight = (jnp.square(sigma) + sigma_data**2) / jnp.square(sigma * sigma_data)
        per_example = weight * mean_over_data(jnp.square(denoised - x0))
        return _finish(per_example, sigma, t_weights, sigma=sigma)

    return loss_fn


def normal_kl(mean1: ArrayLike, logvar1: ArrayLike, mean2: ArrayLike, logvar2: ArrayLike) -> Array:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats.

    Args:
      mean1, logvar1, mean2, logvar2: arrays that broadcast together.

    Returns:
      The KL divergence per element, of the broadcast shape.
    """
    mean1, logvar1, mean2, logvar2 = (jnp.asarray(a) for a in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + jnp.exp(logvar1 - logvar2)
        + jnp.square(mean1 - mean2) * jnp.exp(-logvar2)
    )


def discretized_gaussian_log_likelihood(x: Array, means: Array, log_scales: Array) -> Array:
    """Log-probability of 8-bit data under a Gaussian discretised into 256 bins (Ho et al.).

    Pixel values x in [-1, 1] sit at -1 + 2k / 255; bin k covers x +- 1/255, the two edge
    bins extend to -inf and +inf, so the 256 probabilities sum to 1. Uses the exact normal
    CDF (``log_ndtr``, taking each difference on the tail side) instead of iDDPM's tanh
    approximation, and floors bin probabilities at 1e-12 as iDDPM does.

    Args:
      x: data in [-1, 1], shape (B, ...).
      means: the Gaussian means, shaped like ``x``.
      log_scales: log standard deviations, broadcasting with ``x``.

    Returns:
      Log-probabilities in nats, shaped like ``x``.
    """
    chex.assert_equal_shape([x, means])
    centered = x - means
    inv_stdv = jnp.exp(-log_scales)
    plus_in = inv_stdv * (centered + 1.0 / 255.0)
    min_in = inv_stdv * (centered - 1.0 / 255.0)
    log_cdf_plus = log_ndtr(plus_in)
    log_one_minus_cdf_min = log_ndtr(-min_in)
    right_tail = min_in > 0
    delta = jnp.where(right_tail, ndtr(-min_in) - ndtr(-plus_in), ndtr(plus_in) - ndtr(min_in))
    log_mid = jnp.log(jnp.maximum(delta, 1e-12))
    return jnp.where(x < -0.999, log_cdf_plus, jnp.where(x > 0.999, log_one_minus_cdf_min, log_mid))


def model_posterior(
    schedule: DiscreteSchedule, pred: Array, v, x_t: Array, t: Array, kind: str = "eps"
) -> tuple[Array, Array]:
    """Mean and log variance of p(x_{i-1} | x_i) from a network's outputs (iDDPM).

    Args:
      schedule: the discrete schedule.
      pred: the prediction of ``kind`` at (x_t, t), shape (B, ...).
      v: the variance output in [-1, 1] shaped like ``pred`` (a float broadcasts): -1 gives
        the clipped beta-tilde, +1 gives beta (see ``DiscreteSchedule.learned_log_variance``).
      x_t: the state at grid times t, shape (B, ...).
      t: grid times, shape (B,) or scalar.
      kind: what ``pred`` is.

    Returns:
      ``(mean, log_variance)``, each shaped like ``x_t``.
    """
    chex.assert_equal_shape([pred, x_t])
    x0_hat = parametrization.convert(pred, kind, "x0", x_t, t, schedule)
    mean = schedule.posterior_mean(x0_hat, x_t, t)
    v = jnp.broadcast_to(jnp.asarray(v, x_t.dtype), x_t.shape)
    return mean, schedule.learned_log_variance(v, t)


def vlb_terms(
    schedule: DiscreteSchedule,
    x0: Array,
    x_t: Array,
    t: Array,
    mean: Array,
    log_variance: Array,
) -> Array:
    """One term of the variational bound per example, in bits per dimension.

    At step i > 0: KL(q(x_{i-1} | x_i, x_0) || p(x_{i-1} | x_i)); at step 0: the decoder
    -log p(x_0 | x_1) under the discretised Gaussian. The true posterior's log variance is
    iDDPM's clipped beta-tilde. Summing over all N steps plus :func:`prior_kl` gives the
    negative ELBO.

    Args:
      schedule: the discrete schedule.
      x0: clean data in [-1, 1], shape (B, ...).
      x_t: the state at grid times t, shape (B, ...).
      t: grid times (i + 1) / N, shape (B,) or scalar.
      mean: the model's mean of x_{i-1}, shape (B, ...).
      log_variance: the model's log variance, shape (B, ...).

    Returns:
      The terms, shape (B,), in bits per dimension.
    """
    chex.assert_equal_shape([x0, x_t, mean, log_variance])
    t = batch_time(t, x0)
    true_mean = schedule.posterior_mean(x0, x_t, t)
    true_log_var = expand_like(schedule.log_variance_bounds(t)[0], x0)
    kl = mean_over_data(normal_kl(true_mean, true_log_var, mean, log_variance)) / _LOG2
    log_p = discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_variance)
    nll = -mean_over_data(log_p) / _LOG2
    return jnp.where(schedule.index(t) == 0, nll, kl)


def prior_kl(schedule: DiscreteSchedule, x0: Array) -> Array:
    """KL(q(x_N | x_0) || N(0, I)) per example in bits per dimension, shape (B,)."""
    ab = schedule.alphas_cumprod[-1]
    kl = normal_kl(jnp.sqrt(ab) * x0, jnp.log1p(-ab), 0.0, 0.0)
    return mean_over_data(kl) / _LOG2


def hybrid_loss(
    process: DiscreteSchedule, *, lam: float = 0.001, kind: str = "eps", time_sampler="uniform"
) -> LossFn:
    """iDDPM's L_hybrid = L_simple + lam L_vlb for a model with a learned variance.

    ``model_fn(x, t, **cond)`` returns ``(pred, v)``: the prediction of ``kind`` and the raw
    variance output v in [-1, 1]. Per example: mean((pred - target)^2) + lam N L_t, with
    L_t = :func:`vlb_terms` (bits/dim) at the drawn step, computed with a stop-gradient on
    the predicted mean so the vlb term trains only the variance. With t uniform,
    E[N L_t] = L_vlb (iDDPM's RESCALED_MSE convention; identical to its code at N = 1000).

    Args:
      process: a :class:`~jaxdiff.schedules.DiscreteSchedule`.
      lam: the vlb weight lambda.
      kind: what the first model output predicts (default "eps").
      time_sampler: "uniform" or "antithetic" over the grid steps.

    Returns:
      ``loss_fn``; its metrics also hold ``"mse"`` and ``"vlb"`` (B,).
    """
    _check_process(process, "hybrid", DiscreteSchedule)
    parametrization.check_kind(kind)
    _check_choice("time sampler", time_sampler, TIME_SAMPLERS)

    def loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        key_t, key_noise = jax.random.split(key)
        t = _draw_t(key_t, x0, t, process, time_sampler, 0.0)
        x_t, eps = process.sample_marginal(key_noise, x0, t)
        out = model_fn(x_t, t, **cond)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise ValueError(
                f"The 'hybrid' loss needs model_fn to return (prediction, v); got {type(out)}."
            )
        pred, v = out
        chex.assert_equal_shape([pred, v, x0])
        target = parametrization.true_prediction(kind, x0, eps, t, process)
        mse = mean_over_data(jnp.square(pred - target))
        mean, log_var = model_posterior(process, jax.lax.stop_gradient(pred), v, x_t, t, kind)
        vlb = vlb_terms(process, x0, x_t, t, mean, log_var)
        per_example = mse + lam * process.num_steps * vlb
        return _finish(per_example, t, t_weights, mse=mse, vlb=vlb)

    return loss_fn


LOSSES: dict[str, Callable[..., LossFn]] = {
    "dsm": dsm_loss,
    "eps": eps_loss,
    "v": v_loss,
    "x0": x0_loss,
    "edm": edm_loss,
    "hybrid": hybrid_loss,
}


def make_loss(name: str, process, **options) -> LossFn:
    """Builds a loss from its name in :data:`LOSSES` and its options.

    Args:
      name: "dsm", "eps", "v", "x0", "edm" or "hybrid".
      process: the forward process (None allowed for "edm").
      **options: the factory's keyword options (see each factory).

    Returns:
      ``loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond) -> (loss, metrics)``.

    Raises:
      ValueError: unknown name (listing the valid ones) or invalid options.
    """
    _check_choice("loss", name, LOSSES)
    return LOSSES[name](process, **options)
