"""Tests of the quickstart's sample-quality figure (and, marked slow, the whole quickstart)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxdiff import quickstart
from jaxdiff.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200_000, 2)) * [1.0, 2.0]
    b = rng.normal(size=(200_000, 2)) * [3.0, 0.5] + [1.0, -1.0]
    # |mu|^2 + sum (s_a - s_b)^2 for diagonal covariances: 2 + 4 + 2.25 = 8.25
    assert quickstart.frechet_distance(a, b) == pytest.approx(8.25, rel=0.02)
    assert quickstart.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)


def test_real_digits_score_far_better_than_noise():
    real = sources.digits("train").images[:500].astype(np.float32) / 127.5 - 1.0
    r = quickstart.score(real)
    assert r["classifier_test_accuracy"] > 0.9
    assert r["fd_samples"] < 5.0 < 20.0 < r["fd_noise"]


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "jaxdiff.quickstart", f"--workdir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "digits FD" in done.stdout and (tmp_path / "quickstart_samples.png").exists()
