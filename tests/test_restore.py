"""training.restore.load_run: a run's weights for sampling, without an optimizer."""

import jax
import numpy as np
import pytest

from jaxdiff import denoiser
from jaxdiff.training import components, loop, restore
from jaxdiff.training import step as step_lib
from tests import _standins
from tests.test_train import smoke_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    _standins.install(mp)
    path = str(tmp_path_factory.mktemp("run"))
    state = loop.train(smoke_config(), path)
    mp.undo()
    return path, jax.device_get(state)


def test_load_run_builds_no_optimizer_or_train_step(workdir, monkeypatch):
    path, state = workdir

    def refuse(*args, **kwargs):
        raise AssertionError("load_run must not build an optimizer or a train step")

    monkeypatch.setattr(components, "build_optimizer", refuse)
    monkeypatch.setattr(components, "make_train_step", refuse)
    run = restore.load_run(path)
    want = next(iter(state.ema.values())) if state.ema else state.params
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(run.params), strict=True):
        np.testing.assert_array_equal(a, b)
    raw = restore.load_run(path, params="raw")
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(raw.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert callable(run.model_fn())


def test_the_adapter_lives_in_denoiser_and_step_re_exports_it():
    assert step_lib.make_model_fn is denoiser.make_model_fn
    assert step_lib.NOISE_LEVELS is denoiser.NOISE_LEVELS
    assert step_lib.noise_level_fn is denoiser.noise_level_fn
