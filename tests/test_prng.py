"""The PRNG implementation of a run (``config.prng_impl``): draws keep their distribution
under every implementation, resume stays bitwise exact, and a checkpoint records it."""

import jax
import numpy as np
import pytest
from scipy import stats

from jaxdiff.training import checkpoint as ckpt_lib
from jaxdiff.training import state as state_lib
from tests.test_train import RUN20, load_state, train_cli


def _draws_like_a_train_step(impl: str, steps: int = 200, batch: int = 500):
    """Noise and t drawn as train_step draws them: fold_in(root, step), then split."""
    root = jax.random.fold_in(jax.random.key(0, impl=impl), 1)

    def one(step):
        k_t, k_noise = jax.random.split(jax.random.fold_in(root, step))
        return jax.random.normal(k_noise, (batch,)), jax.random.uniform(k_t, (batch,))

    noise, t = jax.jit(jax.vmap(one))(np.arange(steps))
    return np.asarray(noise).ravel(), np.asarray(t).ravel()


@pytest.mark.parametrize("impl", state_lib.PRNG_IMPLS)
def test_noise_and_times_keep_their_distribution(impl):
    noise, t = _draws_like_a_train_step(impl)
    assert stats.kstest(noise, "norm").pvalue > 1e-4
    assert stats.kstest(t, "uniform").pvalue > 1e-4
    # Consecutive steps are independent: lag-1 correlation of per-step means ~ N(0, 1/199).
    means = noise.reshape(200, -1).mean(axis=1)
    assert abs(np.corrcoef(means[:-1], means[1:])[0, 1]) < 4 / np.sqrt(199)


def test_the_state_records_its_implementation_and_key_shape():
    for impl, key_words in (("threefry2x32", 2), ("rbg", 4), ("unsafe_rbg", 4)):
        st = state_lib.create({"w": np.zeros(2)}, _identity_tx(), (), 0, prng_impl=impl)
        assert st.key.shape == (key_words,) and st.prng_impl == impl
        assert str(jax.random.key_impl(st.root_key)) == impl


def test_an_unknown_implementation_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="valid: threefry2x32, rbg, unsafe_rbg"):
        state_lib.check_prng_impl("philox")


def test_a_checkpoint_of_another_implementation_is_refused():
    saved = {"prng_impl": "threefry2x32"}
    with pytest.raises(ValueError, match="prng_impl: 'threefry2x32' there vs 'rbg' here"):
        ckpt_lib.check_compatible(saved, {"prng_impl": "rbg"}, "/w")
    ckpt_lib.check_compatible({}, {"prng_impl": "threefry2x32"}, "/w")  # older checkpoints


@pytest.mark.slow  # 80 s; the default threefry2x32 resume runs in test_train's fast suite
def test_kill_9_then_resume_is_bitwise_exact_with_unsafe_rbg(tmp_path):
    from jaxdiff.training import loop

    args = [*RUN20, "--config.prng_impl=unsafe_rbg"]
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    train_cli(whole, *args)
    assert train_cli(cut, *args, env={loop.KILL_ENV: "12"}, check=False).returncode == -9
    train_cli(cut, *args)
    want, got = load_state(whole, 20), load_state(cut, 20)
    assert np.asarray(got["key"]).shape == (4,)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _identity_tx():
    import optax

    return optax.identity()
