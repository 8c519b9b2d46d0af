"""Tests of training.checkpoint: round trips, preservation policy, config checks, SIGTERM."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.data import pipeline, sources
from jaxdiff.training import checkpoint
from jaxdiff.training import state as state_lib


def make_state(seed=0):
    params = {"w": jax.random.normal(jax.random.key(seed), (3, 2)), "b": jnp.zeros(2)}
    tx = optax.adam(1e-3)
    st = state_lib.create(params, tx, (0.9, 0.99), seed=seed)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, opt_state = tx.update(grads, st.opt_state, params)
    return st.replace(
        params=optax.apply_updates(params, updates), opt_state=opt_state, step=st.step + 1
    )


def iterator():
    ds = pipeline.make_dataset(sources.digits("train"), 16, seed=0, num_threads=0)
    return iter(ds)


def test_round_trip_restores_typed_state_and_data_position(tmp_path):
    st, it = make_state(), iterator()
    next(it), next(it)
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep_last=2)
    ckpt.save(1, st, it, meta={"config": {"seed": 0}})
    ckpt.wait()
    expected = next(it)["image"]
    abstract = state_lib.abstract(make_state(1), state_lib.replicated(state_lib.make_mesh()))
    fresh = iterator()
    restored, meta = ckpt.restore(1, abstract, fresh)
    ckpt.close()
    assert meta == {"config": {"seed": 0}}
    assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
    for a, b in zip(jax.tree.leaves(st), jax.tree.leaves(restored), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    np.testing.assert_array_equal(next(fresh)["image"], expected)


def test_keeps_the_last_n_and_every_kth(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep_last=2, keep_every=4, async_save=False)
    st = make_state()
    for step in range(1, 11):
        ckpt.save(step, st.replace(step=jnp.int32(step)))
    ckpt.wait()
    assert ckpt.all_steps() == [4, 8, 9, 10]
    assert ckpt.latest_step() == 10
    ckpt.close()


def test_a_foreign_config_is_refused_in_one_line():
    saved = {"model": {"name": "unet_8x8"}, "loss": {"name": "eps"}, "optim": {"lr": 1e-3}}
    same = {"model": {"name": "unet_8x8"}, "loss": {"name": "eps"}, "optim": {"lr": 5e-4}}
    checkpoint.check_compatible(saved, same, "/w")  # a new learning rate is fine
    other = {"model": {"name": "unet_28x28"}, "loss": {"name": "eps"}, "optim": {"lr": 1e-3}}
    with pytest.raises(ValueError, match="different config \\(model:") as e:
        checkpoint.check_compatible(saved, other, "/w")
    assert "\n" not in str(e.value)


def test_sigterm_sets_the_flag():
    old = signal.getsignal(signal.SIGTERM)
    try:
        event = checkpoint.install_sigterm_handler()
        assert not event.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert event.wait(5.0)
    finally:
        signal.signal(signal.SIGTERM, old)
