"""Per-example randomness, per-example guidance weights and progressive x0 previews."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import guidance, samplers, schedules, sdes

SCHED = schedules.DiscreteSchedule.from_name("linear", 100)
VP = sdes.VPSDE()
METHODS = [
    ("ddpm", SCHED, {}),
    ("ddim", SCHED, {"eta": 1.0}),
    ("euler_maruyama", VP, {}),
    ("edm_stochastic", VP, {}),
    ("annealed_langevin", sdes.VESDE(), {"steps_per_level": 2}),
    ("ode_heun", VP, {}),
]


def _model(x, t):
    return -x * (1.0 + t[:, None, None])  # per-example: row i sees only x[i], t[i]


@pytest.mark.parametrize("method, process, options", METHODS, ids=[m[0] for m in METHODS])
def test_example_does_not_depend_on_its_batch_mates(method, process, options):
    keys = jax.random.split(jax.random.key(7), 4)
    run = lambda k, b: samplers.sample(k, _model, process, (b, 3, 2), method=method,
                                       num_steps=8, **options)[0]  # fmt: skip
    batch = run(keys, 4)
    for i in range(4):
        alone = run(keys[i : i + 1], 1)
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-5, rtol=1e-5)
    assert float(jnp.max(jnp.abs(batch[0] - batch[1]))) > 1e-3  # different keys differ


def test_seeds_and_raw_keys_are_per_example_keys():
    seeds = jnp.arange(3, dtype=jnp.int32)
    run = lambda k: samplers.sample(k, _model, SCHED, (3, 3, 2), method="ddpm", num_steps=5)[0]
    by_seed = run(seeds)
    by_key = run(jax.vmap(jax.random.key)(seeds))
    np.testing.assert_array_equal(by_seed, by_key)
    with pytest.raises(ValueError, match="one key per example"):
        run(jax.random.split(jax.random.key(0), 5))


def test_per_example_guidance_weight():
    def model(x, t, label):
        return x * 0 + label[:, None, None].astype(jnp.float32)  # cond: label, null: 10

    x, t = jnp.ones((3, 2, 4)), jnp.full((3,), 0.5)
    labels = jnp.array([1, 2, 3])
    w = jnp.array([0.0, 1.0, 2.0])
    out = guidance.cfg(model, w=w, null_label=10)(x, t, label=labels)
    expected = (1 + w) * labels - w * 10.0
    np.testing.assert_allclose(out, jnp.broadcast_to(expected[:, None, None], x.shape))
    # Each example equals the scalar-w guidance of that example alone.
    for i in range(3):
        guided = guidance.cfg(model, w=float(w[i]), null_label=10)
        alone = guided(x[i : i + 1], t[i : i + 1], label=labels[i : i + 1])
        np.testing.assert_allclose(out[i], alone[0])
    with pytest.raises(ValueError, match=r"per-example w must have shape \(B,\) = \(3,\)"):
        guidance.cfg(model, w=jnp.ones(2), null_label=10)(x, t, label=labels)
    with pytest.raises(ValueError, match="w must be >= 0"):
        guidance.cfg(model, w=np.array([1.0, -1.0, 0.0]), null_label=10)


def test_previews_report_predicted_x0_without_extra_calls():
    seen = []
    fn = lambda k, t, x0: seen.append((int(k), np.asarray(t), np.asarray(x0)))
    x0 = jnp.array([[0.5, -0.5]])
    model = lambda x, t: jnp.broadcast_to(x0, x.shape)
    x, info = samplers.sample(jax.random.key(0), model, SCHED, (2, 2), method="ddim",
                              num_steps=10, kind="x0", preview_fn=fn, preview_every=4)  # fmt: skip
    jax.effects_barrier()
    assert [k for k, _, _ in seen] == [0, 4, 8, 9] and int(info["nfe"]) == 10
    for _, t, pred in seen:
        assert t.shape == (2,) and pred.shape == (2, 2)
        np.testing.assert_allclose(pred, jnp.broadcast_to(x0, (2, 2)), atol=1e-5)
    with pytest.raises(ValueError, match="preview_every must be an integer >= 1"):
        samplers.sample(jax.random.key(0), model, SCHED, (2, 2), method="ddim", num_steps=4,
                        preview_fn=fn, preview_every=0)  # fmt: skip
