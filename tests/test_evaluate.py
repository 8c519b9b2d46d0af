"""The evaluation run: resumable sample shards, metric plumbing, and the CLI end to end."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.evaluation import run as run_lib
from jaxdiff.training import loop

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
    with pytest.raises(ValueError, match="valid metrics: \\['fid', 'kid', 'is', 'bpd'\\]"):
        run_lib.check_metrics(["fid", "bogus"])
    with pytest.raises(ValueError, match="valid: \\['inception', 'classifier'\\]"):
        run_lib.feature_and_logit_fns("pixels", None)
    with pytest.raises(ValueError, match="needs --classifier_dir"):
        run_lib.feature_and_logit_fns("classifier", None)


def test_write_report_is_json_and_a_table(tmp_path):
    table = run_lib.write_report({"fid": 1.5, "step": 3}, str(tmp_path / "m.json"))
    assert json.load(open(tmp_path / "m.json")) == {"fid": 1.5, "step": 3}
    assert "fid" in table and "1.5" in table


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
