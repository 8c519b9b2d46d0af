"""Consistency training on MNIST (improved consistency training, Song & Dhariwal 2023).

Command (one resumable run; rerun the same command to go on)::

  timeout -s TERM 100m python -m jaxdiff.distill --config=configs/ct_mnist.py \\
      --workdir=runs/ct_mnist --config.data.data_dir=/path/to/tfds

Recipe (iCT): no teacher network in the loss: pairs x + sigma_n eps, x + sigma_{n+1} eps
with one eps; pseudo-Huber distance c = 0.00054 sqrt(784); lambda = 1 / (sigma_{n+1} -
sigma_n); n from the lognormal (-1.1, 2.0) mass of each interval; grid intervals
doubling from 10 to 1,280 over the run; no EMA target (the student itself, stop-gradient),
an EMA 0.999 kept for evaluation. For the 2-core budget the student starts from the
shipped MNIST diffusion model's weights (as "Easy Consistency Tuning" does; a random start
is ``--config.distill.init_from_teacher=False``). Adam 1e-4, batch 64, 3,000 steps.

Cost: a step is about 1.0 s on an idle 2-core Intel Xeon (family 6 model 167): two
student forward passes, one with its backward pass, and no teacher call; the 2026-12-07
run took 62 minutes for the 3,000 steps (1.25 s a step, partly beside other jobs).

Expected: docs/distillation.md has the FID of one- and two-step sampling beside the
teacher's and the distilled students'.
``:smoke`` runs two tiny steps (tests pass ``--config.teacher=WORKDIR``).
"""

from jaxdiff.distill import configs
from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = configs.base("consistency_training", **configs.consistency_fields())
    c.train.update(num_steps=3_000, sample_every=500)
    if arg == "smoke":
        c.distill.update(s0=2, s1=4)
        return configs.smoke(c)
    return c
