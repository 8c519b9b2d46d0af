"""kill -9 at random points of a short run (inside saves too), resumed each time with the
same command: the final state is bitwise equal to an uninterrupted run's.

Kill points are ``loop.KILL_ENV`` values: ``"S"`` (right after step S), ``"S:save"`` (while
step S's checkpoint is being written by orbax) and ``"S:manifest"`` (after orbax finished,
before the manifest is committed). One workdir is killed at each point in turn, in run
order, then run to the end.
"""

import os
import random

import pytest

from jaxdiff.training import integrity, loop
from tests.test_train import RUN20, SMOKE, load_state, train_cli, uninterrupted  # noqa: F401

CHECKPOINT_STEPS = (5, 10, 15, 20)  # RUN20 saves every 5 of 20 steps
PHASE_ORDER = {"save": 0, "step": 1, "manifest": 2}


def all_kill_points() -> list[tuple[int, str]]:
    points = [(s, "step") for s in range(1, 21)]
    points += [(s, phase) for s in CHECKPOINT_STEPS for phase in ("save", "manifest")]
    return points


def kill_points(n: int, seed: int) -> list[str]:
    """n distinct kill points in the order a run reaches them, as KILL_ENV values."""
    chosen = random.Random(seed).sample(all_kill_points(), n)
    chosen.sort(key=lambda p: (p[0], PHASE_ORDER[p[1]]))
    return [str(s) if phase == "step" else f"{s}:{phase}" for s, phase in chosen]


def killed_then_resumed(workdir: str, points: list[str]) -> str:
    """Runs RUN20 once per kill point (each must die by SIGKILL), then to the end."""
    log = []
    for point in points:
        out = train_cli(workdir, *RUN20, env={loop.KILL_ENV: point}, check=False)
        assert out.returncode == -9, f"kill point {point}: exit {out.returncode}\n{out.stderr}"
        log.append(out.stdout)
    log.append(train_cli(workdir, *RUN20).stdout)
    return "".join(log)


def assert_same_final_state(want_dir: str, got_dir: str) -> None:
    import jax
    import numpy as np

    want, got = load_state(want_dir, 20), load_state(got_dir, 20)
    leaves_w, leaves_g = jax.tree.leaves(want), jax.tree.leaves(got)
    assert len(leaves_w) == len(leaves_g) > 10
    for a, b in zip(leaves_w, leaves_g, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_kill_points_are_in_run_order():
    points = kill_points(20, seed=0)
    assert len(set(points)) == 20
    assert kill_points(3, seed=1) == kill_points(3, seed=1)


def test_kills_inside_saves(uninterrupted, tmp_path):  # noqa: F811
    # a kill between saves (point "12") is test_train's kill -9 test
    points = ["5:manifest", "10:save"]
    log = killed_then_resumed(str(tmp_path), points)
    assert "set aside" in log and "resumed from step" in log
    assert_same_final_state(uninterrupted, str(tmp_path))


@pytest.mark.slow
def test_twenty_random_kills(uninterrupted, tmp_path):  # noqa: F811
    killed_then_resumed(str(tmp_path), kill_points(20, seed=0))
    assert_same_final_state(uninterrupted, str(tmp_path))


def train_until(workdir: str, extra_args: list[str], metric_lines: int):
    """Starts ``jaxdiff.train`` on the smoke config in a subprocess and returns it once
    ``metrics.jsonl`` has ``metric_lines`` lines (at most 5 minutes)."""
    import subprocess
    import sys
    import time

    from tests.test_train import REPO

    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    args = [f"--config={SMOKE}", f"--workdir={workdir}", *extra_args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxdiff.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 300
    while not (os.path.exists(metrics) and len(open(metrics).readlines()) >= metric_lines):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    return proc


def test_sigterm_saves_within_seconds_and_the_rerun_says_where_it_resumed(tmp_path):
    import signal
    import time

    workdir = str(tmp_path)
    args = ["--config.train.num_steps=100000", "--config.train.checkpoint_every=100000"]
    proc = train_until(workdir, [*args, "--config.train.sample_every=3"], metric_lines=5)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.time() - sent
    assert proc.returncode == 0, err[-2000:]
    assert took < 30, took  # a step, a save and its manifest (seconds even on a loaded CPU)
    saved = [line for line in out.splitlines() if line.startswith("SIGTERM: saved step")]
    assert len(saved) == 1, out
    step = int(saved[0].split()[3])
    assert integrity.verify(os.path.join(workdir, "checkpoints", str(step)), step) is None
    assert out.strip().splitlines()[-1].startswith(f"done at step {step}: checkpoint ")
    again = train_cli(workdir, "--config.train.num_steps=1", check=False)
    assert f"resumed from step {step} (" in again.stdout, again.stdout + again.stderr


def test_sigterm_during_in_loop_sampling_does_not_wait_for_it(tmp_path):
    """1000 DDIM steps x 256 samples take ~2 min here; SIGTERM 2 s into them exits in seconds."""
    import signal
    import time

    workdir = str(tmp_path)
    args = ["--config.train.num_steps=1000", "--config.train.checkpoint_every=1000"]
    args += ["--config.train.sample_every=2", "--config.sample.num_steps=1000"]
    proc = train_until(workdir, [*args, "--config.sample.num_samples=256"], metric_lines=2)
    time.sleep(2.0)  # step 2's grid is being drawn
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert time.time() - sent < 20
    assert "SIGTERM: saved step 2 in" in out
    assert integrity.verify(os.path.join(workdir, "checkpoints", "2"), 2) is None
    assert not os.path.exists(os.path.join(workdir, "samples", "step_0000002.png"))
