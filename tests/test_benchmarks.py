"""The benchmark scripts run at their smallest size, and their checks can fail.

Beyond "runs": XLA's FLOP count of a matmul is 2mnk, the Frechet distance matches its closed
form for Gaussians, jaxdiff's DDIM equals diffusers' DDIM loop on the same imported network,
the Python-loop DDIM equals the scan one, and quality_vs_nfe resumes instead of redoing work.
"""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from benchmarks import (  # noqa: E402
    cpu_profile,
    fid_features,
    measure,
    onnx_throughput,
    practices,
    quality_vs_nfe,
    sampling_throughput,
    train_throughput,
    twins,
)


def test_xla_cost_counts_matmul_flops():
    a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
    compiled = jax.jit(jnp.matmul).lower(a, b).compile()
    assert measure.xla_cost(compiled)["flops"] == 2 * 64 * 32 * 16


def test_alternate_times_each_runner():
    calls = []
    times = measure.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert calls == ["a", "b"] * 3
    assert set(times) == {"a", "b"} and len(times["a"]["all_s"]) == 3


def test_cpu_peak_is_labelled_an_estimate():
    peak, note = measure.peak_flops()
    if jax.default_backend() == "cpu":
        assert peak > 0 and note.startswith("ESTIMATE")
    assert measure.device_info()["device"]


def test_frechet_distance_closed_form():
    # Diagonal Gaussians: FD = |mu1 - mu2|^2 + sum (s1 - s2)^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    fd = fid_features.frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert fd == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2), rel=1e-10)
    # A full covariance against itself: zero.
    a = np.random.default_rng(0).normal(size=(5, 5))
    assert abs(fid_features.frechet_distance(mu1[:1], a @ a.T, mu1[:1], a @ a.T)) < 1e-9


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: .*mnist_small"):
        twins.unet_pair("nope")
    with pytest.raises(ValueError, match="valid presets"):
        train_throughput.run(train_throughput.parser().parse_args(["--preset=nope"]))
    with pytest.raises(ValueError, match="valid: .*classifier"):
        fid_features.build("nope", None, None, None)


def test_twin_parameter_counts_and_outputs_match():
    import torch

    model, net, variables, shape = twins.unet_pair("tiny")
    model.eval()  # dropout off, as jaxdiff's train=False
    assert twins.count_jax(variables) == twins.count_torch(model) > 0
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    t = np.array([10.0, 900.0], np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t)).sample
    out = net.apply(variables, jnp.asarray(x), jnp.asarray(t))
    np.testing.assert_allclose(out, ref.numpy().transpose(0, 2, 3, 1), atol=1e-4)


def test_train_throughput_smallest(tmp_path):
    out = tmp_path / "train.json"
    args = ["--preset=tiny", "--batch", "2", "--repeats=1", "--steps_per_rep=1", "--warmup=1"]
    result = train_throughput.run(train_throughput.parser().parse_args([*args, f"--out={out}"]))
    row = result["rows"][0]
    assert result["params"]["jaxdiff"] == result["params"]["diffusers"]
    for side in ("jaxdiff", "diffusers"):
        assert row[side]["images_per_s"] > 0 and row[side]["flops_per_step"] > 0
    # XLA counts every op, torch's counter only matmuls/convs: XLA's is at least torch's.
    assert row["jaxdiff"]["flops_per_step"] >= 0.9 * row["diffusers"]["flops_per_step"]
    assert json.loads(out.read_text())["device"]["device"]


def test_sampling_throughput_ddim_matches_diffusers():
    args = ["--preset=tiny", "--batch=2", "--steps=5", "--heun_steps=2", "--repeats=1"]
    result = sampling_throughput.bench(sampling_throughput.parser().parse_args(args))
    # A random network makes DDIM's x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) amplify float32
    # rounding by up to 1 / sqrt(abar_T) ~ 160: the agreement is ~1.5e-4 relative, while an
    # off-by-one timestep (noise input t N instead of t N - 1) gives ~7e-3.
    assert result["ddim_max_rel_diff"] < 1e-3
    assert result["rows"]["jaxdiff_heun_3nfe"]["nfe"] == 3
    assert result["rows"]["jaxdiff_ddim_5"]["nfe"] == 5


@pytest.mark.skipif(
    importlib.util.find_spec("jax2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs jax2onnx and onnxruntime (docs/export.md)",
)
def test_onnx_throughput_twin_sides_agree(tmp_path):
    # All four sides on one network draw the same images: jaxdiff, diffusers and ONNX
    # Runtime fp32 agree to float rounding (~1e-7 mean); an off-by-one noise level on the
    # ONNX side (1000 t instead of diffusers' index 1000 t - 1) gives ~4e-3.
    out = tmp_path / "onnx.json"
    args = ["--model=", "--twin=tiny", "--batch=2", "--num_steps=5", "--repeats=1"]
    onnx_throughput.main([*args, f"--out={out}"])
    row = json.loads(out.read_text())["twin"]["rows"][0]
    assert row["diffusers"]["mean_abs_diff_vs_jaxdiff"] < 1e-5
    assert row["onnx_fp32"]["mean_abs_diff_vs_jaxdiff"] < 1e-5
    assert 0 < row["onnx_int8"]["mean_abs_diff_vs_jaxdiff"] < 0.5
    assert row["onnx_int8"]["images_per_s"] > 0


def test_python_loop_ddim_equals_scan_ddim():
    _, net, variables, shape = twins.unet_pair("tiny")
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, *shape)))
    apply = sampling_throughput.make_eps_fn(net)
    scan = sampling_throughput.jax_sampler(
        apply, variables["params"], x.shape, "ddim", 4, spacing="leading"
    )(x)[0]
    loop = practices.python_loop_ddim(apply, variables["params"], x, 4)
    assert np.max(np.abs(scan - loop)) / np.max(np.abs(scan)) < 1e-3  # see the test above


@pytest.mark.slow
def test_practices_compile_cache_in_fresh_processes():
    args = practices.parser().parse_args(["--preset=tiny", "--batch=2"])
    rows = practices.ab_compile_cache(args)
    assert rows["cache_files"] > 0
    assert rows["warm_cache"]["compile_s"] < rows["no_cache"]["compile_s"]


@pytest.mark.slow  # ~90 s on 2 shared cores (trains, samples and trains a classifier, twice)
def test_quality_vs_nfe_smoke_and_resume(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    fake = lambda split, data_dir, limit=None: (  # noqa: E731
        rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
        rng.integers(0, 10, 40).astype(np.int32),
    )
    monkeypatch.setattr(quality_vs_nfe, "load_mnist", fake)
    out = tmp_path / "q.json"
    argv = [
        f"--workdir={tmp_path / 'w'}",
        "--preset=unet_8x8",
        "--train_steps=2",
        "--batch=4",
        "--log_every=1",
        "--num_samples=8",
        "--sample_batch=8",
        "--classifier_steps=2",
        f"--out={out}",
        "--settings",
        "ddim_10",
    ]
    first = quality_vs_nfe.run(quality_vs_nfe.parser().parse_args(argv))
    assert first["training"]["step"] == 2 and first["settings"]["ddim_10"]["nfe"] == 10
    assert np.isfinite(first["settings"]["ddim_10"]["fd"])
    assert os.path.exists(tmp_path / "q.png")
    again = quality_vs_nfe.run(quality_vs_nfe.parser().parse_args(argv))
    assert again["training"]["steps_this_run"] == 0
    assert again["settings"]["ddim_10"]["cached"]
    with pytest.raises(ValueError, match="valid settings"):
        quality_vs_nfe.run(quality_vs_nfe.parser().parse_args([*argv, "nope"]))


def test_cpu_profile_finds_forward_and_weight_gradient_convolutions():
    # A conv layer's gradient compiles to a 3x3 conv (dL/dx) and a feature-map-sized conv
    # (dL/dW): the categories must tell them apart, and a forward alone has no weight grad.
    def loss(w, x):
        dn = ("NHWC", "HWIO", "NHWC")
        return jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn))

    w, x = jnp.ones((3, 3, 4, 8)), jnp.ones((2, 12, 12, 4))
    grad = set(
        cpu_profile.hlo_categories(
            jax.jit(jax.grad(loss, (0, 1))).lower(w, x).compile().as_text()
        ).values()
    )
    forward = set(
        cpu_profile.hlo_categories(jax.jit(loss).lower(w, x).compile().as_text()).values()
    )
    assert {"conv 3x3", "conv weight-gradient"} <= grad
    assert "conv 3x3" in forward and "conv weight-gradient" not in forward


def test_cpu_profile_attributes_traced_time_to_ops():
    result = cpu_profile.profile(*cpu_profile.compiled_forward("tiny", 2), steps=2)
    shares = [row["share"] for row in result["categories"].values()]
    assert sum(shares) == pytest.approx(1.0)
    assert result["categories"]["conv 3x3"]["s"] > 0
    assert 0 < result["op_s_per_call"] < 10 * result["wall_s_per_call"]


def test_consistency_probe_measures_background_noise():
    from benchmarks import consistency_probe as probe

    x = -np.ones((2, 12, 12, 1), np.float32)
    x[:, 5, 5] = 1.0  # one stroke pixel
    mask = probe.background_mask(x)
    assert not mask[0, 3, 3] and mask[0, 2, 2] and mask[0, 8, 8] and mask.sum() == 2 * (144 - 25)
    assert probe.output_stats(x, x, mask) == {"mse": 0.0, "bg_std": 0.0, "bg_mean": 0.0}
    noisy = x + np.where(np.arange(12) % 2 == 0, 0.2, 0.0)[None, None, :, None]
    stats = probe.output_stats(noisy, x, mask)
    assert stats["bg_mean"] > 0 and stats["bg_std"] > 10  # 0.2 -> 25.5 on every other column
