"""Progressive distillation (``jaxdiff.distill``): the loss against an exact Gaussian
teacher, the students' grids, and the rounds as resumable runs of the command."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import _spacing, parametrization, schedules
from jaxdiff.distill import progressive, rounds
from jaxdiff.training import components, loop, restore
from tests.test_train import REPO, load_state, train_cli

MU, C = 0.3, 0.7  # the data: x ~ N(MU, C^2) in every pixel
N = 64
SCHEDULE = schedules.DiscreteSchedule.from_name("cosine", num_steps=N)
SHAPE = (6, 4, 4, 1)


def marginal(t):
    a, s = SCHEDULE.marginal(jnp.asarray(t, jnp.float32))
    return np.asarray(a, np.float64), np.asarray(s, np.float64)


def posterior_gain(t):
    """g_t: E[x | z_t] = MU + g_t (z_t - a_t MU) for Gaussian data."""
    a, s = marginal(t)
    return a * C**2 / (a**2 * C**2 + s**2)


def exact_teacher(z, t, **cond):
    """The exact x0 prediction E[x | z_t] of the Gaussian data."""
    a, s = SCHEDULE.marginal(t)
    a, s = a[:, None, None, None], s[:, None, None, None]
    return MU + a * C**2 / (a**2 * C**2 + s**2) * (z - a * MU)


def ddim_affine(t, s):
    """(A, B) with DDIM_exact(z_t -> z_s) = A z + B, in float64 from the closed form."""
    (a_t, s_t), (a_s, s_s), g = marginal(t), marginal(s), posterior_gain(t)
    c = a_s - s_s * a_t / s_t
    return s_s / s_t + c * g, c * (MU - g * a_t * MU)


def analytic_student(stride):
    """The x0 prediction whose one DDIM step equals two exact teacher steps (closed form)."""

    def student(z, t, **cond):
        t64 = np.asarray(t, np.float64)
        h = stride / N
        a1, b1 = ddim_affine(t64, t64 - h / 2)
        a2, b2 = ddim_affine(t64 - h / 2, t64 - h)
        big_a, big_b = a2 * a1, a2 * b1 + b2  # z'' = A z + B
        (a_t, s_t), (a_e, s_e) = marginal(t64), marginal(t64 - h)
        r = s_e / s_t
        coef_z, coef_1 = (big_a - r) / (a_e - r * a_t), big_b / (a_e - r * a_t)
        shape = (-1, 1, 1, 1)
        return jnp.asarray(coef_z.reshape(shape) * np.asarray(z) + coef_1.reshape(shape))

    return student


def pd_loss(student, student_steps, kind="x0", key=0):
    loss_fn = progressive.make_loss(
        exact_teacher, SCHEDULE, student_steps, kind=kind, teacher_kind="x0"
    )
    x0 = MU + C * jax.random.normal(jax.random.key(100 + key), SHAPE)
    return float(loss_fn(student, jax.random.key(key), x0)[0])


@pytest.mark.parametrize("student_steps", [1, 4, 16])
def test_the_analytic_two_step_map_has_zero_loss_and_perturbations_do_not(student_steps):
    student = analytic_student(N // student_steps)
    exact = max(pd_loss(student, student_steps, key=k) for k in range(3))
    assert exact < 1e-10
    perturbed = {
        "shifted": lambda z, t: student(z, t) + 0.01,
        "scaled": lambda z, t: 1.01 * student(z, t),
        "the teacher itself": exact_teacher,
    }
    for name, fn in perturbed.items():
        assert pd_loss(fn, student_steps) > 1e4 * max(exact, 1e-12), name


def test_a_v_student_is_scored_in_x_space():
    student = analytic_student(N // 4)
    as_v = parametrization.convert_model_fn(student, "x0", "v", SCHEDULE)
    assert pd_loss(as_v, 4, kind="v") < 1e-9
    assert pd_loss(lambda z, t: as_v(z, t) + 0.01, 4, kind="v") > 1e-6


def test_student_grids_are_the_trailing_ddim_levels():
    for n, s in [(1024, 64), (1024, 1), (1000, 4)]:
        levels = progressive.student_levels(n, s)
        ddim = np.append(_spacing.spaced_indices(0, n - 1, s, "trailing") + 1, 0)
        np.testing.assert_array_equal(levels, ddim)
        assert levels[0] == n and levels[-1] == 0 and len(levels) == s + 1


def test_bad_step_counts_are_refused():
    with pytest.raises(ValueError, match="power of two <= 512"):
        progressive.check_steps(1024, 3)
    with pytest.raises(ValueError, match="times a power of two"):
        rounds.round_steps(12, 4)
    assert rounds.round_steps(128, 1) == [64, 32, 16, 8, 4, 2, 1]
    config = rounds_config(steps_per_round=(5, 6))
    assert rounds.training_steps(config, 2) == [5, 6]
    with pytest.raises(ValueError, match="one per round"):
        rounds.training_steps(config, 3)
    assert rounds.training_steps(rounds_config(steps_per_round=()), 3) == [2, 2, 2]


def rounds_config(**distill):
    import importlib.util

    path = os.path.join(REPO, "configs", "distill_mnist.py")
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.distill.update(distill)
    return config


# The rounds, through the command: a quickstart teacher (1,000-step cosine, 8x8 digits).
ROUNDS4 = ["--config.train.num_steps=4", "--config.train.checkpoint_every=2"]


def distill_cli(workdir, teacher, *args, env=None, check=True):
    return train_cli(
        workdir,
        *args,
        env=env,
        check=check,
        module="jaxdiff.distill",
        config="configs/distill_mnist.py:smoke",
        extra=[f"--config.teacher={teacher}"],
    )


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("teacher"))
    train_cli(workdir, "--config.train.num_steps=2")
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(teacher, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("distilled"))
    distill_cli(workdir, teacher, *ROUNDS4)
    return workdir


def test_each_round_halves_the_steps_and_records_its_grid(uninterrupted, teacher):
    with open(os.path.join(uninterrupted, rounds.STUDENTS_FILE)) as f:
        students = json.load(f)["students"]
    assert [s["steps"] for s in students] == [2, 1]
    assert students[0]["levels"] == [1000, 500, 0] and students[1]["levels"] == [1000, 0]
    first = load_state(students[0]["workdir"], 4)["params"]
    start = load_state(teacher, 2)["ema"]
    start = next(iter(start.values()))
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(start), strict=True)
    ]
    assert any(changed)
    config = restore.load_run(students[0]["workdir"]).config
    assert components.sampler_settings(config)["num_steps"] == 2
    for bad in [dict(method="dpm_solver++"), dict(num_steps=4), dict(guidance=1.0)]:
        with pytest.raises(ValueError, match="valid only on its own grid"):
            components.sampler_settings(config, **bad)


def test_kill_9_mid_round_then_rerun_gives_the_same_student(uninterrupted, teacher, tmp_path):
    workdir = str(tmp_path)
    killed = distill_cli(workdir, teacher, *ROUNDS4, env={loop.KILL_ENV: "3"}, check=False)
    assert killed.returncode == -9
    distill_cli(workdir, teacher, *ROUNDS4)
    for folder in ("student_0002", "student_0001"):
        want = load_state(os.path.join(uninterrupted, folder), 4)
        got = load_state(os.path.join(workdir, folder), 4)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_sigterm_mid_round_starts_no_later_round(teacher, tmp_path, monkeypatch):
    """A preempted round returns early from loop.train; the next round must not start
    from that unfinished student (it did once: SIGTERM in round 4 went on to round 5)."""
    import types

    calls = []

    def preempted_train(config, workdir, **kwargs):
        calls.append(workdir)
        return types.SimpleNamespace(step=jnp.asarray(1))  # SIGTERM after step 1

    monkeypatch.setattr(loop, "train", preempted_train)
    config = rounds_config()
    config.teacher, config.train.num_steps = teacher, 4
    assert rounds.distill(config, str(tmp_path)) == [] and len(calls) == 1
    assert not (tmp_path / rounds.STUDENTS_FILE).exists()


def test_an_unknown_teacher_is_named(tmp_path):
    out = distill_cli(str(tmp_path / "w"), str(tmp_path / "nowhere"), check=False)
    assert out.returncode == 1
    assert "neither a shipped model" in out.stderr and "training workdir" in out.stderr


# Consistency distillation and training through the command (the same quickstart teacher).
def consistency_cli(workdir, teacher, name, *args, env=None, check=True):
    return train_cli(
        workdir,
        *args,
        env=env,
        check=check,
        module="jaxdiff.distill",
        config=f"configs/{name}.py:smoke",
        extra=[f"--config.teacher={teacher}"],
    )


@pytest.mark.parametrize("name", ["cd_mnist", "ct_mnist"])
def test_a_consistency_run_trains_a_model_that_only_consistency_sampling_takes(
    name, teacher, tmp_path
):
    consistency_cli(str(tmp_path), teacher, name)
    run = restore.load_run(str(tmp_path))
    assert run.step == 2 and run.config.distill.t_min == pytest.approx(1e-3)
    settings = components.sampler_settings(run.config)
    assert settings["method"] == "consistency" and settings["num_steps"] == 1
    with pytest.raises(ValueError, match="consistency model"):
        components.sampler_settings(run.config, "ddim", 4)
    sample = components.make_sampler(run.config, run.net, run.process, num_steps=2)
    x = sample(run.params, jax.random.key(0), None)
    assert x.shape == (4, 8, 8, 1) and bool(jnp.all(jnp.isfinite(x)))


@pytest.mark.slow  # CI time: the same loop's bitwise resume runs in CI (test_train, the PD round)
def test_kill_9_mid_consistency_training_then_rerun_is_bitwise_identical(teacher, tmp_path):
    args = ["--config.train.num_steps=4", "--config.train.checkpoint_every=2"]
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    consistency_cli(whole, teacher, "ct_mnist", *args)
    out = consistency_cli(killed, teacher, "ct_mnist", *args, env={loop.KILL_ENV: "3"}, check=False)
    assert out.returncode == -9
    consistency_cli(killed, teacher, "ct_mnist", *args)
    want, got = load_state(whole, 4), load_state(killed, 4)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
