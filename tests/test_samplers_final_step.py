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
