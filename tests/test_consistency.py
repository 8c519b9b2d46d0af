"""Consistency models (``jaxdiff.distill.consistency``, ``consistency_losses`` and the
``consistency`` sampler) against Gaussian data, whose probability-flow ODE and consistency
map are known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules
from jaxdiff.distill import consistency as cm
from jaxdiff.distill import consistency_losses as cl

MU, C = 0.3, 0.7  # x ~ N(MU, C^2) in every pixel
SCHEDULE = schedules.DiscreteSchedule.from_name("cosine", num_steps=256)
T_MIN = 1.0 / 256
SIGMA_MIN = float(cm.sigma_hat(SCHEDULE, T_MIN))


def ratio(sigma_to, sigma_from):
    """(x~(sigma_to) - MU) / (x~(sigma_from) - MU) along a probability-flow ODE path."""
    return jnp.sqrt(C**2 + sigma_to**2) / jnp.sqrt(C**2 + sigma_from**2)


def expand(a, x):
    return a.reshape((-1,) + (1,) * (x.ndim - 1))


def exact_f(x_tilde, t, **cond):
    """The exact consistency map: the ODE solution carried to sigma_min."""
    sigma = cm.sigma_hat(SCHEDULE, jnp.broadcast_to(t, x_tilde.shape[:1]))
    return MU + (x_tilde - MU) * expand(ratio(SIGMA_MIN, sigma), x_tilde)


def exact_ode(x_tilde, t_hi, t_lo, **cond):
    s_hi, s_lo = cm.sigma_hat(SCHEDULE, t_hi), cm.sigma_hat(SCHEDULE, t_lo)
    return MU + (x_tilde - MU) * expand(ratio(s_lo, s_hi), x_tilde)


def data(shape=(64, 4, 4, 1), seed=0):
    return MU + C * jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score"])
def test_the_consistency_function_is_the_identity_at_t_min(kind):
    net = lambda z, t, **c: 7.0 * jnp.sin(3.0 * z) + 1000.0 * expand(t, z)
    f = cm.consistency_fn(net, kind, SCHEDULE, T_MIN)
    x = data()
    assert jnp.array_equal(f(x, jnp.full((64,), T_MIN)), x)
    assert not jnp.allclose(f(x, jnp.full((64,), 0.5)), x, atol=1e-3)


def cd_loss(f, key=0, distance="l2", weighting="uniform", per_example=False):
    loss_fn = cl.make_cd_loss(
        None,
        SCHEDULE,
        kind="x0",
        teacher_kind="x0",
        t_min=T_MIN,
        num_intervals=18,
        distance=distance,
        ode_step=exact_ode,
        make_f=lambda model_fn: f,
        weighting=weighting,
    )
    loss, metrics = loss_fn(None, jax.random.key(key), data(seed=key))
    return metrics if per_example else float(loss)


def wrong_ratio(x, t, std=0.5):
    sigma = expand(cm.sigma_hat(SCHEDULE, jnp.broadcast_to(t, x.shape[:1])), x)
    return jnp.sqrt(std**2 + SIGMA_MIN**2) / jnp.sqrt(std**2 + sigma**2)


@pytest.mark.parametrize("weighting", ["uniform", "ict"])
@pytest.mark.parametrize("distance", ["l2", "pseudo_huber"])
def test_cd_loss_is_zero_at_the_exact_consistency_map_and_positive_elsewhere(distance, weighting):
    cd_loss_of = lambda f, key, distance: cd_loss(f, key, distance, weighting)
    exact = max(cd_loss_of(exact_f, k, distance) for k in range(3))
    assert exact < 1e-9
    # (a constant shift or scale of f about MU stays consistent: the boundary condition of
    # the parametrisation, not this loss, rules those out)
    wrong = {
        "a time-dependent shift": lambda x, t: exact_f(x, t) + 0.01 * expand(t, x),
        "the map of data with std 0.5": lambda x, t: MU + (x - MU) * wrong_ratio(x, t),
        "the identity": lambda x, t: x,
    }
    for name, f in wrong.items():
        assert cd_loss_of(f, 0, distance) > 1e-6, name


def test_ict_weighting_divides_each_pair_by_its_gap():
    times = cl.karras_times(SCHEDULE, 18, T_MIN)
    sigmas = np.asarray(cm.sigma_hat(SCHEDULE, jnp.asarray(times)), np.float64)
    wrong = lambda x, t: x  # the identity: every pair has a positive loss
    uniform = cd_loss(wrong, 0, per_example=True)
    ict = cd_loss(wrong, 0, weighting="ict", per_example=True)
    t_hi = np.asarray(uniform["t"])
    n = np.searchsorted(times, t_hi)  # the pair's upper grid index
    assert np.all(times[n] == t_hi) and np.all(n >= 1)
    gap = sigmas[n] - sigmas[n - 1]
    expected = np.asarray(uniform["loss_per_example"]) / gap
    np.testing.assert_allclose(np.asarray(ict["loss_per_example"]), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="valid: \\['uniform', 'ict'\\]"):
        cd_loss(wrong, 0, weighting="snr")


def test_cd_with_the_heun_teacher_nears_the_exact_step():
    """The teacher's Heun step on the exact denoiser is a second-order ODE step."""
    denoise = lambda x, t: MU + C**2 / (C**2 + expand(cm.sigma_hat(SCHEDULE, t), x) ** 2) * (x - MU)
    x = data(shape=(8, 4, 4, 1))
    errors = []
    for gap in (0.2, 0.1, 0.05):
        t_hi, t_lo = jnp.full((8,), 0.5), jnp.full((8,), 0.5 - gap)
        x_hi = x + expand(cm.sigma_hat(SCHEDULE, t_hi), x) * 0.5
        heun = cm.heun_step(denoise, SCHEDULE, x_hi, t_hi, t_lo)
        errors.append(float(jnp.max(jnp.abs(heun - exact_ode(x_hi, t_hi, t_lo)))))
    assert errors[0] > errors[1] > errors[2] > 0
    assert errors[1] / errors[2] > 4.0  # local error O(h^3)


@pytest.mark.parametrize("distance", ["l2", "pseudo_huber"])
def test_ct_loss_at_the_exact_map_falls_like_the_step(distance):
    x0 = data(shape=(256, 28, 28, 1))
    eps = jax.random.normal(jax.random.key(1), x0.shape)
    t_lo = jnp.full((256,), 0.4)
    s_lo = cm.sigma_hat(SCHEDULE, t_lo)
    deltas = np.array([4e-4, 2e-4, 1e-4])
    losses = []
    for delta in deltas:
        t_hi = _time_at_sigma(s_lo + delta)
        s_hi = cm.sigma_hat(SCHEDULE, t_hi)
        x_hi, x_lo = x0 + expand(s_hi, x0) * eps, x0 + expand(s_lo, x0) * eps
        per = cm.pair_loss(exact_f, exact_f, x_hi, t_hi, x_lo, t_lo, 1 / (s_hi - s_lo), distance)
        losses.append(float(jnp.mean(per)))
    slope = np.polyfit(np.log(deltas), np.log(losses), 1)[0]
    assert 0.85 < slope < 1.15, (slope, losses)


def _time_at_sigma(sigma):
    from jaxdiff.samplers import grids

    return grids.time_at_log_snr(SCHEDULE, -2.0 * jnp.log(sigma))


def test_ct_curriculum_and_noise_distribution():
    stages, per_stage = cl.curriculum(8000, s0=10, s1=1280)
    assert stages == [10, 20, 40, 80, 160, 320, 640, 1280] and per_stage == 1000
    times, logp, _ = cl.ct_tables(SCHEDULE, 800, T_MIN, s0=10, s1=40)
    assert times.shape == (3, 41) and logp.shape == (3, 40)
    for i, n in enumerate([10, 20, 40]):
        assert np.isclose(np.exp(logp[i, :n]).sum(), 1.0, atol=1e-5)
        assert np.all(np.isneginf(logp[i, n:]))
        assert np.all(np.diff(times[i, : n + 1]) > 0) and np.isclose(times[i, 0], T_MIN)
    loss_fn = cl.make_ct_loss(SCHEDULE, kind="x0", t_min=T_MIN, total_steps=800, s0=10, s1=40)
    net = lambda z, t, **c: 0.5 * z
    for step in (0, 799):
        loss, metrics = loss_fn(net, jax.random.key(0), data(), step=jnp.int32(step))
        assert np.isfinite(float(loss)) and metrics["loss_per_example"].shape == (64,)


def exact_network(z, t, **cond):
    """An x0-predicting network whose consistency function is exact_f."""
    x_tilde = z / expand(SCHEDULE.marginal(t)[0], z)
    sigma = expand(cm.sigma_hat(SCHEDULE, t), z)
    c_skip, c_out = cm.boundary_coefficients(sigma, SIGMA_MIN)
    edm_skip = 0.25 / (sigma**2 + 0.25)
    edm_out = sigma * 0.5 / jnp.sqrt(sigma**2 + 0.25)
    return edm_skip * x_tilde + edm_out * (exact_f(x_tilde, t) - c_skip * x_tilde) / c_out


@pytest.mark.parametrize("num_steps, options", [(1, {}), (2, {"sigma_min": 1.0})])
def test_consistency_sampling_of_the_exact_model_draws_the_data(num_steps, options):
    x, info = samplers.sample(
        jax.random.key(3),
        exact_network,
        SCHEDULE,
        (4000, 2, 2, 1),
        method="consistency",
        num_steps=num_steps,
        kind="x0",
        **options,
    )
    assert int(info["nfe"]) == num_steps
    assert abs(float(x.mean()) - MU) < 0.02 and abs(float(x.std()) - C) < 0.02
