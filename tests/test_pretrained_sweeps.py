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
    chosen = sweeps.settings(["guidance"], guidance=[1.0], sampler={"method": "ddim"})
    assert chosen == [("guidance", {"guidance": 1.0, "method": "ddim"})]


@pytest.mark.usefixtures("tiny")
def test_a_tiny_sweep_scores_and_resumes(tmp_path):
    from jaxdiff.evaluation import classifier

    with tfds.testing.mock_data(num_examples=40):
        classifier.train_classifier("mnist", str(tmp_path / "clf"), max_steps=2, batch_size=8)
        out = str(tmp_path / "sweep.json")
        args = ["--model=tiny", f"--classifier_dir={tmp_path / 'clf'}", "--num_samples=20"]
        args += ["--batch=10", "--sweeps=guidance", "--guidance=0,1", f"--out={out}"]
        sweeps.main(args)
        rows = json.load(open(out))["rows"]
        assert [r["setting"]["guidance"] for r in rows] == [0.0, 1.0]
        assert all(np.isfinite(r["fd"]) and 0 <= r["accuracy"] <= 1 for r in rows)
        sweeps.main(args)  # a rerun finds both settings done
        assert json.load(open(out))["rows"] == rows


@pytest.mark.slow  # CI time: trains and scores several checkpoints
@pytest.mark.usefixtures("tiny")
def test_the_training_sweep_scores_each_checkpoint_of_the_run(tmp_path):
    from jaxdiff.evaluation import classifier
    from jaxdiff.training import loop
    from tests.test_pretrained import smoke_config

    with tfds.testing.mock_data(num_examples=40):
        classifier.train_classifier("mnist", str(tmp_path / "clf"), max_steps=2, batch_size=8)
        for steps in (1, 2):
            config = smoke_config()
            config.train.num_steps = steps
            loop.train(config, str(tmp_path / "snaps" / f"step{steps}"))
        out = str(tmp_path / "sweep.json")
        args = ["--model=tiny", f"--classifier_dir={tmp_path / 'clf'}", "--num_samples=10"]
        args += ["--batch=10", "--sweeps=training", f"--run_dirs={tmp_path}/snaps/*"]
        sweeps.main(args + ["--params=raw", f"--out={out}"])
    rows = json.load(open(out))["rows"]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["fd"] != rows[1]["fd"]  # each checkpoint's own parameters were sampled
