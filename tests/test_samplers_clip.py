"""``clip_x0`` of the discrete samplers: a no-op inside the box, a rescue at alpha_bar ~ 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import samplers, schedules
from jaxdiff.samplers import discrete

COSINE = schedules.DiscreteSchedule.from_name("cosine", 1000)


def _binary_eps_model(bias: float = 0.0):
    """eps of the exact denoiser for data uniform on {-1, +1}, plus a constant error."""

    def model(x, t):
        ab = discrete.alpha_bar(COSINE, t)[:, None]
        x0 = jnp.tanh(jnp.sqrt(ab) * x / (1.0 - ab))  # E[x0 | x_t] for x0 = +-1
        return (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab) + bias

    return model


def _ddim(model, **options):
    return samplers.sample(
        jax.random.key(0),
        model,
        COSINE,
        (512, 1),
        method="ddim",
        num_steps=20,
        kind="eps",
        **options,
    )[0]


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_clip_is_a_no_op_when_x0_stays_inside(method):
    # The exact denoiser's x0 = tanh(...) is inside (-1, 1): clipping at 1 must change nothing
    # (eps re-derived from the unclipped x0 is eps itself).
    run = lambda **o: samplers.sample(  # noqa: E731
        jax.random.key(1), _binary_eps_model(), COSINE, (256, 1), method=method,
        num_steps=20, kind="eps", spacing="leading", **o,
    )[0]  # fmt: skip
    np.testing.assert_allclose(run(clip_x0=1.0), run(), atol=2e-5)


def test_clip_rescues_trailing_spacing_from_collapse():
    # Trailing spacing starts at alpha_bar(t=1) ~ 2e-9 on cosine: x0 = (x - sqrt(1-ab) eps) /
    # sqrt(ab) multiplies a 0.05 error in eps by ~2e4, so the first step throws every sample
    # to the same side. Unclipped, all samples collapse into one mode (and overshoot it);
    # clipped, both of the data's points +-1 keep about half of the samples.
    assert float(discrete.alpha_bar(COSINE, jnp.float32(1.0))) < 1e-6
    model = _binary_eps_model(bias=0.05)
    raw, clipped = _ddim(model, spacing="trailing"), _ddim(model, spacing="trailing", clip_x0=1.0)
    assert float(jnp.mean(raw > 0)) in (0.0, 1.0)
    assert float(jnp.max(jnp.abs(clipped))) <= 1.0
    assert float(jnp.mean(jnp.abs(jnp.abs(clipped) - 1.0))) < 0.05  # on the points +-1
    assert 0.4 < float(jnp.mean(clipped > 0)) < 0.6


def test_clip_x0_must_be_positive():
    with pytest.raises(ValueError, match="clip_x0 must be None or a float > 0"):
        _ddim(_binary_eps_model(), clip_x0=0.0)
