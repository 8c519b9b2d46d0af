"""Cascades: the progressive generator (low resolution first), truncated conditioning
augmentation, the checks of a cascade, and ``python -m jaxdiff.cascade`` end to end on
smoke-sized runs trained through ``python -m jaxdiff.train``."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff import cascade, cascade_cli, train
from jaxdiff.training import components, restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("fast_module_compiles")  # module fixtures compile too


def config(name, variant="smoke"):
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def model(name, variant="smoke", seed=0, init=True, **changes):
    """An untrained smoke-sized model (a restore.Run) of a config (no network and
    parameters with ``init=False``: enough for ``cascade.plan``)."""
    c = config(name, variant)
    for path, value in changes.items():
        section, field = path.split(".")
        c[section][field] = value
    process = components.build_process(c)
    if not init:
        return restore.Run(c, None, process, None, 0)
    net = components.build_model(c)
    params = jax.jit(lambda k: components.init_params(c, net, k))(jax.random.key(seed))
    return restore.Run(c, net, process, params, 0)


class Logged:
    """A model that notes in ``log`` when a stage starts (reads its parameters)."""

    log: list = []

    def __init__(self, run, name):
        self.config, self.net, self.process, self._run = run.config, run.net, run.process, run
        self.name = name

    @property
    def params(self):
        self.log.append(self.name)
        return self._run.params


# Shared by the tests: a cascade's compiled stages are cached per model object.
@pytest.fixture(scope="module")
def base():
    return Logged(model("fashion_mnist_base14"), "base")


@pytest.fixture(scope="module")
def sr():
    return Logged(model("fashion_mnist_sr28", seed=1), "sr")


def test_progressive_generation_yields_the_low_resolution_result_first(base, sr):
    log = Logged.log
    log.clear()
    stages = [cascade.Stage(base), cascade.Stage(sr)]
    gen = cascade.generate_progressive(jax.random.key(0), stages, 4, label=[0, 1, 2, 3])
    index, low = next(gen)
    assert (index, low.shape, log) == (0, (4, 14, 14, 1), ["base"])  # the SR stage not begun
    index, high = next(gen)
    assert (index, high.shape, log) == (1, (4, 28, 28, 1), ["base", "sr"])
    assert next(gen, None) is None
    assert float(jnp.abs(low).max()) <= 1.0 and float(jnp.abs(high).max()) <= 1.0
    final = cascade.cascade(jax.random.key(0), stages, 4, label=[0, 1, 2, 3])
    np.testing.assert_array_equal(final, high)
    log.clear()


def test_each_stage_has_its_own_key_and_settings(base, sr):
    """Another SR level leaves the base images alone (stage i draws from fold_in(key, i))."""
    S = cascade.Stage
    key = jax.random.key(3)
    runs = [
        list(cascade.generate_progressive(key, [S(base), S(sr, aug_level=s)], 4))
        for s in (0.0, 0.4)
    ]
    np.testing.assert_array_equal(runs[0][0][1], runs[1][0][1])
    steps = cascade.plan([cascade.Stage(base), cascade.Stage(sr, num_steps=3, aug_level=0.4)])
    assert steps == [cascade.Step(0.0, False, 0.0), cascade.Step(0.0, False, 0.4)]


def test_truncated_cascade_stops_the_base_at_the_sr_level(base, sr):
    stages = [cascade.Stage(base), cascade.Stage(sr, aug_level=0.1, truncated=True)]
    steps = cascade.plan(stages)
    level = 102 / 1024  # 0.1 moved to the nearest of the base schedule's 1,024 levels
    assert steps == [cascade.Step(level, False, 0.0), cascade.Step(0.0, True, level)]
    shapes = [x.shape for _, x in cascade.generate_progressive(jax.random.key(0), stages, 2)]
    assert shapes == [(2, 14, 14, 1), (2, 28, 28, 1)]


def test_an_unconditional_base_model(sr):
    changes = {"model.num_classes": 0, "loss.label_dropout": 0.0, "sample.guidance": 0.0}
    base = model("fashion_mnist_base14", **changes)
    out = cascade.cascade(jax.random.key(0), [cascade.Stage(base), cascade.Stage(sr)], 4)
    assert out.shape == (4, 28, 28, 1)
    with pytest.raises(
        ValueError, match="every stage of this cascade is unconditional; pass label=None"
    ):
        cascade.cascade(jax.random.key(0), [cascade.Stage(base)], 4, label=3)


def test_super_resolution_of_given_low_resolution_images(sr):
    low = jnp.zeros((3, 14, 14, 1))
    out = list(cascade.generate_progressive(jax.random.key(0), [cascade.Stage(sr)], low=low))
    assert [(i, x.shape) for i, x in out] == [(0, (3, 28, 28, 1))]
    with pytest.raises(ValueError, match="num=2 but low holds 3 images"):
        cascade.cascade(jax.random.key(0), [cascade.Stage(sr)], 2, low=low)


def test_a_cascade_that_does_not_chain_is_refused(base, sr):
    sr56 = model("fashion_mnist_sr28", init=False, **{"data.image_size": 56})
    linear = model("fashion_mnist_sr28", init=False, **{"process.name": "linear"})
    S = cascade.Stage
    bad = [
        ([S(sr)], "stage 0 is an SR model: give low= images or a base stage"),
        ([S(base), S(base)], "a base model \\(no sr section\\) at stage 1"),
        ([S(base), S(sr56)], r"stage 1 takes \(28, 28, 1\) low-resolution .* \(14, 14, 1\)"),
        ([S(base), S(sr, aug_level=0.9)], r"aug_level=0.9: must be in \[0, aug_max\] = \[0, 0.5\]"),
        ([S(base), S(linear, truncated=True)], "truncation needs the same process"),
        ([S(base, truncated=True)], "truncated applies to SR stages"),
        ([], "non-empty list of cascade.Stage"),
    ]
    for stages, message in bad:
        with pytest.raises(ValueError, match=message):
            cascade.plan(stages)
    with pytest.raises(ValueError, match="truncated: it needs a previous model, not low= images"):
        cascade.plan([S(sr, truncated=True)], (1, 14, 14, 1))


# --- The command, on runs trained by the training command -----------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade_runs")
    with tfds.testing.mock_data(num_examples=16):
        for name in ("fashion_mnist_base14", "fashion_mnist_sr28"):
            train.main([f"--config=configs/{name}.py:smoke", f"--workdir={root / name}"])
    return root


@pytest.mark.slow  # CI time: two CLI trainings; test_configs smoke-trains both configs
def test_train_and_cascade_commands_end_to_end(runs, tmp_path, capsys):
    base, sr = runs / "fashion_mnist_base14", runs / "fashion_mnist_sr28"
    out = tmp_path / "cascade.npz"
    args = ["--num_samples=4", "--batch_size=2", "--aug_level=0.2", "--save_stages"]
    cascade_cli.main([f"--base={base}", f"--sr={sr}", f"--out={out}", *args])
    printed = capsys.readouterr().out
    assert "time to each stage (mean of 1 warm batches): stage 0 (14x14) after" in printed
    low = np.load(tmp_path / "cascade_stage0.npz")
    assert low["images"].shape == (4, 14, 14, 1) and low["labels"].tolist() == [0, 1, 2, 3]
    assert np.load(out)["images"].shape == (4, 28, 28, 1)
    # The base stage's images, upscaled again: its labels come along; a 2 x 2 grid, 4x
    # upscaled with 1-pixel borders: 4 (2 (28 + 1) + 1) pixels wide.
    grid = tmp_path / "again.png"
    cascade_cli.main([f"--sr={sr}", f"--input={tmp_path / 'cascade_stage0.npz'}", f"--out={grid}"])
    assert Image.open(grid).size == (236, 236)
    png, high = tmp_path / "low.png", tmp_path / "high.npz"
    Image.fromarray(np.full((14, 14), 128, np.uint8)).save(png)
    cascade_cli.main([f"--sr={sr}", f"--input={png}", f"--out={high}"])
    assert np.load(high)["images"].shape == (1, 28, 28, 1) and np.load(high)["labels"].size == 0


def _fails(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cascade_cli.main(args)
    return exit_info.value.code, capsys.readouterr().err.strip()


def test_cascade_command_errors_are_one_line(runs, tmp_path, capsys):
    sr = f"--sr={runs / 'fashion_mnist_sr28'}"
    out = f"--out={tmp_path / 'x.png'}"
    wrong = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(wrong)
    code, err = _fails([sr, f"--input={wrong}", out], capsys)
    assert code == 1 and err.endswith(
        "20x20 images; the SR model " + str(runs / "fashion_mnist_sr28") + " takes 14x14 "
        "low-resolution images (resize them first)."
    )
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((14, 14, 3), np.uint8)).save(rgb)
    code, err = _fails([sr, f"--input={rgb}", out], capsys)
    assert code == 1 and "3 channel(s); the SR model" in err and "takes 1 (grayscale)" in err
    code, err = _fails([sr, out], capsys)
    assert code == 2 and err == (
        "error: give --base (to generate) or --input with --sr (to upscale your own images)."
    )
    base = f"--base={runs / 'fashion_mnist_base14'}"
    levels = ["--aug_level=0.1", "--aug_level=0.2", "--aug_level=0"]
    code, err = _fails([base, sr, sr, *levels, out], capsys)
    assert code == 2 and "--aug_level: give it once (all SR stages) or 2 times" in err
    code, err = _fails([base, sr, "--aug_level=0.9", out], capsys)
    assert code == 1 and "aug_level=0.9: must be in [0, aug_max] = [0, 0.5]" in err
    code, err = _fails([f"--base={runs / 'fashion_mnist_sr28'}", sr, out], capsys)
    assert code == 1 and "a base model" not in err and "stage 0 is an SR model" in err
