"""Tests for jaxdiff.schedules: beta schedules, their continuous forms, DiscreteSchedule."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules, sdes

DS = schedules.DiscreteSchedule


def test_linear_1000_matches_vpsde():
    sched = DS.from_name("linear", num_steps=1000)
    sde = sdes.VPSDE(beta_min=0.1, beta_max=20.0)
    t = (np.arange(1000) + 1) / 1000
    np.testing.assert_allclose(sched.alphas_cumprod, sde.scale(jnp.asarray(t)) ** 2, atol=1e-3)
    np.testing.assert_allclose(sched.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-6)
    assert sched.continuous == sde


def test_linear_rescaled_for_other_step_counts():
    sched = DS.from_name("linear", num_steps=250)
    np.testing.assert_allclose(sched.betas, np.linspace(4e-4, 0.08, 250), rtol=1e-6)


def _cosine_closed_form(t, s=0.008):
    f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    return f(t) / f(0.0)


@pytest.mark.parametrize("num_steps", [1000, 50])
def test_cosine_matches_closed_form(num_steps):
    sched = DS.from_name("cosine", num_steps=num_steps)
    t = (np.arange(num_steps) + 1) / num_steps
    expected = _cosine_closed_form(t)
    # beta is clipped at 0.999 only at the last step, where alpha_bar(1) = 0 would need beta = 1.
    np.testing.assert_allclose(sched.alphas_cumprod[:-1], expected[:-1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sched.betas[-1], 0.999, rtol=1e-6)
    assert float(jnp.max(sched.betas[:-1])) < 0.999
    np.testing.assert_allclose(sched.alphas_cumprod[-1], expected[-2] * 0.001, rtol=1e-4)
    np.testing.assert_allclose(
        sched.continuous.scale(jnp.asarray(t[:-1])) ** 2, expected[:-1], rtol=1e-4, atol=1e-7
    )


def test_sigmoid_matches_closed_form():
    start, end, tau = -3.0, 3.0, 0.7
    sched = DS.from_name("sigmoid", num_steps=100, start=start, end=end, tau=tau)
    sig = lambda u: 1 / (1 + np.exp(-u))
    t = (np.arange(100) + 1) / 100
    expected = (sig(end / tau) - sig((t * (end - start) + start) / tau)) / (
        sig(end / tau) - sig(start / tau)
    )
    np.testing.assert_allclose(sched.alphas_cumprod[:-1], expected[:-1], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        sched.continuous.scale(jnp.asarray(t)) ** 2,
        np.maximum(expected, 1e-9),
        rtol=1e-4,
        atol=1e-7,
    )


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_process_interface_on_grid(name):
    sched = DS.from_name(name, num_steps=100)
    t = sched.timesteps()
    np.testing.assert_allclose(t, (np.arange(100) + 1) / 100)
    np.testing.assert_array_equal(sched.index(t), np.arange(100))
    scale, sigma = sched.marginal(t)
    np.testing.assert_allclose(scale**2, sched.alphas_cumprod, rtol=1e-5)
    np.testing.assert_allclose(sigma**2, 1 - sched.alphas_cumprod, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        sched.snr(t), sched.alphas_cumprod / (1 - sched.alphas_cumprod), rtol=1e-4
    )
    scale0, sigma0 = sched.marginal(jnp.zeros((1,)))
    np.testing.assert_allclose([scale0[0], sigma0[0]], [1.0, 0.0], atol=1e-7)
    f, g = sched.coefficients(jnp.ones((2, 3)), jnp.array([0.0, 0.5]))
    chex.assert_tree_all_finite((f, g))


def _posterior_by_conditioning(ab_prev, beta, x0, xt):
    """Mean/variance of x_{i-1} | x_i, x_0 from the joint Gaussian (float64, independent)."""
    ab = ab_prev * (1 - beta)
    cov = np.sqrt(1 - beta) * (1 - ab_prev)  # Cov(x_{i-1}, x_i | x_0)
    mean = np.sqrt(ab_prev) * x0 + cov / (1 - ab) * (xt - np.sqrt(ab) * x0)
    return mean, (1 - ab_prev) - cov**2 / (1 - ab)


def test_posterior_matches_gaussian_conditioning():
    sched = DS.from_name("cosine", num_steps=10)
    betas = np.asarray(sched.betas, np.float64)
    ab = np.cumprod(1 - betas)
    x0 = np.array([[0.5, -1.0], [0.2, 0.1], [-0.3, 0.9]])
    xt = np.array([[1.0, 0.4], [-0.7, 2.0], [0.1, -0.2]])
    idx = np.array([1, 4, 9])
    t = jnp.asarray((idx + 1) / 10, jnp.float32)
    ab_prev = ab[idx - 1]
    mean, var = _posterior_by_conditioning(ab_prev[:, None], betas[idx, None], x0, xt)
    np.testing.assert_allclose(
        sched.posterior_mean(jnp.asarray(x0), jnp.asarray(xt), t), mean, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(sched.posterior_variance(t), var[:, 0], rtol=1e-4)
    np.testing.assert_allclose(sched.posterior_variance(t, kind="beta"), betas[idx], rtol=1e-6)
    # Step 0 goes to x_0 itself: zero variance and mean x_0.
    t0 = jnp.full((3,), 0.1)
    np.testing.assert_allclose(sched.posterior_variance(t0), 0.0, atol=1e-8)
    np.testing.assert_allclose(
        sched.posterior_mean(jnp.asarray(x0), jnp.asarray(xt), t0), x0, rtol=1e-5
    )
    with pytest.raises(
        ValueError, match=r"Unknown variance 'small'; valid: \['beta', 'beta_tilde'\]"
    ):
        sched.posterior_variance(t, kind="small")


def test_learned_log_variance_interpolates_iddpm_bounds():
    sched = DS.from_name("linear", num_steps=100)
    b, ab = np.asarray(sched.betas, np.float64), np.asarray(sched.alphas_cumprod, np.float64)
    tilde = b[1:] * (1 - ab[:-1]) / (1 - ab[1:])  # beta-tilde at steps 1..N-1
    clipped = np.log(np.concatenate([[tilde[0]], tilde]))
    t = sched.timesteps()
    v = jnp.ones((100, 2))
    np.testing.assert_allclose(sched.learned_log_variance(-v, t)[:, 0], clipped, rtol=1e-4)
    np.testing.assert_allclose(sched.learned_log_variance(v, t)[:, 1], np.log(b), rtol=1e-4)
    mid = sched.learned_log_variance(0 * v, t)[:, 0]
    np.testing.assert_allclose(mid, 0.5 * (clipped + np.log(b)), rtol=1e-4)


def test_zero_terminal_snr():
    base = DS.from_name("linear", num_steps=1000)
    sched = DS.from_name("linear", num_steps=1000, zero_terminal_snr=True)
    # Lin et al. (2024) Algorithm 1, on betas, in float64.
    root = np.sqrt(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    np.testing.assert_allclose(sched.alphas_cumprod, root**2, rtol=1e-5, atol=1e-9)
    assert float(sched.alphas_cumprod[-1]) == 0.0
    np.testing.assert_allclose(sched.alphas_cumprod[0], base.alphas_cumprod[0], rtol=1e-6)
    np.testing.assert_allclose(sched.betas[-1], 1.0)
    assert bool(jnp.all(jnp.diff(sched.snr(sched.timesteps())) < 0))
    cont = sched.continuous
    np.testing.assert_allclose(cont.marginal(jnp.array([0.0, 1.0])), [[1, 0], [0, 1]], atol=1e-7)
    t = sched.timesteps()[:-1]
    np.testing.assert_allclose(cont.scale(t) ** 2, sched.alphas_cumprod[:-1], rtol=2e-2, atol=1e-4)
    chex.assert_tree_all_finite(sched.marginal(jnp.array([1.0])))


def test_bad_inputs():
    with pytest.raises(
        ValueError,
        match=r"Unknown schedule 'quadratic'; valid names: \['cosine', 'linear', 'sigmoid'\]",
    ):
        DS.from_name("quadratic")
    with pytest.raises(ValueError, match=r"num_steps=0"):
        DS.from_name("cosine", num_steps=0)
    with pytest.raises(ValueError, match=r"num_steps=2\.5"):
        DS.from_name("linear", num_steps=2.5)
    with pytest.raises(ValueError, match=r"betas\[1\]=1\.5"):
        DS.from_betas([0.1, 1.5])
    with pytest.raises(ValueError, match=r"betas\[0\]=0\.0"):
        DS.from_betas([0.0, 0.1])
    with pytest.raises(ValueError, match=r"num_steps=10 that gives beta_end=2\.0 >= 1"):
        DS.from_name("linear", num_steps=10)
    with pytest.raises(ValueError, match=r"start=1\.0, end=-1\.0"):
        DS.from_name("sigmoid", num_steps=10, start=1.0, end=-1.0)


class ScheduleVariantsTest(chex.TestCase):
    """The schedule passes through jit as a pytree; results match eager ones."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_schedule_functions(self):
        sched = DS.from_name("cosine", num_steps=50)
        x0 = jnp.linspace(-1, 1, 8).reshape(4, 2)
        xt = x0[::-1]
        t = jnp.array([0.02, 0.1, 0.5, 1.0])

        def fn(sched, x0, xt, t):
            return (
                sched.marginal(t),
                sched.posterior_mean(x0, xt, t),
                sched.posterior_variance(t),
                sched.learned_log_variance(0.5 * xt, t),
                sched.sample_marginal(jax.random.key(3), x0, t),
            )

        out = self.variant(fn)(sched, x0, xt, t)
        chex.assert_trees_all_close(out, jax.jit(fn)(sched, x0, xt, t), rtol=1e-6)
        chex.assert_shape(out[1], (4, 2))
        chex.assert_shape(out[2], (4,))
        chex.assert_tree_all_finite(out)
        assert math.isclose(
            float(out[0][0][-1]) ** 2, float(sched.alphas_cumprod[-1]), rel_tol=1e-4
        )


@pytest.mark.slow
def test_betas_match_diffusers():
    """Cross-check with the PyTorch diffusers package (imports torch: slow)."""
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    for ours, theirs in [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]:
        ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs)
        sched = DS.from_name(ours, num_steps=1000)
        np.testing.assert_allclose(sched.betas, ref.betas.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sched.alphas_cumprod, ref.alphas_cumprod.numpy(), rtol=1e-4)
    ref = rescale_zero_terminal_snr(DDPMScheduler(beta_schedule="linear").betas)
    sched = DS.from_name("linear", num_steps=1000, zero_terminal_snr=True)
    np.testing.assert_allclose(sched.betas, ref.numpy(), rtol=1e-4, atol=1e-6)
