"""Tests of jaxdiff.samplers.grids: formulas, the diffusers spacings, validation."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules, sdes
from jaxdiff.samplers import grids

VP, VE = sdes.VPSDE(), sdes.VESDE(sigma_min=0.01, sigma_max=50.0)


def _sigma_hat(process, times):
    return np.exp(-0.5 * np.asarray(process.log_snr(jnp.asarray(times))))


def test_uniform_and_quadratic_values():
    g = grids.uniform(VP, 4, t_start=1.0, t_end=0.2)
    np.testing.assert_allclose(g.times, [1.0, 0.8, 0.6, 0.4, 0.2], rtol=1e-6)
    q = grids.quadratic(VP, 4, t_start=1.0, t_end=0.0)
    np.testing.assert_allclose(q.times, [1.0, 0.5625, 0.25, 0.0625, 0.0], rtol=1e-6)
    assert g.num_steps == 4 and g.times.dtype == np.float32


@pytest.mark.parametrize("rho", [7.0, 3.0])
def test_edm_grid_is_rho_spaced_in_sigma(rho):
    # VE: sigma-hat = sigma, from sigma(1) = 50 to sigma(0.05) > sigma_min.
    g = grids.edm(VE, 10, t_start=1.0, t_end=0.05, rho=rho)
    s = _sigma_hat(VE, g.times)
    lo, hi = float(VE.sigma(0.05)), 50.0
    u = np.arange(11) / 10
    expected = (hi ** (1 / rho) + u * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    np.testing.assert_allclose(s, expected, rtol=2e-4)


def test_edm_grid_vp_to_zero_follows_karras():
    # EDM: N levels down to sigma_min = 0.002, then a final step to sigma = 0 (t = 0).
    g = grids.edm(VP, 18)
    s = _sigma_hat(VP, g.times)
    assert g.times[-1] == 0.0 and s[-1] == 0.0
    np.testing.assert_allclose(s[-2], 0.002, rtol=1e-3)
    hi = float(_sigma_hat(VP, [1.0])[0])
    u = np.arange(18) / 17
    expected = (hi ** (1 / 7) + u * (0.002 ** (1 / 7) - hi ** (1 / 7))) ** 7
    np.testing.assert_allclose(s[:-1], expected, rtol=2e-3)


@pytest.mark.parametrize("process", [VP, VE], ids=["vp", "ve"])
def test_log_snr_grid_is_uniform_in_log_snr(process):
    g = grids.log_snr(process, 8, t_start=1.0, t_end=1e-3)
    lam = np.asarray(process.log_snr(jnp.asarray(g.times)))
    np.testing.assert_allclose(np.diff(lam), np.diff(lam).mean(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("process", [VP, VE], ids=["vp", "ve"])
def test_time_at_log_snr_inverts(process):
    t = jnp.linspace(0.01, 0.99, 7)
    back = grids.time_at_log_snr(process, process.log_snr(t))
    np.testing.assert_allclose(back, t, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_discrete_spacings_match_diffusers(spacing):
    diffusers = pytest.importorskip("diffusers")
    sched = schedules.DiscreteSchedule.from_name("linear", 1000)
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    ref.set_timesteps(50)
    g = grids.discrete(sched, 50, spacing=spacing)
    ours = np.round(g.times[:-1] * 1000).astype(int) - 1
    np.testing.assert_array_equal(ours, ref.timesteps.numpy())
    assert g.times[-1] == 0.0  # DDIM's final step goes to alpha_bar = 1


def test_discrete_truncated_range():
    sched = schedules.DiscreteSchedule.from_name("linear", 100)
    g = grids.discrete(sched, 5, t_start=0.5, t_end=0.2, spacing="trailing")
    np.testing.assert_allclose(g.times, [0.5, 0.44, 0.38, 0.32, 0.26, 0.2], atol=1e-6)
    full = grids.discrete(sched, 100, spacing="leading")
    np.testing.assert_allclose(full.times[:-1], np.arange(100, 0, -1) / 100, atol=1e-6)
    np.testing.assert_allclose(full.reversed().times, full.times[::-1])


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: grids.uniform(VP, 0), "num_steps must be an integer >= 1"),
        (lambda: grids.uniform(VP, 2.0), "num_steps must be an integer >= 1"),
        (lambda: grids.uniform(VP, 4, t_start=0.3, t_end=0.5), r"t_start must lie in \(t_end, 1\]"),
        (lambda: grids.uniform(VP, 4, t_start=1.5), r"t_start must lie in \(t_end, 1\]"),
        (lambda: grids.uniform(VP, 4, t_end=-0.1), r"t_end must lie in \[0, 1\)"),
        (lambda: grids.log_snr(VP, 4, t_end=0.0), "finite log-SNR at both ends"),
        (lambda: grids.edm(VP, 4, rho=0.0), "rho must be > 0"),
        (lambda: grids.discrete(VP, 4), "needs a DiscreteSchedule; got VPSDE"),
        (lambda: grids.TimeGrid(np.array([1.0, 0.5, 0.7])), "strictly monotone"),
        (lambda: grids.TimeGrid(np.array([1.2, 0.5])), r"lie in \[0, 1\]"),
        (lambda: grids.TimeGrid(np.array([1.0])), "N >= 1"),
        (lambda: grids.build("cubic", VP, 4, 1.0, 0.0), "valid grids: .*'edm'"),
        (lambda: grids.build("uniform", VP, 4, 1.0, 0.0, rho=7.0), "takes parameters"),
    ],
)
def test_bad_grids_raise(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_discrete_grids_raise():
    sched = schedules.DiscreteSchedule.from_name("linear", 100)
    with pytest.raises(ValueError, match="exceeds the 50 schedule steps"):
        grids.discrete(sched, 60, t_start=0.5)
    with pytest.raises(ValueError, match="not on the schedule's grid"):
        grids.discrete(sched, 5, t_start=0.505)
    with pytest.raises(ValueError, match="valid spacings"):
        grids.discrete(sched, 5, spacing="middle")
