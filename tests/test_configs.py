"""Every config in configs/: documented, its full network builds under jax.eval_shape (with
published parameter counts where they exist), its smoke variant trains one step."""

import glob
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdiff.training import components, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
# Training configs (distillation configs, with a teacher, are tested in test_distill.py;
# autoencoders, trained by their own loop, in test_autoencoder.py).
TRAINING = [n for n in NAMES if not {"teacher", "autoencoder"} & set(load(n).get_config())]
# Published sizes: Ho et al. 2020 (35.7M), Peebles & Xie 2023 Table 4 (DiT-XL/2: 675M).
PARAMS = {"cifar10_ddpm": 35.7e6, "imagenet_dit_xl2": 675e6}


pytestmark = pytest.mark.usefixtures("fast_compiles")


def test_all_issue_configs_exist():
    assert set(NAMES) >= {
        "quickstart",
        "mnist_ddpm",
        "mnist_cfg",
        "mnist_vp_sde",
        "mnist_ve_sde",
        "fashion_mnist_ddpm",
        "fashion_mnist_dit",
        "cifar10_ddpm",
        "imagenet_dit_xl2",
    }


@pytest.mark.parametrize("name", NAMES)
def test_docstring_gives_command_and_expectation(name):
    doc = load(name).__doc__
    assert f"configs/{name}.py" in doc or name == "quickstart"
    assert "python -m jaxdiff." in doc and "Expected" in doc


@pytest.mark.parametrize("name", TRAINING)
def test_full_network_builds_under_eval_shape(name):
    config = load(name).get_config()
    net = components.build_model(config)
    shapes = jax.eval_shape(lambda k: components.init_params(config, net, k), jax.random.key(0))
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    if name in PARAMS:
        assert abs(count - PARAMS[name]) < 0.01 * PARAMS[name], count
    x = jax.ShapeDtypeStruct(components.example_shape(config, 2), jnp.float32)
    cond = components.example_cond(config, 2)  # label; an SR model's low_res, aug_level
    out = jax.eval_shape(lambda p, x: net.apply({"params": p}, x, jnp.zeros(2), **cond), shapes, x)
    channels = config.data.channels * (2 if config.model.learn_sigma else 1)
    assert out.shape == x.shape[:-1] + (channels,)


@pytest.mark.parametrize("name", TRAINING)
def test_smoke_variant_trains_one_step_on_mock_data(name, tmp_path):
    config = load(name).get_config("smoke")
    if config.data.source == "latents":
        shape = components.example_shape(config, 8)
        path = str(tmp_path / "latents.npz")
        # a latent text / map model's conditioning too (its null prompt / map)
        extras = {k: np.asarray(v) for k, v in components.example_cond(config, 8).items()}
        extras.pop("label", None)
        latents = np.random.default_rng(0).normal(size=shape)
        np.savez(path, latents=latents, labels=np.arange(8), **extras)
        config.data.path = path
    if config.data.source == "spoken_digits":  # built with espeak-ng: stand-in arrays here
        from jaxdiff.data import spoken_digits

        config.data.data_dir = str(tmp_path)
        images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 1), np.uint8)
        labels = np.arange(16) % 10
        np.savez(spoken_digits.path(str(tmp_path), "train"), images=images, labels=labels)
    with tfds.testing.mock_data(num_examples=16):
        state = loop.train(config, str(tmp_path / "run"))
    assert int(state.step) == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("name", ["mnist_cfg", "imagenet_dit_xl2"])
def test_guided_sampler_of_a_conditional_config(name):
    config = load(name).get_config("smoke")
    net, process = components.build_model(config), components.build_process(config)
    params = components.init_params(config, net, jax.random.key(0))
    sample = jax.jit(components.make_sampler(config, net, process, guidance=2.0))
    labels = components.sample_labels(config, 4)
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    x = sample(params, jax.random.key(1), labels)
    assert x.shape == components.example_shape(config, 4) and jnp.all(jnp.isfinite(x))
    if config.data.source != "latents":
        assert jnp.all(jnp.abs(x) <= 1.0)


@pytest.mark.parametrize("name", ["mnist_release"])
def test_two_runs_of_a_release_config_give_identical_parameters(name, tmp_path):
    """The shipped models' recipe is reproducible on one machine: same config, same bits."""
    params = []
    for run in ("a", "b"):
        config = load(name).get_config("smoke")
        config.train.num_steps = 3
        with tfds.testing.mock_data(num_examples=32):
            state = loop.train(config, str(tmp_path / run))
        params.append(jax.tree.leaves(jax.device_get((state.params, state.ema))))
    assert len(params[0]) > 10
    for a, b in zip(*params, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


VARIANTS = [(n, v) for n in NAMES for v in (None, *getattr(load(n), "VARIANTS", ()))]


@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_video_variants_name_clips_of_their_frame_count(name, variant):
    """A video config's data.frames is the clip length of the data set it names (training
    refuses to start otherwise; moving_mnist:short once named 16-frame clips with frames=8)."""
    from jaxdiff.data import moving_mnist

    config = load(name).get_config(variant)
    if config.get("data", {}).get("source") != "moving_mnist":
        pytest.skip("not a video config")
    assert moving_mnist.SPECS[config.data.name].frames == config.data.frames
