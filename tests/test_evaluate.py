"""The evaluation run: resumable sample shards, metric plumbing, and the CLI end to end."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.evaluation import run as run_lib
from jaxdiff.training import loop
from tests.test_pretrained import tiny  # noqa: F401  (fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_to_uint8_maps_the_range_ends():
    out = run_lib.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(out, [0, 128, 255, 255])
    assert out.dtype == np.uint8


def test_generate_samples_resumes_from_the_shards_on_disk(tmp_path):
    calls = []

    def sample_fn(params, key, labels):
        calls.append(labels)
        return jnp.zeros((4, 2, 2, 1)) + params

    first = run_lib.generate_samples(sample_fn, 0.5, str(tmp_path), 10, None, shard_size=4)
    assert first.shape == (10, 2, 2, 1) and len(calls) == 3
    os.remove(tmp_path / "shard_00001.npz")  # as if killed while writing shard 1
    again = run_lib.generate_samples(sample_fn, 0.5, str(tmp_path), 10, None, shard_size=4)
    assert len(calls) == 4  # only the missing shard was drawn again
    np.testing.assert_array_equal(first, again)


def test_unknown_metric_and_features_are_named():
    with pytest.raises(ValueError, match="valid metrics: \\['fid', 'kid', 'is', 'acc', 'bpd'\\]"):
        run_lib.check_metrics(["fid", "bogus"])
    with pytest.raises(ValueError, match="valid: \\['inception', 'classifier'\\]"):
        run_lib.feature_and_logit_fns("pixels", None)
    with pytest.raises(ValueError, match="needs --classifier_dir"):
        run_lib.feature_and_logit_fns("classifier", None)


def test_write_report_is_json_and_a_table(tmp_path):
    table = run_lib.write_report({"fid": 1.5, "step": 3}, str(tmp_path / "m.json"))
    assert json.load(open(tmp_path / "m.json")) == {"fid": 1.5, "step": 3}
    assert "fid" in table and "1.5" in table


@pytest.mark.slow  # CI time: test_likelihood checks bits/dim; this is the CLI path
def test_cli_bits_per_dim_of_a_trained_smoke_run(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "qs", os.path.join(REPO, "configs", "quickstart.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    workdir = str(tmp_path / "run")
    loop.train(module.get_config("smoke"), workdir)
    cmd = [
        sys.executable,
        "-m",
        "jaxdiff.evaluate",
        f"--workdir={workdir}",
        "--metrics=bpd",
        "--num_bpd=64",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    evals = os.path.join(workdir, "eval")
    files = [os.path.join(d, f) for d, _, fs in os.walk(evals) for f in fs if f.endswith(".json")]
    result = json.load(open(files[0]))
    # An untrained model of 8x8 digits: finite, positive, and far from the 8-bit ceiling.
    assert 0.0 < result.get("bpd", -1) < 30.0 and result["step"] == 1, (files, result)
    bad = subprocess.run(cmd[:4] + ["--metrics=nll"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "valid metrics" in bad.stderr


def test_accuracy_counts_the_samples_classified_as_asked():
    samples = np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1)
    # A stand-in classifier whose class is the pixel value mod 4.
    logits_fn = lambda x: jax.nn.one_hot(jnp.round(x[:, 0, 0, 0]).astype(int) % 4, 4)
    asked = np.array([0, 1, 2, 3, 0, 1, 0, 0])  # the last two are misclassified
    out = run_lib.sample_metrics(["acc"], samples, samples, None, logits_fn, asked)
    assert out == {"acc": 0.75}
    with pytest.raises(ValueError, match="needs the requested labels"):
        run_lib.sample_metrics(["acc"], samples, samples, None, logits_fn)


def test_shard_labels_repeat_the_labels_of_one_shard():
    labels = run_lib.shard_labels(lambda n: jnp.arange(n) % 4, 13, 6)
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, 0, 1, 0, 1, 2, 3, 0, 1, 0])
    assert run_lib.shard_labels(None, 13, 6) is None


@pytest.mark.usefixtures("tiny")
def test_cli_evaluates_a_shipped_model(tmp_path):
    import tensorflow_datasets as tfds

    from jaxdiff import evaluate
    from jaxdiff.evaluation import classifier

    clf, out_dir = str(tmp_path / "clf"), str(tmp_path / "eval")
    argv = ["--pretrained=tiny", "--metrics=fid,acc", "--features=classifier"]
    argv += [f"--classifier_dir={clf}", "--num_samples=20", "--shard_size=10"]
    metrics = os.path.join(out_dir, "tiny", "ddim_2_w1_shipped", "metrics_step7_n20.json")
    with tfds.testing.mock_data(num_examples=40):
        classifier.train_classifier("mnist", clf, max_steps=2, batch_size=8)
        evaluate.main(argv + [f"--out_dir={out_dir}"])
        # The shipped default sampler (the smoke config's: ddim, 2 steps, w=1) and weights.
        result = json.load(open(metrics))
        os.remove(metrics)
        evaluate.main(argv + [f"--out_dir={out_dir}", "--score_only"])  # the shards on disk
        assert json.load(open(metrics)) == result
        with pytest.raises(RuntimeError, match="--score_only: a sample shard is missing"):
            evaluate.main(argv + [f"--out_dir={tmp_path / 'empty'}", "--score_only"])
    assert result["method"] == "ddim" and result["num_steps"] == 2 and result["step"] == 7
    assert np.isfinite(result["fid"]) and 0.0 <= result["acc"] <= 1.0


def test_features_are_cached_under_the_images_hash(tmp_path):
    calls = []

    def feature_fn(batch):
        calls.append(batch.shape[0])
        return jnp.mean(batch.reshape(batch.shape[0], -1), axis=1, keepdims=True)

    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
    first = run_lib.cached_features(images, feature_fn, str(tmp_path), "toy", "f")
    again = run_lib.cached_features(images, feature_fn, str(tmp_path), "toy", "f")
    np.testing.assert_array_equal(first, again)
    assert len(calls) == 1 and len(os.listdir(tmp_path)) == 1
    other = images.copy()
    other[0, 0, 0, 0] ^= 1
    run_lib.cached_features(other, feature_fn, str(tmp_path), "toy", "f")
    assert len(calls) == 2 and len(os.listdir(tmp_path)) == 2


def test_reference_features_are_shared_between_models(tmp_path, monkeypatch):
    calls = []

    def feature_fn(batch):
        calls.append(batch.shape[0])
        return jnp.mean(batch.reshape(batch.shape[0], -1), axis=1, keepdims=True)

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    shared = str(tmp_path / "shared")
    for model in ("teacher", "student"):
        samples = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
        cache = (str(tmp_path / model), "toy")
        run_lib.sample_metrics(["fid"], samples, reference, feature_fn, None, None, cache, shared)
    assert len(calls) == 3  # the reference once, each model's samples once
    assert len(os.listdir(shared)) == 1 and len(os.listdir(tmp_path / "student")) == 1
    monkeypatch.setenv("JAXDIFF_INCEPTION", str(tmp_path / "other_weights.npz"))
    assert run_lib.shared_reference_dir() == str(tmp_path / "features_other_weights.npz")


def test_sampler_options_are_parsed_and_name_their_shards():
    options = run_lib.parse_options(["sigma_min=0.8", "spacing=trailing", "clip_x0=1"])
    assert options == {"sigma_min": 0.8, "spacing": "trailing", "clip_x0": 1}
    assert run_lib.tag_for("consistency", 2, 0.0, "ema", options) == (
        "consistency_2_w0_ema_clip_x01_sigma_min0.8_spacingtrailing"
    )
    assert run_lib.tag_for("ddim", 50, 0.25, "shipped") == "ddim_50_w0.25_shipped"
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        run_lib.parse_options(["sigma_min"])
