"""Tests for jaxdiff.time_sampling: uniform / antithetic t and importance sampling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules, sdes, time_sampling

VP = sdes.VPSDE(0.1, 20.0)
VE = sdes.VESDE(0.01, 50.0)


def test_time_samplers():
    key = jax.random.key(10)
    t = time_sampling.sample_time(key, 1000, VP, "uniform", t_min=0.01)
    assert float(t.min()) >= 0.01 and float(t.max()) < 1.0
    t = np.sort(np.asarray(time_sampling.sample_time(key, 100, VE, "antithetic", t_min=0.0)))
    np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-6)  # one draw per stratum
    sched = schedules.DiscreteSchedule.from_name("linear", 100)
    t = time_sampling.sample_time(key, 100, sched, "antithetic")
    np.testing.assert_array_equal(np.sort(np.asarray(sched.index(t))), np.arange(100))
    np.testing.assert_allclose(t * 100, np.round(t * 100), atol=1e-4)
    with pytest.raises(
        ValueError, match=r"Unknown time sampler 'sobol'; valid names: \['antithetic', 'uniform'\]"
    ):
        time_sampling.sample_time(key, 4, VP, "sobol")
    with pytest.raises(ValueError, match=r"t_min must lie in \[0, 1\); got t_min=1\.5"):
        time_sampling.sample_time(key, 4, VP, t_min=1.5)


_update = jax.jit(time_sampling.importance_update)
_probs = jax.jit(time_sampling.importance_probs)


def test_importance_state_ring_buffer_and_warmup():
    state = time_sampling.importance_init(4, 2, t_min=0.0)
    t = jnp.array([0.1, 0.1, 0.1, 0.3, 0.6])  # bins 0, 0, 0, 1, 2
    state = _update(state, t, jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(state.count, [2, 1, 1, 0])
    assert sorted(np.asarray(state.history[0]).tolist()) == [2.0, 3.0]  # last 2 of bin 0
    np.testing.assert_allclose(_probs(state), 0.25)  # bin 3 still empty
    state = _update(state, jnp.array([0.3, 0.6, 0.9, 0.9]), jnp.ones(4) * 6.0)
    np.testing.assert_array_equal(state.count, [2, 2, 2, 2])
    rms = np.sqrt([(4 + 9) / 2, (16 + 36) / 2, (25 + 36) / 2, 36.0])
    np.testing.assert_allclose(_probs(state), 0.999 * rms / rms.sum() + 0.001 / 4, rtol=1e-5)
    norms = time_sampling.importance_init(2, 1, mode="score_norm", uniform_mix=0.0)
    norms = _update(norms, jnp.array([0.2, 0.8]), jnp.array([3.0, 1.0]))
    np.testing.assert_allclose(_probs(norms), [0.75, 0.25], rtol=1e-6)


@pytest.mark.parametrize("discrete", [False, True])
def test_importance_reweighting_keeps_expectation(discrete):
    process = schedules.DiscreteSchedule.from_name("cosine", 20) if discrete else VP
    loss_of_t = lambda t: jnp.exp(4.0 * t)  # a known per-t loss, rising 55-fold over [0, 1]
    state = time_sampling.importance_init(20, 4, process=process, t_min=0.0, uniform_mix=0.01)
    update = _update
    t = (jnp.arange(20) + (1.0 if discrete else 0.5)) / 20  # every bin once
    for _ in range(4):
        state = update(state, t, loss_of_t(t))
    sample = jax.jit(time_sampling.importance_sample, static_argnums=2)
    t, w = sample(state, jax.random.key(9), 200_000)
    values = np.asarray(w * loss_of_t(t))
    if discrete:
        expected = float(jnp.mean(loss_of_t(process.timesteps())))
    else:
        expected = (np.exp(4.0) - 1.0) / 4.0
    assert abs(values.mean() - expected) < 4 * values.std() / np.sqrt(values.size)
    assert float(jnp.mean(t)) > 0.6  # sampling follows the loss, away from uniform (0.5)
    uniform = np.asarray(
        loss_of_t(time_sampling.sample_time(jax.random.key(1), 200_000, process, t_min=0))
    )
    assert values.std() < 0.5 * uniform.std()  # and it reduces the variance


def test_importance_bad_inputs():
    with pytest.raises(
        ValueError, match=r"Unknown importance mode 'grad'; valid names: \['loss', 'score_norm'\]"
    ):
        time_sampling.importance_init(10, 5, mode="grad")
    sched = schedules.DiscreteSchedule.from_name("cosine", 20)
    with pytest.raises(ValueError, match=r"num_bins must equal num_steps=20; got num_bins=10"):
        time_sampling.importance_init(10, 5, process=sched)
    with pytest.raises(ValueError, match=r"num_bins=0"):
        time_sampling.importance_init(0, 5)


class ImportanceVariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_importance_sample_and_update(self):
        state = time_sampling.importance_init(4, 1)
        sample = self.variant(time_sampling.importance_sample, static_argnums=2)
        t, w = sample(state, jax.random.key(0), 6)
        chex.assert_shape([t, w], (6,))
        np.testing.assert_allclose(w, 1.0)  # uniform while the history is not full
        new = self.variant(time_sampling.importance_update)(state, t, t)
        chex.assert_trees_all_close(new, jax.jit(time_sampling.importance_update)(state, t, t))
