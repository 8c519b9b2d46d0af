"""Rounds of progressive distillation: teacher -> student of half the steps -> ... -> final.

``distill(config, workdir)`` runs every round as a training run of
:mod:`jaxdiff.training.loop` in ``workdir/student_SSSS`` (S the student's steps), so each
round checkpoints, resumes bitwise after a kill, draws grids and stops on SIGTERM like
training does (a SIGTERM ends the whole run: no later round starts from an unfinished
student). A finished round is skipped on a rerun; the next round's teacher is the
round's student (``config.distill.teacher_params``). ``workdir/students.json`` lists the
finished students with their time grids.

The config (``configs/distill_mnist.py``) holds the teacher and the distillation settings;
the network, the process and the data come from the teacher's own config:

- ``teacher``: a shipped model name (``jaxdiff.pretrained``) or a training workdir;
- ``distill.teacher_steps``: the teacher DDIM grid the first round halves (a power of two
  dividing the schedule's N); ``distill.final_steps``: the last student's steps;
- ``distill.guidance``: the classifier-free guidance w distilled into every student (-1:
  the teacher's default); the students are sampled without guidance;
- ``distill.teacher_params``: which parameters of a student teach the next round;
- ``distill.steps_per_round``: training steps of each round, in order (empty: every round
  runs ``train.num_steps``);
- ``train``, ``optim``, ``seed``, ``data.batch_size``, ``data.data_dir``: per round.
"""

import json
import os

import ml_collections

from jaxdiff.distill import progressive
from jaxdiff.distill import teacher as teacher_lib
from jaxdiff.training import components, restore

STUDENTS_FILE = "students.json"


def round_steps(teacher_steps: int, final_steps: int) -> list[int]:
    """The students' steps: teacher_steps / 2, / 4, ..., final_steps.

    Raises:
      ValueError: unless teacher_steps = final_steps * 2^k with k >= 1.
    """
    steps, s = [], teacher_steps // 2
    while s >= final_steps and s >= 1:
        steps.append(s)
        s //= 2
    if teacher_steps < 2 or final_steps < 1 or not steps or steps[-1] != final_steps:
        raise ValueError(
            f"distill.teacher_steps={teacher_steps} must be distill.final_steps={final_steps} "
            "times a power of two >= 2 (each round halves the steps)."
        )
    return steps


def training_steps(config, num_rounds: int) -> list[int]:
    """Training steps of each round: ``distill.steps_per_round`` or ``train.num_steps``."""
    given = list(config.distill.steps_per_round)
    if not given:
        return [config.train.num_steps] * num_rounds
    if len(given) != num_rounds or min(given) < 1:
        raise ValueError(
            f"distill.steps_per_round={tuple(given)}: give {num_rounds} step counts >= 1, one "
            "per round, or () for train.num_steps each."
        )
    return given


def round_config(config, teacher: restore.Run, student_steps: int, w: float, num_steps: int):
    """The training config of one round: the teacher's run config plus this round's fields."""
    c = teacher_lib.student_config(config, teacher, num_steps)
    c.sample.update(method="ddim", num_steps=student_steps, guidance=0.0)
    c.sample.options = ml_collections.ConfigDict(dict(spacing="trailing"))
    n = components.build_process(c).num_steps
    c.distill = dict(
        method="progressive",
        teacher=config.teacher,
        student_steps=student_steps,
        guidance=w,
        levels=[int(k) for k in progressive.student_levels(n, student_steps)],
    )
    return c


def check(config, teacher: restore.Run) -> list[int]:
    """The rounds' student steps; raises ValueError for a teacher the method cannot use."""
    tc = teacher.config
    if tc.process.kind != "schedule" or tc.model.learn_sigma:
        raise ValueError(
            "progressive distillation needs a discrete-schedule teacher (process.kind="
            f"'schedule') with a fixed variance; got kind={tc.process.kind!r}, "
            f"learn_sigma={tc.model.learn_sigma}."
        )
    steps = round_steps(config.distill.teacher_steps, config.distill.final_steps)
    progressive.check_steps(teacher.process.num_steps, steps[0])
    return steps


def distill(config, workdir: str) -> list[dict]:
    """Runs (or resumes) every round; returns the students' records (also in students.json).

    Args:
      config: a distillation config (see the module docstring).
      workdir: the rounds go to ``workdir/student_SSSS``.

    Returns:
      [{"steps", "levels", "workdir", "guidance"}] of the finished students, in order
      (fewer than the rounds when a SIGTERM stopped a round).
    """
    from jaxdiff.training import loop

    teacher = teacher_lib.load_teacher(config.teacher)
    w = teacher_lib.teacher_guidance(config, teacher)
    steps = check(config, teacher)
    budgets = training_steps(config, len(steps))
    os.makedirs(workdir, exist_ok=True)
    records, guidance_now = [], w
    for student_steps, num_steps in zip(steps, budgets, strict=True):
        c = round_config(config, teacher, student_steps, w, num_steps)
        folder = os.path.join(workdir, f"student_{student_steps:04d}")
        loss = progressive.make_loss(
            teacher_lib.teacher_fn(teacher, guidance_now),
            teacher.process,
            student_steps,
            kind=c.sample.kind,
            teacher_kind=teacher.config.sample.kind,
        )
        loop.say(f"round: {2 * student_steps} -> {student_steps} steps ({folder})")
        state = loop.train(c, folder, loss_fn=loss, init_params=teacher.params)
        if int(state.step) < num_steps:  # stopped by SIGTERM: this student is unfinished
            loop.say(f"stopped at step {int(state.step)} of {num_steps}; rerun to resume.")
            break
        records.append(
            {"steps": student_steps, "levels": c.distill.levels, "workdir": folder, "guidance": w}
        )
        write_records(workdir, records)
        teacher, guidance_now = restore.load_run(folder, config.distill.teacher_params), 0.0
    return records


def write_records(workdir: str, records: list[dict]) -> None:
    """Writes ``workdir/students.json`` atomically."""
    path = os.path.join(workdir, STUDENTS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump({"students": records}, f, indent=1)
    os.replace(path + ".tmp", path)
