"""The base of the distillation configs in configs/ (``distill_mnist.py``, ``cd_mnist.py``,
``ct_mnist.py``): the teacher, the student run's fields, and a smoke variant for tests.

Fields besides ``distill`` (each method's own) are those of a training run that the
student's config takes over from the teacher's (``jaxdiff.distill.teacher``).
"""

import ml_collections


def base(method: str, teacher: str = "mnist", **distill) -> ml_collections.ConfigDict:
    """A distillation config of ``method`` with ``distill`` fields; Adam 1e-4, batch 64."""
    c = ml_collections.ConfigDict()
    c.method = method  # "progressive", "consistency_distillation", "consistency_training"
    c.teacher = teacher  # a shipped model name or a training workdir
    c.seed = 0
    c.distill = dict(distill)
    c.data = dict(batch_size=64, data_dir="")  # data_dir: "" keeps the teacher's
    c.optim = dict(lr=1e-4, warmup_steps=0, ema_decays=(0.999,), ema_warmup=True)
    c.train = dict(
        num_steps=1_000,
        log_every=50,
        checkpoint_every=250,
        keep_last=2,
        keep_every=0,
        sample_every=1_000,
        progress=True,
    )
    return ml_collections.ConfigDict(c)


def consistency_fields(**overrides) -> dict:
    """The ``distill`` fields of consistency distillation and training (iCT's defaults)."""
    fields = dict(
        guidance=-1.0,  # CD: w of the teacher (-1: its default); CT ignores it
        t_min=0.0,  # where f is the identity; 0: the first level 1 / N
        sigma_data=0.5,
        distance="pseudo_huber",  # or "l2"
        rho=7.0,
        num_intervals=18,  # CD's grid of teacher levels
        weighting="uniform",  # CD's lambda: "uniform" (1) or "ict" (1 / gap); CT: always ict
        s0=10,  # CT's curriculum: grid intervals from s0, doubling up to s1
        s1=1280,
        p_mean=-1.1,  # CT's lognormal noise-level distribution
        p_std=2.0,
        init_from_teacher=True,  # CT: start from the teacher's weights
        sample_steps=1,  # the student's default number of sampling steps
    )
    fields.update(overrides)
    return fields


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Two tiny steps per run; tests pass ``--config.teacher=WORKDIR``."""
    c.teacher = ""
    c.data.batch_size = 8
    c.train.update(num_steps=2, log_every=1, checkpoint_every=1, sample_every=0, progress=False)
    return c
