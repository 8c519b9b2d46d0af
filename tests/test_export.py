"""ONNX export (``jaxdiff.export``): graphs equal to JAX, a NumPy + ONNX Runtime sampler equal
to jaxdiff's samplers, no JAX at inference, clear errors for bad files."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import denoiser, latent, pretrained, schedules
from jaxdiff.autoencoder import run as autoencoder_run
from jaxdiff.autoencoder.model import Autoencoder
from jaxdiff.export import onnx_export, ort_sampler
from jaxdiff.samplers import grids
from jaxdiff.text import prompts
from jaxdiff.training import components, restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_onnx = pytest.mark.skipif(
    importlib.util.find_spec("jax2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason='needs jax2onnx and onnxruntime: pip install -e ".[export]" && '
    'pip install --no-deps "jax2onnx>=0.17"',
)


def smoke_run(config_name: str, seed: int = 0, edit=None) -> restore.Run:
    """A smoke-sized network of a config, parameters randomised (the output layer starts at
    zero, which would make every comparison trivial); ``edit(config)`` changes it first."""
    spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", config_name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    if edit is not None:
        edit(config)
    net, process = components.build_model(config), components.build_process(config)
    params = components.init_params(config, net, jax.random.key(seed))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return restore.Run(config, net, process, jax.tree.unflatten(tree, noisy), 0)


@pytest.fixture(scope="module")
def unet_file(tmp_path_factory):
    """A conditional v-prediction U-Net (mnist_release:smoke) exported to ONNX."""
    if importlib.util.find_spec("jax2onnx") is None:
        pytest.skip("needs jax2onnx")
    run = smoke_run("mnist_release.py")
    path = str(tmp_path_factory.mktemp("onnx") / "unet.onnx")
    return run, onnx_export.export_model(run, path, source={"test": "unet"})


@needs_onnx
@pytest.mark.parametrize("config_name", ["mnist_release.py", "fashion_mnist_dit.py"])
def test_the_graph_equals_jax_at_any_batch_size(config_name, tmp_path):
    run = smoke_run(config_name)
    path = onnx_export.export_model(run, str(tmp_path / "model.onnx"))
    for batch in (1, 5):
        assert onnx_export.relative_error(run, path, batch=batch, seed=batch) <= 1e-4


@needs_onnx
@pytest.mark.parametrize(
    "method, num_steps, guidance", [("ddim", 6, 0.0), ("ddim", 4, 2.0), ("dpm_solver++", 5, 1.5)]
)
def test_the_onnx_sampler_gives_jaxdiffs_images(unet_file, method, num_steps, guidance):
    run, path = unet_file
    x_init = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
    labels = np.array([0, 4, 9], np.int32)
    sample = components.make_sampler(
        run.config,
        run.net,
        run.process,
        method=method,
        num_steps=num_steps,
        guidance=guidance,
        x_init=jnp.asarray(x_init),
    )
    want = np.asarray(jax.jit(sample)(run.params, jax.random.key(0), jnp.asarray(labels)))
    got = ort_sampler.OnnxDenoiser(path).sample(
        x_init=x_init, label=labels, method=method, num_steps=num_steps, guidance=guidance
    )
    assert got.shape == want.shape and np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-4)


def prompt_and_map_run():
    """A latent U-Net conditioned on a prompt and a semantic map (mnist_text2img:smoke with
    a mask map added) and a small autoencoder, both randomly initialised."""
    add_map = lambda c: c.latent.update(semantic_map="mask", map_features=4)  # noqa: E731
    run = smoke_run("mnist_text2img.py", edit=add_map)
    net = Autoencoder(ch=8, ch_mult=(1, 2, 2), latent_channels=4, num_groups=4)
    params = net.init(jax.random.key(2), jnp.zeros((1, 28, 28, 1)))["params"]
    return run, autoencoder_run.Loaded(None, net, params, scale_factor=1.7, step=0)


def check_prompt_and_map_graph(run, path: str) -> None:
    meta = ort_sampler.OnnxDenoiser(path).meta
    assert meta["inputs"] == ["x", "t", "tokens", "semantic_map"]
    max_len = latent.settings(run.config).max_len
    assert meta["conditions"]["tokens"]["null"] == prompts.null_tokens(max_len).tolist()
    assert not meta["clip_output"] and meta["autoencoder"] == "runs/mnist_autoencoder"
    assert onnx_export.relative_error(run, path, batch=3) <= 1e-4  # (any batch: tested above)


def check_prompt_and_map_sampler(run, ae, path: str) -> None:
    s, rng = latent.settings(run.config), np.random.default_rng(0)
    x_init = rng.standard_normal((2, 7, 7, 4)).astype(np.float32)
    texts = ["a thin seven", "a bold two on the left"]
    maps = rng.integers(0, 2, (2, 28, 28, 1)).astype(np.float32)
    cond = {"tokens": jnp.asarray(prompts.encode_prompts(texts, s.max_len)), "semantic_map": maps}
    model_fn = denoiser.make_model_fn(
        run.net.apply, run.params, run.process, run.config.loss.noise_level
    )
    options = components.sampler_settings(run.config, "ddim", 4, 2.0)["options"]
    want = latent.sample(
        jax.random.key(0), model_fn, run.process, x_init.shape, cond=cond,
        null=latent.null_cond(s), w=2.0, decode=None, method="ddim", num_steps=4,
        kind=run.config.sample.kind, x_init=jnp.asarray(x_init), **options,
    )  # fmt: skip
    onnx_model = ort_sampler.OnnxDenoiser(path)
    settings = dict(prompt=texts, semantic_map=maps, method="ddim", num_steps=4, guidance=2.0)
    got = onnx_model.sample(x_init=x_init, decode=False, **settings)
    assert np.abs(np.asarray(want)).max() > 0.1
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-4)
    images = onnx_model.sample(x_init=x_init, **settings)  # through the exported decoder
    want_images = np.clip(np.asarray(ae.decode(want)), -1, 1)
    assert images.shape == (2, 28, 28, 1) and np.abs(want_images).max() > 0.01
    np.testing.assert_allclose(images, want_images, atol=1e-4)
    with pytest.raises(ValueError, match="unconditional; pass label=None"):
        onnx_model.sample(2, label=3)
    with pytest.raises(ValueError, match="semantic_map must have shape"):
        onnx_model.sample(2, prompt="a seven", semantic_map=np.zeros((14, 14, 1)))


def assert_samples_without_jax(call: str, shape: tuple) -> None:
    """Runs ``x = <call>`` (OnnxDenoiser imported) in a process that cannot import JAX."""
    script = (
        "import sys\n"
        "class NoJax:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'jax' or name.startswith(('jax.', 'jaxlib', 'flax')):\n"
        "            raise ImportError('jax is blocked in this test')\n"
        "sys.meta_path.insert(0, NoJax())\n"
        "from jaxdiff.export.ort_sampler import OnnxDenoiser\n"
        f"x = {call}\n"
        f"assert 'jax' not in sys.modules and x.shape == {shape!r}\n"
        "print('ok', float(abs(x).max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-2000:]


@needs_onnx
def test_a_prompt_and_map_model_exports_and_samples_as_jaxdiff(tmp_path):
    # one test, so that the exports are made once (tests of a module spread over workers)
    run, ae = prompt_and_map_run()
    path = onnx_export.export_model(run, str(tmp_path / "text_map.onnx"), decoder=ae)
    check_prompt_and_map_graph(run, path)
    check_prompt_and_map_sampler(run, ae, path)
    # prompt tokens and the exported decoder need no JAX either
    assert_samples_without_jax(f"OnnxDenoiser({path!r}).sample(2, prompt='a 7')", (2, 28, 28, 1))


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_the_numpy_grids_visit_jaxdiffs_levels(schedule):
    process = schedules.DiscreteSchedule.from_name(schedule, num_steps=1024)
    table = np.asarray(onnx_export.schedule_tables(process)["log_alpha_bar"], np.float64)
    start, end = float(process.round_to_level(1.0)), float(process.round_to_level(1e-3))
    for n in [1, 2, 3, 5, 8, 13, 20, 32, 50, 64, 100, 250]:
        want = grids.build("log_snr", process, n, start, end).times * 1024
        np.testing.assert_array_equal(ort_sampler.log_snr_levels(table, n), np.round(want))


@needs_onnx
def test_sampling_runs_where_jax_cannot_be_imported(unet_file):
    _, path = unet_file
    call = f"OnnxDenoiser({path!r}).sample(2, label=3, method='ddim', num_steps=3)"
    assert_samples_without_jax(call, (2, 28, 28, 1))


@needs_onnx
def test_bad_files_get_clear_errors(unet_file, tmp_path):
    import onnx

    _, path = unet_file
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(open(path, "rb").read()[:5000])
    with pytest.raises(ValueError, match="is not a readable ONNX model"):
        ort_sampler.OnnxDenoiser(str(corrupt))
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        ort_sampler.OnnxDenoiser(str(tmp_path / "missing.onnx"))
    proto = onnx.load(path)
    meta = json.loads(proto.metadata_props[0].value)
    proto.metadata_props[0].value = json.dumps({**meta, "image_shape": [32, 32, 3]})
    onnx.save(proto, str(tmp_path / "mismatched.onnx"))
    with pytest.raises(ValueError, match=r"takes images of shape \[28, 28, 1\]"):
        ort_sampler.OnnxDenoiser(str(tmp_path / "mismatched.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="no jaxdiff metadata"):
        ort_sampler.OnnxDenoiser(str(tmp_path / "foreign.onnx"))


@needs_onnx
def test_bad_sampler_arguments_are_refused(unet_file):
    model = ort_sampler.OnnxDenoiser(unet_file[1])
    with pytest.raises(ValueError, match="Unknown method 'heun'"):
        model.sample(2, method="heun")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.sample(2, label=10, num_steps=2)
    with pytest.raises(ValueError, match="x_init must have shape"):
        model.sample(x_init=np.zeros((2, 8, 8, 1)), num_steps=2)


def test_a_students_metadata_records_its_grid():
    config = smoke_run("mnist_release.py").config
    assert onnx_export.student_record(config) is None
    config.distill = dict(method="progressive", student_steps=2, guidance=0.25, levels=[64, 32, 0])
    config.distill.teacher = "mnist"  # not needed by the sampler: left out
    assert onnx_export.student_record(config) == {
        "method": "progressive",
        "student_steps": 2,
        "guidance": 0.25,
        "levels": [64, 32, 0],
    }


@needs_onnx
def test_the_onnx_sampler_refuses_settings_a_student_is_not_valid_for(unet_file):
    model = ort_sampler.OnnxDenoiser(unet_file[1])
    levels = [int(k) for k in model.levels("ddim", 2)]
    model.meta["distill"] = dict(
        method="progressive", student_steps=2, guidance=0.25, levels=levels
    )
    for bad in [dict(method="dpm_solver++"), dict(num_steps=4), dict(guidance=1.0)]:
        with pytest.raises(ValueError, match="valid only on its own grid"):
            model.sample(2, label=1, **{"method": "ddim", "num_steps": 2, "guidance": 0.0, **bad})
    with pytest.raises(ValueError, match="valid only on its own grid"):
        model.sample(2, label=1, method="ddim", num_steps=2, guidance=0.0, spacing="leading")
    x = model.sample(2, label=1, method="ddim", num_steps=2, guidance=0.0)
    assert x.shape == (2, 28, 28, 1) and np.all(np.isfinite(x))
    model.meta["distill"] = dict(method="consistency_training")
    with pytest.raises(ValueError, match="consistency model"):
        model.sample(2, label=1, method="ddim", num_steps=2, guidance=0.0)


@needs_onnx
@pytest.mark.parametrize("name", pretrained.available())
def test_each_shipped_model_exports_exactly(name, tmp_path):
    from jaxdiff.export.__main__ import main

    out = str(tmp_path / f"{name}.onnx")
    main([f"--pretrained={name}", f"--out={out}"])  # raises above the 1e-4 tolerance
    meta = ort_sampler.OnnxDenoiser(out).meta
    assert meta["source"]["params_sha256"] == pretrained.load(name).record["params_sha256"]
    assert meta["sampler"] == pretrained.load(name).record["sampler"]


@needs_onnx
def test_int8_quantises_the_weight_layers_and_keeps_the_samples(unet_file, tmp_path):
    import onnx

    from jaxdiff.export import quantize

    _, path = unet_file
    out = quantize.quantize_int8(path, str(tmp_path / "int8.onnx"), num_samples=4)
    graph = onnx.load(out).graph
    quantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    weight_layers = [n for n in graph.node if n.op_type in quantize.OP_TYPES]
    assert weight_layers and all(n.input[1] in quantized for n in weight_layers)
    meta = ort_sampler.OnnxDenoiser(out).meta
    assert meta["quantized"]["dtype"] == "int8" and meta["kind"] == "v"
    mean, worst = quantize.sample_difference(path, out, num=4)
    assert 0 < mean < 0.05, (mean, worst)


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("name", pretrained.available())
def test_int8_of_each_shipped_model_is_at_least_3_5x_smaller(name, tmp_path):
    from jaxdiff.export.__main__ import main

    fp32 = str(tmp_path / f"{name}.onnx")
    main([f"--pretrained={name}", f"--out={fp32}", "--quantize=int8", "--calibration_samples=8"])
    int8 = fp32.replace(".onnx", "_int8.onnx")
    assert os.path.getsize(fp32) / os.path.getsize(int8) >= 3.5
