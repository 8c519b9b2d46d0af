"""Tests of training.step and training.state with a tiny stand-in network and loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import schedules
from jaxdiff.training import optim
from jaxdiff.training import state as state_lib
from jaxdiff.training import step as step_lib
from tests import _standins

pytestmark = pytest.mark.usefixtures("fast_compiles")


PROCESS = schedules.DiscreteSchedule.from_name("cosine", num_steps=100)


def setup(num_classes=None, dropout=0.0, **kwargs):
    net = _standins.TinyNet(num_classes=num_classes, dropout=dropout)
    x, cond = jnp.zeros((1, 4, 4, 1)), {}
    if num_classes:
        cond["label"] = jnp.zeros((1,), jnp.int32)
    params = net.init(jax.random.key(0), x, jnp.zeros(1), **cond)["params"]
    tx = optim.make_optimizer("adam", 1e-2, clip_norm=1.0)
    fn = step_lib.make_train_step(
        net.apply, _standins.eps_loss(PROCESS), tx, PROCESS, num_classes=num_classes, **kwargs
    )
    return fn, state_lib.create(params, tx, kwargs.get("ema_decays", ()), seed=0)


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": jnp.asarray(rng.uniform(-1, 1, (n, 4, 4, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 3, n), jnp.int32),
    }


def test_steps_reduce_the_loss_and_update_ema():
    fn, st = setup(ema_decays=(0.9,))
    fn = jax.jit(fn)
    b = batch(64)
    losses = []
    for _ in range(60):
        st, m = fn(st, b)
        losses.append(float(m["loss"]))
    assert int(st.step) == 60
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    ema, params = st.ema["0.9"], st.params
    assert not jax.tree.all(jax.tree.map(lambda a, b: jnp.array_equal(a, b), ema, params))


def test_keys_fold_in_the_step():
    fn, st = setup()
    fn = jax.jit(fn)
    _, m1 = fn(st, batch())
    _, m2 = fn(st, batch())
    assert m1["loss"] == m2["loss"]  # same (state, batch) -> same step
    _, m3 = fn(st.replace(step=st.step + 1), batch())
    assert m1["loss"] != m3["loss"]  # next step, new noise and t


def test_label_dropout_rate():
    labels = jnp.zeros(20000, jnp.int32)
    key = jax.random.key(1)
    assert jnp.all(step_lib.drop_labels(key, labels, 0.0, 10) == 0)
    assert jnp.all(step_lib.drop_labels(key, labels, 1.0, 10) == 10)
    frac = float(jnp.mean(step_lib.drop_labels(key, labels, 0.1, 10) == 10))
    assert abs(frac - 0.1) < 4 * np.sqrt(0.1 * 0.9 / 20000)


def test_conditional_step_passes_labels():
    fn, st = setup(num_classes=3, label_dropout=0.5)
    st2, m = jax.jit(fn)(st, batch())
    emb = st2.params["Embed_0"]["embedding"] - st.params["Embed_0"]["embedding"]
    assert jnp.all(jnp.abs(emb).sum(-1) > 0)  # classes 0..2 and the null label 3 all trained


def deterministic_loss(model_fn, key, x0, *, t=None, t_weights=None, **cond):
    per = jnp.mean(jnp.square(model_fn(x0, jnp.full(x0.shape[:1], 0.5)) - x0), axis=(1, 2, 3))
    return jnp.mean(per), {"loss": jnp.mean(per), "loss_per_example": per, "t": per * 0}


def test_gradient_accumulation_matches_the_full_batch():
    net = _standins.TinyNet(dropout=0.0)
    params = net.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), jnp.zeros(1))["params"]
    tx = optim.make_optimizer("adam", 1e-2, clip_norm=None)
    st = state_lib.create(params, tx, (), seed=0)
    out = []
    for k in (1, 4):
        fn = step_lib.make_train_step(net.apply, deterministic_loss, tx, PROCESS, grad_accum=k)
        new, m = jax.jit(fn)(st, batch(16))
        out.append((new.params, m))
    chex.assert_trees_all_close(out[0][0], out[1][0], atol=1e-6)
    np.testing.assert_allclose(out[0][1]["loss"], out[1][1]["loss"], rtol=1e-5)


def test_jitted_step_compiles_once_and_donates_the_state():
    fn, st = setup()
    mesh = state_lib.make_mesh()
    traced = chex.assert_max_traces(fn, n=1)
    jitted = step_lib.jit_train_step(traced, mesh)
    st = jax.device_put(st, state_lib.replicated(mesh))
    old_params = st.params
    for i in range(3):
        st, _ = jitted(st, state_lib.global_batch(jax.device_get(batch(seed=i)), mesh))
    assert jax.tree.leaves(old_params)[0].is_deleted()


def test_noise_levels_and_split_output():
    t = jnp.array([0.25, 1.0])
    np.testing.assert_allclose(step_lib.noise_level_fn("t1000")(PROCESS, t), [250.0, 1000.0])
    np.testing.assert_allclose(step_lib.noise_level_fn("log_snr")(PROCESS, t), PROCESS.log_snr(t))
    with pytest.raises(ValueError, match="valid names"):
        step_lib.noise_level_fn("sigma")
    apply = lambda v, x, level, train, rngs: jnp.concatenate([x, -x], -1)
    model_fn = step_lib.make_model_fn(apply, {}, PROCESS, split_output=True)
    pred, v = model_fn(jnp.ones((2, 3, 3, 1)), 0.5)
    assert pred.shape == v.shape == (2, 3, 3, 1) and float(v.sum()) == -18.0


def test_batch_must_split_over_devices():
    mesh = state_lib.make_mesh()
    state_lib.check_batch_size(8 * mesh.devices.size, mesh)
    if mesh.devices.size > 1:
        with pytest.raises(ValueError, match="not divisible"):
            state_lib.check_batch_size(mesh.devices.size + 1, mesh)
