"""What every distillation method shares: the teacher and the student's training config.

A teacher is a shipped model (``jaxdiff.pretrained``) or a training workdir; the student
is a training run of the same network and process (``jaxdiff.training.loop``), whose
config is the teacher's with the distillation config's ``seed``, ``train``, ``optim``,
``data.batch_size`` and ``data.data_dir`` on top.
"""

import ml_collections

from jaxdiff.training import restore


def load_teacher(source: str) -> restore.Run:
    """The teacher: a shipped model's name or a training run's workdir."""
    from jaxdiff import pretrained

    return pretrained.load_run(source)


def teacher_guidance(config, teacher: restore.Run) -> float:
    """The guidance w to distil: ``distill.guidance``, or the teacher's default when < 0."""
    w = config.distill.guidance
    w = teacher.config.sample.guidance if w < 0 else w
    if w and not teacher.config.model.num_classes:
        raise ValueError(
            f"distill.guidance={w}: the teacher is unconditional; guidance needs classes."
        )
    return float(w)


def teacher_fn(teacher: restore.Run, w: float):
    """The teacher's model function, guided with weight w (w = 0: as it is)."""
    from jaxdiff import guidance

    fn = teacher.model_fn()
    return guidance.cfg(fn, w, teacher.config.model.num_classes) if w else fn


def student_config(config, teacher: restore.Run, num_steps: int):
    """The teacher's run config with the student run's fields (no label dropout)."""
    c = ml_collections.ConfigDict(teacher.config.to_dict())
    c.seed = config.seed
    c.train.update(config.train.to_dict())
    c.train.num_steps = num_steps
    c.optim.update(config.optim.to_dict())
    c.data.batch_size = config.data.batch_size
    c.data.data_dir = config.data.data_dir or c.data.data_dir
    c.loss.update(label_dropout=0.0, importance_bins=0)
    return c


def check_fixed_variance(teacher: restore.Run, method: str) -> None:
    """Raises ValueError unless the teacher has a fixed variance (no learned sigma)."""
    if teacher.config.model.learn_sigma:
        raise ValueError(f"{method} needs a teacher with a fixed variance (learn_sigma=False).")
