"""Tests for jaxdiff.sdes and the Process interface (jaxdiff._process)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxdiff import schedules, sdes

BMIN, BMAX, SMIN, SMAX = 0.1, 20.0, 0.01, 50.0
PROCESSES = {
    "vp": sdes.VPSDE(beta_min=BMIN, beta_max=BMAX),
    "subvp": sdes.SubVPSDE(beta_min=BMIN, beta_max=BMAX),
    "ve": sdes.VESDE(sigma_min=SMIN, sigma_max=SMAX),
    "cosine": schedules.DiscreteSchedule.from_name("cosine", 100).continuous,
    "sigmoid": schedules.DiscreteSchedule.from_name("sigmoid", 100).continuous,
    "zero_snr": schedules.ZeroTerminalSNR(base=sdes.VPSDE(beta_min=BMIN, beta_max=BMAX)),
}


def _integrate_moments(process, t_end, var0):
    """Solves dm/dt = a m, dv/dt = 2 a v + g^2 with a, g from ``coefficients`` (f = a x)."""
    coeffs = jax.jit(lambda t: process.coefficients(jnp.ones((1, 1)), jnp.full((1,), t)))

    def rhs(t, y):
        f, g = coeffs(t)
        a = float(f[0, 0])
        return [a * y[0], 2.0 * a * y[1] + float(g[0]) ** 2]

    t_eval = np.linspace(0.0, t_end, 11)[1:]
    sol = integrate.solve_ivp(rhs, (0.0, t_end), [1.0, var0], "DOP853", t_eval, rtol=1e-9)
    return t_eval, sol.y[0], np.sqrt(sol.y[1])


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_marginal_matches_integrated_moment_odes(name):
    process = PROCESSES[name]
    # VE starts from variance sigma_min^2 at t = 0 (the convention); the others from 0.
    var0 = SMIN**2 if name == "ve" else 0.0
    # The drifts of cosine and zero-SNR diverge at t = 1; sigmoid's alpha_bar is clipped there.
    t_end = 0.95 if name in ("cosine", "sigmoid", "zero_snr") else 1.0
    t, mean, std = _integrate_moments(process, t_end, var0)
    scale, sigma = process.marginal(jnp.asarray(t))
    np.testing.assert_allclose(scale, mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sigma, std, rtol=1e-4, atol=1e-4)


def test_coefficients_match_closed_forms():
    t = jnp.linspace(0.0, 1.0, 11)
    x = jnp.ones((11, 2))
    beta = BMIN + t * (BMAX - BMIN)
    int_beta = BMIN * t + 0.5 * t**2 * (BMAX - BMIN)
    f, g = PROCESSES["vp"].coefficients(x, t)
    np.testing.assert_allclose(f[:, 0], -0.5 * beta, rtol=1e-5)
    np.testing.assert_allclose(g**2, beta, rtol=1e-5)  # finite at t = 0 too
    f, g = PROCESSES["subvp"].coefficients(x, t)
    np.testing.assert_allclose(f[:, 0], -0.5 * beta, rtol=1e-5)
    np.testing.assert_allclose(g**2, beta * (1 - np.exp(-2 * int_beta)), rtol=1e-4, atol=1e-6)
    f, g = PROCESSES["ve"].coefficients(x, t)
    np.testing.assert_allclose(f, 0.0)
    sigma = SMIN * (SMAX / SMIN) ** t
    np.testing.assert_allclose(g**2, 2 * np.log(SMAX / SMIN) * sigma**2, rtol=1e-4)


def test_docstring_value_and_t_broadcast():
    scale, sigma = sdes.VPSDE(0.1, 20.0).marginal(jnp.array([0.5]))
    log_scale = -0.25 * 0.25 * 19.9 - 0.5 * 0.5 * 0.1
    np.testing.assert_allclose(scale, np.exp(log_scale), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.sqrt(1 - np.exp(2 * log_scale)), rtol=1e-6)
    f, g = PROCESSES["ve"].coefficients(jnp.ones((3, 2)), 0.5)
    chex.assert_shape(g, (3,))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(B,\) = \(3,\)"):
        PROCESSES["ve"].coefficients(jnp.ones((3, 2)), jnp.ones((2,)))


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_prior_sample_and_logp(name, key):
    process = PROCESSES[name]
    z = process.prior_sample(key, (4000, 3))
    chex.assert_shape(z, (4000, 3))
    std = process.prior_std
    assert abs(float(jnp.std(z)) / std - 1.0) < 0.03
    expected = stats.norm.logpdf(np.asarray(z[:5]), scale=std).sum(axis=-1)
    np.testing.assert_allclose(process.prior_logp(z[:5]), expected, rtol=1e-5)


def _gaussian_var(process, t, s2):
    scale, sigma = process.marginal(t)
    return scale**2 * s2 + sigma**2


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_reverse_drifts_on_gaussian_data(name):
    """For data N(0, s^2 I), p_t = N(0, v(t) I): the probability-flow ODE is x' = x v'/(2v)."""
    process, s2 = PROCESSES[name], 0.3
    t = jnp.array([0.1, 0.4, 0.8])
    x = jnp.array([[1.0, -2.0], [0.5, 0.3], [3.0, 1.0]])
    score_fn = lambda x, t: -x / _gaussian_var(process, t, s2)[:, None]
    var, dvar = jax.jvp(lambda u: _gaussian_var(process, u, s2), (t,), (jnp.ones(3),))
    ode = sdes.probability_flow_drift(process, score_fn, x, t)
    # f and g^2 s / 2 are O(10) and nearly cancel: float32 leaves ~1e-6 absolute error.
    np.testing.assert_allclose(ode, x * (dvar / (2 * var))[:, None], rtol=1e-4, atol=2e-5)
    drift, g = sdes.reverse_drift(process, score_fn, x, t)
    f, g_fwd = process.coefficients(x, t)
    np.testing.assert_allclose(g, g_fwd)
    np.testing.assert_allclose(drift, f - (g**2)[:, None] * score_fn(x, t), rtol=1e-5)
    _, g_ode = sdes.reverse_drift(process, score_fn, x, t, probability_flow=True)
    np.testing.assert_allclose(g_ode, 0.0)


def test_from_name_and_bad_parameters():
    assert isinstance(sdes.from_name("ve", sigma_min=0.1, sigma_max=2.0), sdes.VESDE)
    with pytest.raises(
        ValueError, match=r"Unknown SDE 'vpp'; valid names: \['subvp', 've', 'vp'\]"
    ):
        sdes.from_name("vpp")
    with pytest.raises(ValueError, match=r"sigma_min=50\.0, sigma_max=0\.01"):
        sdes.VESDE(sigma_min=50.0, sigma_max=0.01)
    with pytest.raises(ValueError, match=r"sigma_min=1\.0, sigma_max=1\.0"):
        sdes.VESDE(sigma_min=1.0, sigma_max=1.0)
    with pytest.raises(ValueError, match=r"beta_min=-0\.1"):
        sdes.VPSDE(beta_min=-0.1)
    with pytest.raises(ValueError, match=r"beta_min=5\.0, beta_max=1\.0"):
        sdes.SubVPSDE(beta_min=5.0, beta_max=1.0)


class SDEVariantsTest(chex.TestCase):
    """Public SDE functions give the same results with and without jit (process as argument)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_marginal_coefficients_prior(self):
        x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
        t = jnp.array([0.0, 0.2, 0.6, 1.0])

        def fn(process, x, t):
            scale, sigma = process.marginal(t)
            f, g = process.coefficients(x, t)
            return scale, sigma, f, g, process.prior_logp(x), process.log_snr(t)

        for name in ("vp", "subvp", "ve"):
            process = PROCESSES[name]
            out = self.variant(fn)(process, x, t)
            ref = jax.jit(fn)(process, x, t)
            chex.assert_trees_all_close(out, ref, rtol=1e-6)
            chex.assert_shape(out[:2] + out[3:5], (4,))
            chex.assert_tree_all_finite(out[:5])

    @chex.variants(with_jit=True, without_jit=True)
    def test_reverse_drift_and_sample_marginal(self):
        process = PROCESSES["subvp"]
        x0 = jnp.ones((5, 2, 2))

        def fn(process, key, x0):
            x_t, noise = process.sample_marginal(key, x0, 0.3)
            return x_t, noise, sdes.reverse_drift(process, lambda x, t: -x, x_t, 0.3)

        x_t, noise, (drift, g) = self.variant(fn)(process, jax.random.key(1), x0)
        scale, sigma = process.marginal(0.3)
        np.testing.assert_allclose(x_t, scale * x0 + sigma * noise, rtol=1e-6)
        chex.assert_shape(drift, x0.shape)
        chex.assert_shape(g, (5,))
