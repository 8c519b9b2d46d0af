"""benchmarks/pretrained_sweeps.py: NFE bookkeeping, the settings it runs, and a tiny
resumable run on a smoke-sized model with a barely trained classifier."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from benchmarks import pretrained_sweeps as sweeps
from tests.test_pretrained import tiny  # noqa: F401  (fixture)


def test_heun_methods_spend_two_evaluations_per_step():
    assert sweeps.steps_for("ode_heun", 20) == 10 and sweeps.steps_for("edm_stochastic", 5) == 3
    assert sweeps.steps_for("ddim", 20) == 20 and sweeps.steps_for("dpm_solver++", 5) == 5


def test_settings_cover_every_method_and_nfe():
    got = sweeps.settings(["guidance", "nfe"])
    assert len(got) == len(sweeps.GUIDANCE) + len(sweeps.METHODS) * len(sweeps.NFE)
    assert {s["method"] for name, s in got if name == "nfe"} == set(sweeps.METHODS)


@pytest.mark.usefixtures("tiny")
def test_a_tiny_sweep_scores_and_resumes(tmp_path, monkeypatch):
    from jaxdiff.evaluation import classifier

    monkeypatch.setattr(sweeps, "GUIDANCE", (0.0, 1.0))
    with tfds.testing.mock_data(num_examples=40):
        classifier.train_classifier("mnist", str(tmp_path / "clf"), max_steps=2, batch_size=8)
        out = str(tmp_path / "sweep.json")
        args = ["--model=tiny", f"--classifier_dir={tmp_path / 'clf'}", "--num_samples=20"]
        args += ["--batch=10", "--sweeps=guidance", f"--out={out}"]
        sweeps.main(args)
        rows = json.load(open(out))["rows"]
        assert [r["setting"]["guidance"] for r in rows] == [0.0, 1.0]
        assert all(np.isfinite(r["fd"]) and 0 <= r["accuracy"] <= 1 for r in rows)
        sweeps.main(args)  # a rerun finds both settings done
        assert json.load(open(out))["rows"] == rows
