"""Tests of training.optim: warmup, clipping, Adam/AdamW choice, parameter EMA."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.training import optim


def test_warmup_is_linear_then_constant():
    sched = optim.learning_rate_schedule(1e-3, warmup_steps=100)
    np.testing.assert_allclose(
        [sched(0), sched(50), sched(100), sched(1000)], [0.0, 5e-4, 1e-3, 1e-3], rtol=1e-6
    )
    assert optim.learning_rate_schedule(1e-3, 0)(0) == pytest.approx(1e-3)


def test_gradients_are_clipped_by_global_norm_before_adam():
    tx = optim.make_optimizer("adam", 1e-3, clip_norm=1.0, b1=0.9)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(4)}
    grads = {"a": jnp.full(3, 2.0), "b": jnp.full(4, 2.0)}  # global norm 2 sqrt(7)
    _, state = tx.update(grads, tx.init(params), params)
    mu = state[1][0].mu  # chain(clip, adam): Adam's first moment = (1 - b1) * clipped g
    np.testing.assert_allclose(mu["a"], 0.1 * 2.0 / (2.0 * np.sqrt(7.0)), rtol=1e-5)
    small = {"a": jnp.full(3, 0.1), "b": jnp.zeros(4)}  # norm < 1: untouched
    _, state = tx.update(small, tx.init(params), params)
    np.testing.assert_allclose(state[1][0].mu["a"], 0.01, rtol=1e-5)


def test_adamw_decays_weights_and_adam_refuses_decay():
    tx = optim.make_optimizer("adamw", 0.1, clip_norm=None, weight_decay=0.5)
    params = {"w": jnp.ones(2)}
    updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * 1.0, rtol=1e-6)  # zero grad
    with pytest.raises(ValueError, match="adamw"):
        optim.make_optimizer("adam", 0.1, weight_decay=0.1)
    with pytest.raises(ValueError, match="valid names: \\['adam', 'adamw'\\]"):
        optim.make_optimizer("sgd")


def test_ema_of_parameters_converges_geometrically():
    target = {"w": jnp.full(3, 2.0)}
    decays = (0.9, 0.5)
    ema = optim.ema_init({"w": jnp.zeros(3)}, decays)
    assert sorted(ema) == ["0.5", "0.9"]
    for _ in range(7):
        ema = optim.ema_update(ema, target, decays)
    for d in decays:  # ema_n = p + d^n (ema_0 - p)
        np.testing.assert_allclose(ema[optim.ema_key(d)]["w"], 2.0 - 2.0 * d**7, rtol=1e-5)


def test_ema_warmup_uses_the_update_count():
    ema = optim.ema_init({"w": jnp.zeros(1)}, (0.999,))
    new = optim.ema_update(ema, {"w": jnp.ones(1)}, (0.999,), step=0, warmup=True)
    np.testing.assert_allclose(new["0.999"]["w"], 1.0 - 0.1, rtol=1e-6)  # d' = 1/10
    late = optim.ema_update(ema, {"w": jnp.ones(1)}, (0.999,), step=10**6, warmup=True)
    np.testing.assert_allclose(late["0.999"]["w"], 0.001, rtol=1e-4)  # d' = d


def test_ema_decay_out_of_range():
    with pytest.raises(ValueError, match="\\[0, 1\\)"):
        optim.ema_init({"w": jnp.zeros(1)}, (1.0,))
