"""Likelihoods against closed forms: Gaussian data have exact scores and densities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from jaxdiff import sdes
from jaxdiff.evaluation import likelihood
from jaxdiff.schedules import DiscreteSchedule

DIM = 4
BATCH = 64


def gaussian_marginal(process, mu, s):
    """(mean, var) of p_t for data N(mu, s^2 I) under ``process``, as functions of t (B,)."""

    def mean_var(t):
        scale, sigma = process.marginal(t)
        return scale[:, None] * mu, (scale**2 * s**2 + sigma**2)[:, None]

    return mean_var


def exact_score_fn(mean_var):
    def score(x, t):
        mean, var = mean_var(t)
        return -(x - mean) / var

    return score


def gaussian_logp(x, mean, var):
    return jnp.sum(-0.5 * jnp.log(2 * jnp.pi * var) - 0.5 * (x - mean) ** 2 / var, axis=-1)


def test_standard_normal_data_is_exact_under_vp():
    # N(0, I) data: p_t = N(0, I) for every t under VP, score = -x, the ODE drift is 0.
    sde = sdes.VPSDE(0.1, 20.0)
    x = jax.random.normal(jax.random.key(0), (BATCH, DIM))
    logp, _ = likelihood.ode_log_likelihood(lambda x, t: -x, sde, x)
    exact = gaussian_logp(x, 0.0, 1.0)
    np.testing.assert_allclose(logp / DIM, exact / DIM, atol=1e-4)


@pytest.fixture(scope="module")
def shifted_gaussian():
    sde = sdes.VPSDE(0.1, 20.0)
    mu, s, t_eps = 0.7, 0.5, 1e-3
    mean_var = gaussian_marginal(sde, mu, s)
    x = mu + s * jax.random.normal(jax.random.key(1), (BATCH, DIM))
    terminal = lambda z: gaussian_logp(z, *mean_var(jnp.ones(z.shape[0])))
    exact = gaussian_logp(x, *mean_var(jnp.full((BATCH,), t_eps)))
    return sde, mean_var, x, t_eps, terminal, exact


def test_exact_divergence_matches_analytic_density(shifted_gaussian):
    sde, mean_var, x, t_eps, terminal, exact = shifted_gaussian
    logp, info = likelihood.ode_log_likelihood(
        exact_score_fn(mean_var), sde, x, t_eps=t_eps, terminal_logp=terminal
    )
    assert not bool(info["reached_max_steps"])
    np.testing.assert_allclose(logp / DIM, exact / DIM, atol=1e-3)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_within_three_standard_errors(shifted_gaussian, probe):
    sde, mean_var, x, t_eps, terminal, exact = shifted_gaussian
    logp, _ = likelihood.ode_log_likelihood(
        exact_score_fn(mean_var),
        sde,
        x,
        key=jax.random.key(2),
        divergence="hutchinson",
        probe=probe,
        t_eps=t_eps,
        terminal_logp=terminal,
    )
    err = np.asarray(logp - exact)
    stderr = err.std(ddof=1) / math.sqrt(err.size)
    assert abs(err.mean()) < 3 * stderr + 1e-3 * DIM, (err.mean(), stderr)
    assert err.std() > 0  # the estimator is really stochastic


def test_bits_per_dim_of_uniform_density_is_eight_bits():
    # Density 2^-D on [-1, 1]^D (uniform) is a uniform distribution over 256 levels: 8 bits.
    dim = 10
    bpd = likelihood.bits_per_dim(jnp.array([-dim * math.log(2.0)]), dim)
    np.testing.assert_allclose(bpd, [8.0], rtol=1e-6)


def test_dequantize_stays_inside_each_pixel_bin():
    u = jnp.arange(256, dtype=jnp.uint8).reshape(1, 256)
    x = likelihood.dequantize(jax.random.key(0), u)
    low = 2.0 * np.arange(256) / 256 - 1.0
    assert np.all(np.asarray(x) >= low) and np.all(np.asarray(x) < low + 2.0 / 256)
    with pytest.raises(ValueError, match="uint8"):
        likelihood.dequantize(jax.random.key(0), jnp.zeros((1, 3)))


def test_ddpm_vlb_matches_independent_numpy_computation():
    sched = DiscreteSchedule.from_name("cosine", num_steps=20)
    x0 = jnp.asarray(np.linspace(-1, 1, 8).reshape(2, 4), jnp.float32)
    eps_model = lambda x, t: 0.1 * x  # any fixed predictor: the bound is a function of it
    key = jax.random.key(3)
    bpd, terms = likelihood.ddpm_vlb_bits_per_dim(key, eps_model, sched, x0)
    reference = _numpy_vlb(sched, np.asarray(x0), key)
    np.testing.assert_allclose(np.asarray(terms), reference, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bpd), reference.sum(0), rtol=2e-4)


def _numpy_vlb(sched, x0, key):
    """Ho et al.'s bound term by term in float64 NumPy, from the betas alone."""
    betas = np.asarray(sched.betas, np.float64)
    ab = np.cumprod(1 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    n = len(betas)
    tilde = betas * (1 - ab_prev) / (1 - ab)
    keys = jax.random.split(key, n)
    out = []
    for i in range(n):
        t = (i + 1) / n
        x_t = np.asarray(sched.sample_marginal(keys[i], jnp.asarray(x0), t)[0], np.float64)
        eps = 0.1 * x_t
        x0_hat = (x_t - np.sqrt(1 - ab[i]) * eps) / np.sqrt(ab[i])
        coef0 = betas[i] * np.sqrt(ab_prev[i]) / (1 - ab[i])
        coeft = (1 - ab_prev[i]) * np.sqrt(1 - betas[i]) / (1 - ab[i])
        model_mean, true_mean = coef0 * x0_hat + coeft * x_t, coef0 * x0 + coeft * x_t
        # Fixed-large variance as DDPM's / iDDPM's code: beta_i, but beta-tilde_1 at step 0.
        model_var = tilde[1] if i == 0 else betas[i]
        if i == 0:
            sd = np.sqrt(model_var)
            cdf_hi = norm.cdf((x0 + 1 / 255 - model_mean) / sd)
            cdf_lo = norm.cdf((x0 - 1 / 255 - model_mean) / sd)
            p = np.where(x0 < -0.999, cdf_hi, np.where(x0 > 0.999, 1 - cdf_lo, cdf_hi - cdf_lo))
            out.append(-np.log(np.maximum(p, 1e-12)).mean(-1) / np.log(2))
        else:
            true_var = tilde[i]
            kl = 0.5 * (np.log(model_var / true_var) + true_var / model_var - 1)
            kl = kl + 0.5 * (true_mean - model_mean) ** 2 / model_var
            out.append(kl.mean(-1) / np.log(2))
    prior = 0.5 * (ab[-1] * x0**2 + (1 - ab[-1]) - 1 - np.log(1 - ab[-1]))
    out.append(prior.mean(-1) / np.log(2))
    return np.stack(out)


def test_ddpm_vlb_decoder_term_uses_beta_tilde_1_as_the_reference_code():
    # An oracle decoder mean (x0 exactly): only the decoder variance sets L_0. The
    # reference convention (posterior_variance[1] of DDPM/iDDPM code) is 5.45e-5 on the
    # linear schedule, not beta_0 = 1e-4.
    sched = DiscreteSchedule.from_name("linear", num_steps=1000)
    x0 = jnp.asarray(np.linspace(-1, 1, 256).reshape(2, 128), jnp.float32)
    x0_model = lambda x, t: jnp.broadcast_to(x0, x.shape)
    _, terms = likelihood.ddpm_vlb_bits_per_dim(jax.random.key(0), x0_model, sched, x0, kind="x0")
    betas = np.asarray(sched.betas, np.float64)
    ab = np.cumprod(1 - betas)
    tilde_1 = betas[1] * (1 - ab[0]) / (1 - ab[1])
    np.testing.assert_allclose(tilde_1, 5.45e-5, rtol=1e-3)
    sd = np.sqrt(tilde_1)
    x = np.asarray(x0, np.float64)
    p = norm.cdf(1 / 255 / sd) - norm.cdf(-1 / 255 / sd)
    p = np.where(np.abs(x) > 0.999, norm.cdf(1 / 255 / sd), p)
    decoder = -np.log(p).mean(-1) / np.log(2)
    # float32 alphas_cumprod moves the decoder mean by ~1e-4 relative; beta_0 would give +0.4.
    np.testing.assert_allclose(np.asarray(terms[0]), decoder, rtol=2e-3)


def test_bad_choices_are_named():
    sde = sdes.VPSDE()
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="valid: \\['exact', 'hutchinson'\\]"):
        likelihood.ode_log_likelihood(lambda x, t: -x, sde, x, divergence="bogus")
    with pytest.raises(ValueError, match="needs a PRNG key"):
        likelihood.ode_log_likelihood(lambda x, t: -x, sde, x, divergence="hutchinson")
