"""Correctness fixes of the samplers' second pass (issue 14), each against its reference.

1. ``edm_stochastic`` without churn is exactly ``ode_heun`` (Karras et al. Alg. 2, gamma = 0).
2. The DDPM bound's decoder term with fixed-large variance uses beta-tilde_1 (DDPM/iDDPM
   reference code) -- in tests/test_likelihood.py.
3. Heun applies its correction on the last step unless it ends at sigma = 0 (Alg. 1).
4. Continuous samplers query a discrete-time network only at its trained noise levels.
5. Annealed Langevin starts at the top level t_start (Song & Ermon, Alg. 1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampler_targets import DIM, exact_score

from jaxdiff import samplers, schedules, sdes

VE = sdes.VESDE(sigma_min=0.01, sigma_max=100.0)
VP = sdes.VPSDE(beta_min=0.1, beta_max=20.0)


@pytest.mark.parametrize("process", [VE, VP], ids=["ve", "vp"])
def test_edm_stochastic_without_churn_equals_ode_heun(process):
    key, shape = jax.random.key(3), (256, 2 * DIM)
    run = lambda method, **o: samplers.sample(
        key, exact_score(process), process, shape, method=method, num_steps=18, **o
    )
    heun, info_h = run("ode_heun")
    churn0, info_c = run("edm_stochastic", S_churn=0.0)
    assert int(info_h["nfe"]) == int(info_c["nfe"])
    # Before the fix: sqrt(max(s_hat^2 - s_t^2, 0)) rounding noise, up to 1.3e-2 on VE.
    np.testing.assert_allclose(churn0, heun, atol=1e-5, rtol=0)


def _calls(method, process, n, **options):
    calls = []

    def model(x, t):
        jax.debug.callback(lambda t: calls.append(np.asarray(t)), t)
        return -x

    _, info = samplers.sample(
        jax.random.key(0), model, process, (2, 3), method=method, num_steps=n, **options
    )
    jax.effects_barrier()
    assert int(info["nfe"]) == len(calls)
    return int(info["nfe"]), calls


@pytest.mark.parametrize("method", ["ode_heun", "edm_stochastic"])
def test_heun_corrects_the_last_step_unless_it_ends_at_sigma_zero(method):
    # VE ends at sigma(0) = sigma_min > 0: every step is Heun, 2N calls, the last at t_end.
    nfe, calls = _calls(method, VE, 10)
    assert nfe == 20
    np.testing.assert_allclose(calls[-1], 0.0)
    # VP ends at sigma(0) = 0: the last step is Euler (the slope at sigma = 0 is undefined).
    assert _calls(method, VP, 10)[0] == 19
    # ...but a VP grid stopping early at t_end > 0 is Heun to the end.
    nfe, calls = _calls(method, VP, 10, t_end=0.05)
    assert nfe == 20
    np.testing.assert_allclose(calls[-1], 0.05, rtol=1e-6)


@pytest.mark.parametrize("process", [VE, VP], ids=["ve", "vp"])
def test_annealed_langevin_starts_at_the_top_level(process):
    # Song & Ermon, Alg. 1: levels sigma_1 = sigma_max > ... > sigma_L, L = num_steps.
    nfe, calls = _calls("annealed_langevin", process, 4, steps_per_level=3, t_end=0.01,
                        denoise_final=False)  # fmt: skip
    assert nfe == 12
    levels = np.unique(np.concatenate([np.ravel(c)[:1] for c in calls]))[::-1]
    assert len(levels) == 4
    np.testing.assert_allclose(levels[[0, -1]], [1.0, 0.01], rtol=1e-5)
    lam = np.asarray(process.log_snr(jnp.asarray(levels)))
    np.testing.assert_allclose(np.diff(lam), np.diff(lam)[0], rtol=1e-3)  # log-SNR uniform


def test_annealed_langevin_needs_two_levels():
    with pytest.raises(ValueError, match="noise levels from t_start to t_end.*>= 2"):
        samplers.sample(jax.random.key(0), lambda x, t: -x, VE, (2, 3),
                        method="annealed_langevin", num_steps=1)  # fmt: skip


COSINE = schedules.DiscreteSchedule.from_name("cosine", 1024)  # as the shipped models
ON_LEVELS = [
    ("ode_euler", {}),
    ("ode_heun", {}),
    ("edm_stochastic", {}),  # S_churn = 40: churned levels are rounded to trained ones
    ("edm_stochastic", {"S_tmin": 0.0, "S_tmax": 1e9, "S_churn": 5.0}),
    ("dpm_solver++", {"denoise_final": True}),
    ("euler_maruyama", {}),
    ("pc", {}),
    ("annealed_langevin", {"steps_per_level": 2}),
    ("ode_heun", {"grid": "log_snr", "t_end": 1e-3}),
    ("dpm_solver++", {"grid": "quadratic"}),
]


@pytest.mark.parametrize("method, options", ON_LEVELS, ids=[m for m, _ in ON_LEVELS])
def test_discrete_network_is_queried_only_at_trained_levels(method, options):
    # A network trained on the 1024 discrete steps knows t_i = (i + 1) / 1024 only; the
    # continuous form's noise level differs from alphas_cumprod by up to a few percent.
    _, calls = _calls(method, COSINE, 12, **options)
    t = np.concatenate([np.ravel(c) for c in calls]) * COSINE.num_steps
    assert np.all(t >= 1 - 1e-3)
    np.testing.assert_allclose(t, np.round(t), atol=2e-3)


def test_continuous_samplers_see_the_trained_alphas_cumprod():
    # The x0 a v-prediction network implies is computed with the sampler's noise level: on
    # a point mass at c an exact discrete v-model (alpha_bar looked up in the table at
    # round(t N)) makes every sampler return c exactly only if the sampler uses the table.
    c = jnp.array([[0.5, -0.25, 1.0]])

    def v_model(x, t):
        ab = COSINE.alphas_cumprod[jnp.round(t * COSINE.num_steps).astype(jnp.int32) - 1]
        a, s = jnp.sqrt(ab)[:, None], jnp.sqrt(1 - ab)[:, None]
        eps = (x - a * c) / s
        return a * eps - s * c

    for method in ("ode_heun", "dpm_solver++", "ode_euler"):
        x, _ = samplers.sample(jax.random.key(0), v_model, COSINE, (4, 3), method=method,
                               num_steps=10, kind="v", denoise_final=True)  # fmt: skip
        np.testing.assert_allclose(x, jnp.broadcast_to(c, x.shape), atol=1e-4, err_msg=method)


def test_too_many_steps_for_the_levels_raise():
    sched = schedules.DiscreteSchedule.from_name("cosine", 20)
    with pytest.raises(ValueError, match="needs more levels than the 20-step schedule"):
        samplers.sample(jax.random.key(0), lambda x, t: -x, sched, (2, 3), method="ode_heun",
                        num_steps=40)  # fmt: skip
