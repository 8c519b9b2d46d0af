"""Negative log-likelihood in bits/dim: the probability-flow ODE and the discrete DDPM bound.

ODE likelihood (Song et al. 2021, app. D; Chen et al. 2018's instantaneous change of
variables). Along a solution x(t) of dx/dt = f~(x, t), the probability-flow drift,

.. math::

   \\log p_{t_\\epsilon}(x(t_\\epsilon)) = \\log p_1(x(1))
       + \\int_{t_\\epsilon}^{1} \\nabla\\cdot \\tilde f(x(t), t)\\, dt,

so one adaptive solve of the augmented state (x, integral) from t_eps to 1 gives the exact
log-density of the model. The divergence is exact (one forward-mode product per data
dimension: small data only) or Hutchinson's unbiased estimate eps^T J eps with a probe
eps (Rademacher or Gaussian) held fixed along the path. The solver is the samplers'
Dormand-Prince pair under ``lax.while_loop``.

Discrete bound (Ho et al. 2020, eq. 5): L = L_N + sum_{i>0} L_i + L_0, with Gaussian KL
terms and a discretised-Gaussian decoder at the first step, from :mod:`jaxdiff.losses`.

Bits/dim of 8-bit images scaled to [-1, 1]: with uniform dequantisation
x = 2 (u + U[0, 1)) / 256 - 1, log P(u) >= log p(x) + D log(2 / 256), hence
bpd = -log p(x) / (D ln 2) + 7 (the ``offset``).
"""

import math

import jax
import jax.numpy as jnp

from jaxdiff import losses, parametrization, sdes
from jaxdiff._process import Process
from jaxdiff._types import Array, PRNGKey
from jaxdiff.samplers._driver import run_adaptive
from jaxdiff.samplers.adaptive import DormandPrince, PIController
from jaxdiff.schedules import DiscreteSchedule

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
BITS_OFFSET_8BIT = 7.0


def dequantize(key: PRNGKey, images: Array) -> Array:
    """Uniform dequantisation of 8-bit images to [-1, 1]: x = 2 (u + U[0, 1)) / 256 - 1.

    Args:
      key: a PRNG key.
      images: integer pixel values in {0, ..., 255}, shape (B, ...), dtype uint8.

    Returns:
      float32 array shaped like ``images``, in [-1, 1).

    Raises:
      ValueError: if ``images`` is not uint8.
    """
    if images.dtype != jnp.uint8:
        raise ValueError(f"dequantize expects uint8 images in 0..255; got dtype {images.dtype}.")
    noise = jax.random.uniform(key, images.shape, jnp.float32)
    return 2.0 * (images.astype(jnp.float32) + noise) / 256.0 - 1.0


def bits_per_dim(log_likelihood: Array, dim: int, offset: float = BITS_OFFSET_8BIT) -> Array:
    """Converts a log-density in nats of D-dimensional data to bits per dimension.

    bpd = -log p / (D ln 2) + offset; offset = 7 turns a density of 8-bit data scaled to
    [-1, 1] into a (bound on the) discrete likelihood of the original pixels.

    Args:
      log_likelihood: log p(x) in nats, shape (B,).
      dim: D, the number of data dimensions per example.
      offset: bits added per dimension (0 for continuous data).

    Returns:
      Bits per dimension, shape (B,).
    """
    return -log_likelihood / (dim * math.log(2.0)) + offset


def _probe(key: PRNGKey, shape, probe: str) -> Array:
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, jnp.float32)
    return jax.random.normal(key, shape, jnp.float32)


def _divergence(drift, x: Array, method: str, probe_vec: Array | None) -> tuple[Array, Array]:
    """(drift(x), div drift(x)) per example; x flat (B, D), drift maps (B, D) -> (B, D)."""
    if method == "hutchinson":
        dx, jv = jax.jvp(drift, (x,), (probe_vec,))
        return dx, jnp.sum(probe_vec * jv, axis=-1)
    dim = x.shape[1]
    dx = drift(x)
    basis = jnp.eye(dim, dtype=x.dtype)
    column = lambda e: jax.jvp(drift, (x,), (jnp.broadcast_to(e, x.shape),))[1]
    jac_diag = jax.vmap(lambda e, j: column(e)[:, j], out_axes=1)(basis, jnp.arange(dim))
    return dx, jnp.sum(jac_diag, axis=-1)


def _check_choices(divergence: str, probe: str) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"Unknown divergence {divergence!r}; valid: {list(DIVERGENCES)}.")
    if probe not in PROBES:
        raise ValueError(f"Unknown probe {probe!r}; valid: {list(PROBES)}.")


def ode_log_likelihood(
    model_fn,
    process: Process,
    x: Array,
    *,
    key: PRNGKey | None = None,
    kind: str = "score",
    divergence: str = "exact",
    probe: str = "rademacher",
    t_eps: float = 1e-5,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    terminal_logp=None,
    **cond,
) -> tuple[Array, dict]:
    """log p_{t_eps}(x) of the probability-flow ODE model, in nats.

    Args:
      model_fn: ``(x, t, **cond) -> prediction`` of ``kind``.
      process: the diffusion process (an SDE, or a DiscreteSchedule's ``.continuous``).
      x: data at time t_eps, shape (B, ...).
      key: PRNG key for the Hutchinson probe (required for ``divergence="hutchinson"``).
      kind: what ``model_fn`` predicts ("eps", "x0", "v" or "score").
      divergence: "exact" (D Jacobian-vector products per call) or "hutchinson".
      probe: "rademacher" or "gaussian" (Hutchinson only).
      t_eps: the start time (> 0: the score is singular at t = 0 for VP).
      rtol, atol: tolerances of the adaptive solver.
      max_steps: the most solver steps.
      terminal_logp: ``z -> log p_1(z)`` of shape (B,); the process prior by default.
      **cond: conditioning passed to ``model_fn``.

    Returns:
      ``(log_likelihood (B,), info)``; info has the solver's ``nfe``, ``accepted``,
      ``rejected`` and ``reached_max_steps``, and ``prior_logp`` (B,).
    """
    _check_choices(divergence, probe)
    if divergence == "hutchinson" and key is None:
        raise ValueError("divergence='hutchinson' needs a PRNG key: pass key=...")
    batch, shape = x.shape[0], x.shape
    dim = math.prod(shape[1:])
    score_fn = parametrization.to_score_fn(model_fn, kind, process)
    probe_vec = None
    if divergence == "hutchinson":
        assert key is not None  # checked above
        probe_vec = _probe(key, (batch, dim), probe)

    def augmented_drift(z: Array, t: Array) -> Array:
        flat_drift = lambda y: sdes.probability_flow_drift(
            process, score_fn, y.reshape(shape), t, **cond
        ).reshape(batch, dim)
        dx, div = _divergence(flat_drift, z[:, :dim], divergence, probe_vec)
        return jnp.concatenate([dx, div[:, None]], axis=1)

    z0 = jnp.concatenate([x.reshape(batch, dim).astype(jnp.float32), jnp.zeros((batch, 1))], 1)
    h0 = (1.0 - t_eps) / 64.0
    controller = PIController(rtol=rtol, atol=atol)
    z1, info = run_adaptive(
        DormandPrince(), controller, augmented_drift, z0, t_eps, 1.0, h0, max_steps
    )
    x1 = z1[:, :dim].reshape(shape)
    prior = (terminal_logp or process.prior_logp)(x1)
    info = dict(info, prior_logp=prior)
    return prior + z1[:, dim], info


def ode_bits_per_dim(key: PRNGKey, model_fn, process: Process, images: Array, **options):
    """Bits/dim of 8-bit images under the ODE model, with uniform dequantisation.

    Args:
      key: PRNG key (dequantisation noise and the Hutchinson probe).
      model_fn: the model function; see :func:`ode_log_likelihood`.
      process: the diffusion process.
      images: uint8 pixels, shape (B, ...).
      **options: passed to :func:`ode_log_likelihood`.

    Returns:
      ``(bpd (B,), info)``.
    """
    key_deq, key_probe = jax.random.split(key)
    x = dequantize(key_deq, images)
    logp, info = ode_log_likelihood(model_fn, process, x, key=key_probe, **options)
    return bits_per_dim(logp, math.prod(images.shape[1:])), info


def ddpm_vlb_bits_per_dim(
    key: PRNGKey,
    model_fn,
    schedule: DiscreteSchedule,
    x0: Array,
    *,
    kind: str = "eps",
    learned_variance: bool = False,
    variance: str = "beta",
    **cond,
) -> tuple[Array, Array]:
    """The discrete DDPM variational bound in bits/dim (Ho et al. 2020, eq. 5).

    Sums L_N = KL(q(x_N | x_0) || N(0, I)), the KL terms L_i for i > 0 and the decoder
    term L_0 = -log p(x_0 | x_1) (discretised Gaussian), each from one draw of
    x_i ~ q(x_i | x_0), under one ``lax.scan`` over the N steps.

    Args:
      key: PRNG key.
      model_fn: ``(x, t, **cond) -> prediction`` of ``kind``, or ``(prediction, v)`` with
        ``learned_variance``.
      schedule: the discrete schedule.
      x0: data in [-1, 1] on the 8-bit grid, shape (B, ...).
      kind: what ``model_fn`` predicts.
      learned_variance: whether ``model_fn`` returns the iDDPM variance output v.
      variance: fixed reverse variance when not learned: "beta" (fixed-large) or
        "beta_tilde" (fixed-small), as DDPM's and iDDPM's reference code: both use
        beta-tilde_1 on the decoder step (see ``DiscreteSchedule.fixed_log_variance``),
        so the bound compares with the papers' bits/dim.
      **cond: conditioning for ``model_fn``.

    Returns:
      ``(bpd, terms)``: the bound per example (B,) and its parts (N + 1, B): the N step
      terms L_0 .. L_{N-1} then the prior term.
    """
    valid = ("beta", "beta_tilde")
    if not learned_variance and variance not in valid:
        raise ValueError(f"Unknown variance {variance!r}; valid: {list(valid)}.")
    times = schedule.timesteps()

    def term(_, inputs):
        t, k = inputs
        x_t, _ = schedule.sample_marginal(k, x0, t)
        out = model_fn(x_t, jnp.full((x0.shape[0],), t), **cond)
        pred, v = out if learned_variance else (out, 0.0)
        mean, log_var = losses.model_posterior(schedule, pred, v, x_t, t, kind)
        if not learned_variance:
            fixed = schedule.fixed_log_variance(t, variance)
            log_var = jnp.broadcast_to(fixed, x_t.shape).astype(x_t.dtype)
        return None, losses.vlb_terms(schedule, x0, x_t, t, mean, log_var)

    keys = jax.random.split(key, schedule.num_steps)
    _, steps = jax.lax.scan(term, None, (times, keys))
    terms = jnp.concatenate([steps, losses.prior_kl(schedule, x0)[None]], axis=0)
    return jnp.sum(terms, axis=0), terms
