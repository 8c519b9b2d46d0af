"""Shipped models (``jaxdiff.pretrained``): exact loading, sampling, clear errors, and a
weights reader that needs no JAX."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import pretrained
from jaxdiff.training import components, restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = pretrained.available()


def smoke_config():
    """The smoke variant of configs/mnist_release.py (what the ``tiny`` model is made of)."""
    spec = importlib.util.spec_from_file_location(
        "cfg", os.path.join(REPO, "configs/mnist_release.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("smoke")


def _smoke_run():
    config = smoke_config()
    net, process = components.build_model(config), components.build_process(config)
    params = components.init_params(config, net, jax.random.key(0))
    return restore.Run(config, net, process, params, 7)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A smoke-sized conditional model saved as a shipped one in a temporary folder."""
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path))
    pretrained.load.cache_clear()
    run = _smoke_run()
    pretrained.save("tiny", run, dtype="float16", notes={"why": "test"})
    yield run
    pretrained.load.cache_clear()


def test_save_then_load_round_trips_at_the_stored_precision(tiny):
    model = pretrained.load("tiny")
    want = pretrained.flatten(tiny.params)
    got = pretrained.flatten(model.params)
    assert sorted(want) == sorted(got) and all("/" in k for k in got)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k].astype(np.float16).astype(np.float32))
    assert model.record["step"] == 7 and model.record["prng_impl"] == "threefry2x32"
    assert model.num_classes == 10 and model.image_shape == (28, 28, 1)


def test_sampling_gives_images_in_range_and_respects_labels(tiny):
    model = pretrained.load("tiny")
    images = model.sample(jax.random.key(0), 4, label=3, num_steps=2)
    assert images.shape == (4, 28, 28, 1) and bool(jnp.all(jnp.abs(images) <= 1))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.sample(jax.random.key(0), 4, label=12, num_steps=2)


def test_sampling_with_other_parameters_uses_them(tiny):
    model = pretrained.load("tiny")
    key = jax.random.key(1)
    shipped = model.sample(key, 2, num_steps=2)
    np.testing.assert_array_equal(model.sample(key, 2, num_steps=2, params=model.params), shipped)
    shifted = jax.tree.map(lambda p: p + 0.1, model.params)  # (its output layer starts at 0)
    assert not np.allclose(model.sample(key, 2, num_steps=2, params=shifted), shipped)


def test_another_method_does_not_inherit_the_shipped_options(tiny):
    model = pretrained.load("tiny")
    assert model.record["sampler"]["options"] == {"spacing": "trailing"}  # a ddim option
    images = model.sample(jax.random.key(0), 2, method="dpm_solver++", num_steps=2)
    assert images.shape == (2, 28, 28, 1)


def test_the_default_sampler_is_the_configs_unless_overridden():
    config = smoke_config()
    ddim = {"method": "ddim", "num_steps": 2, "guidance": 1.0, "options": {"spacing": "trailing"}}
    assert pretrained.default_sampler(config) == ddim
    assert pretrained.default_sampler(config, guidance=0.25) == {**ddim, "guidance": 0.25}
    got = pretrained.default_sampler(config, "dpm_solver++", 20, 0.25)
    assert got == {"method": "dpm_solver++", "num_steps": 20, "guidance": 0.25, "options": {}}
    with pytest.raises(ValueError, match="give --num_steps too"):
        pretrained.default_sampler(config, "dpm_solver++")


def test_the_loaded_config_samples_with_the_shipped_sampler(tiny, tmp_path):
    run = _smoke_run()
    run.config.data.data_dir = "/somewhere/only/the/trainer/has"
    sampler = pretrained.default_sampler(run.config, "dpm_solver++", 3, 0.5)
    pretrained.save("other", run, sampler=sampler)
    model = pretrained.load("other")
    got = model.config.sample
    assert (got.method, got.num_steps, got.guidance) == ("dpm_solver++", 3, 0.5)
    assert got.options.to_dict() == {} and model.record["config"]["data"]["data_dir"] == ""
    assert components.sampler_settings(model.as_run().config) == sampler


def test_sampler_overrides_keep_options_only_for_the_default_method():
    from jaxdiff import _settings

    default = {
        "method": "ddim",
        "num_steps": 50,
        "guidance": 1.0,
        "options": {"spacing": "leading"},
    }
    assert _settings.resolve_sampler(default) == default
    assert _settings.resolve_sampler(default, "ddim", 10, 0.0) == {
        **default,
        "num_steps": 10,
        "guidance": 0.0,
    }
    other = _settings.resolve_sampler(default, "dpm_solver++")
    assert other == {"method": "dpm_solver++", "num_steps": 50, "guidance": 1.0, "options": {}}
    assert default["options"] == {"spacing": "leading"}


def test_as_run_copies_the_config(tiny):
    model = pretrained.load("tiny")
    run = model.as_run()
    run.config.sample.num_steps = 99
    assert model.config.sample.num_steps != 99 and run.step == 7 and run.params is model.params


def test_a_tampered_file_is_refused(tiny, tmp_path):
    from safetensors.numpy import load_file, save_file

    path = str(tmp_path / "tiny.safetensors")
    flat = load_file(path)
    first = sorted(flat)[0]
    flat[first] = flat[first] + np.float16(1)
    save_file(flat, path)
    with pytest.raises(ValueError, match="does not match its record"):
        pretrained.load("tiny")


def test_a_wrong_name_lists_the_valid_ones(tiny):
    with pytest.raises(
        ValueError, match=r"unknown pretrained model 'mnits'; available: \['tiny'\]"
    ):
        pretrained.load("mnits")


def test_weights_are_readable_without_jax(tiny, tmp_path):
    code = (
        "import sys; sys.modules['jax'] = None\n"  # any `import jax` now fails
        "from jaxdiff import pretrained\n"
        f"pretrained.WEIGHTS_DIR = {str(tmp_path)!r}\n"
        "flat, record = pretrained.read_weights('tiny')\n"
        "print(len(flat), record['stored_dtype'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[1] == "float16"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_exactly_and_samples(name):
    with open(os.path.join(pretrained.WEIGHTS_DIR, name + ".json"), encoding="utf-8") as f:
        record = json.load(f)
    model = pretrained.load(name)
    stored = {
        k: v.astype(record["stored_dtype"]) for k, v in pretrained.flatten(model.params).items()
    }
    assert pretrained.params_sha256(stored) == record["params_sha256"]
    assert os.path.getsize(os.path.join(pretrained.WEIGHTS_DIR, name + ".safetensors")) < 20e6
    student = record["config"].get("distill")  # valid only on its own grid: its default
    images = model.sample(jax.random.key(0), 16, num_steps=None if student else 10)
    assert images.shape == (16, *model.image_shape) and bool(jnp.all(jnp.isfinite(images)))


@pytest.mark.parametrize("name", pretrained.available(None))
def test_every_shipped_file_matches_its_record_and_says_how_it_was_made(name):
    _, record = pretrained.read_weights(name)  # refuses a SHA-256 mismatch
    assert record["name"] == name and pretrained.model_kind(name) in pretrained.KINDS
    assert {"command", "cpu", "versions"} <= set(record["notes"])
    assert os.path.getsize(os.path.join(pretrained.WEIGHTS_DIR, name + ".safetensors")) < 20e6


def test_kinds_are_checked():
    with pytest.raises(ValueError, match=r"kind='image': must be one of \('pixel'"):
        pretrained.available("image")


def test_a_shipped_model_has_no_earlier_steps():
    with pytest.raises(ValueError, match="only its EMA weights ship, of its last step"):
        pretrained.load_run("mnist", step=1_000)


def test_the_kind_follows_the_config():
    assert pretrained.config_kind({"autoencoder": {}, "latent": {}}) == "autoencoder"
    assert pretrained.config_kind({"latent": {}, "model": {}}) == "latent"
    assert pretrained.config_kind({"model": {}}) == "pixel"
