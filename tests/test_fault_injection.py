"""kill -9 at random points of a short run (inside saves too), resumed each time with the
same command: the final state is bitwise equal to an uninterrupted run's.

Kill points are ``loop.KILL_ENV`` values: ``"S"`` (right after step S), ``"S:save"`` (while
step S's checkpoint is being written by orbax) and ``"S:manifest"`` (after orbax finished,
before the manifest is committed). One workdir is killed at each point in turn, in run
order, then run to the end.
"""

import random

import pytest

from jaxdiff.training import loop
from tests.test_train import RUN20, load_state, train_cli, uninterrupted  # noqa: F401

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


def test_three_kills_inside_and_between_saves(uninterrupted, tmp_path):  # noqa: F811
    points = ["5:manifest", "10:save", "12"]
    log = killed_then_resumed(str(tmp_path), points)
    assert "set aside" in log and "resumed from step" in log
    assert_same_final_state(uninterrupted, str(tmp_path))


@pytest.mark.slow
def test_twenty_random_kills(uninterrupted, tmp_path):  # noqa: F811
    killed_then_resumed(str(tmp_path), kill_points(20, seed=0))
    assert_same_final_state(uninterrupted, str(tmp_path))
