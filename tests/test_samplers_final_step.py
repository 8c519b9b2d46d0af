"""The discrete samplers' last step lands on alpha_bar = 1 (t = 0), not on the first step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules


@pytest.mark.parametrize("num_steps", [10, 1000])
def test_ddim_with_an_exact_x0_model_returns_x0(num_steps):
    sched = schedules.DiscreteSchedule.from_name("linear", 1000)
    x0 = jnp.array([[0.3, -0.7]])
    model = lambda x, t: jnp.broadcast_to(x0, x.shape)
    x, _ = samplers.sample(
        jax.random.key(0), model, sched, (4, 2), method="ddim", num_steps=num_steps, kind="x0"
    )
    np.testing.assert_allclose(x, jnp.broadcast_to(x0, x.shape), atol=1e-5)


def test_edm_grid_on_the_cosine_schedule_starts_at_sigma_max_80():
    # sigma/scale of the continuous cosine form at t = 1 is ~2e7: unresolvable in float32.
    from jaxdiff.samplers import grids

    cosine = schedules.DiscreteSchedule.from_name("cosine", 1000).continuous
    grid = grids.edm(cosine, num_steps=18)
    sigma_hat = np.exp(-0.5 * np.asarray(cosine.log_snr(jnp.asarray(grid.times[:1]))))
    np.testing.assert_allclose(sigma_hat, [80.0], rtol=1e-3)
    x, info = samplers.sample(
        jax.random.key(0), lambda x, t: -x, cosine, (8, 2), method="ode_heun", num_steps=18
    )
    assert bool(jnp.all(jnp.isfinite(x))) and int(info["nfe"]) == 35
