"""Consistency distillation (CD) and consistency training (CT) as one training run.

``train(config, workdir)`` trains a consistency model in ``workdir`` with
:mod:`jaxdiff.training.loop` (checkpoints, exact resume, SIGTERM, grids), starting from
the teacher's weights:

- ``config.method = "consistency_distillation"``: the teacher's Heun step of the
  probability-flow ODE between neighbouring levels (guided with ``distill.guidance``);
- ``config.method = "consistency_training"``: no teacher network in the loss (iCT); the
  teacher only gives the network, the process, the data and the starting weights (as
  "Easy Consistency Tuning" starts from a diffusion model; a random start is
  ``distill.init_from_teacher=False``).

The student samples with ``samplers.sample(method="consistency", num_steps=1 or more)``;
its config's ``distill`` section records t_min, sigma_data and the method.
"""

import ml_collections

from jaxdiff.distill import consistency_losses as losses
from jaxdiff.distill import teacher as teacher_lib
from jaxdiff.samplers import consistency as consistency_sampler

METHODS = ("consistency_distillation", "consistency_training")


def run_config(config, teacher, w: float):
    """The student's training config: the teacher's plus the consistency fields."""
    c = teacher_lib.student_config(config, teacher, config.train.num_steps)
    d = config.distill
    t_min = d.t_min or consistency_sampler.default_t_min(teacher.process)
    c.sample.update(method="consistency", num_steps=d.sample_steps, guidance=0.0)
    c.sample.options = ml_collections.ConfigDict(dict(sigma_data=d.sigma_data, t_min=t_min))
    c.distill = dict(d.to_dict(), method=config.method, teacher=config.teacher, guidance=w)
    c.distill.t_min = t_min
    return c


def make_loss(c, teacher, w: float):
    """The CD or CT loss of a run config made by :func:`run_config`."""
    d, kind = c.distill, c.sample.kind
    common = dict(t_min=d.t_min, sigma_data=d.sigma_data, distance=d.distance, rho=d.rho)
    if d.method == "consistency_distillation":
        return losses.make_cd_loss(
            teacher_lib.teacher_fn(teacher, w),
            teacher.process,
            kind=kind,
            teacher_kind=teacher.config.sample.kind,
            num_intervals=d.num_intervals,
            weighting=d.get("weighting", "uniform"),  # runs before the field: uniform
            **common,
        )
    return losses.make_ct_loss(
        teacher.process,
        kind=kind,
        total_steps=c.train.num_steps,
        s0=d.s0,
        s1=d.s1,
        p_mean=d.p_mean,
        p_std=d.p_std,
        **common,
    )


def train(config, workdir: str):
    """Trains (or resumes) the consistency model of ``config`` in ``workdir``."""
    from jaxdiff.training import loop

    if config.method not in METHODS:
        raise ValueError(f"Unknown method {config.method!r}; valid: {list(METHODS)}.")
    teacher = teacher_lib.load_teacher(config.teacher)
    teacher_lib.check_fixed_variance(teacher, config.method)
    distilling = config.method == "consistency_distillation"
    w = teacher_lib.teacher_guidance(config, teacher) if distilling else 0.0
    c = run_config(config, teacher, w)
    start = teacher.params if (distilling or config.distill.init_from_teacher) else None
    loop.say(f"{config.method}: {workdir}")
    return loop.train(c, workdir, loss_fn=make_loss(c, teacher, w), init_params=start)
