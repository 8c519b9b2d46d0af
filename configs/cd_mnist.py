"""Consistency distillation of the shipped MNIST model (Song et al. 2023).

Command (one resumable run; rerun the same command to go on)::

  timeout -s TERM 100m python -m jaxdiff.distill --config=configs/cd_mnist.py \\
      --workdir=runs/cd_mnist --config.data.data_dir=/path/to/tfds

Recipe: the student starts from ``pretrained.load("mnist")`` and learns the consistency
function f(x~, t) (boundary parametrisation, sigma_data 0.5, identity at the first level
t = 1/1024) on an 18-interval Karras grid (rho 7) of the teacher's levels; the teacher
takes one Heun step of the probability-flow ODE between neighbours, guided with its
shipped w = 0.25; pseudo-Huber distance, lambda = 1, the student itself (stop-gradient)
as target; Adam 1e-4, batch 64, EMA 0.999 for evaluation, 2,000 steps.

Cost: a step is about 3.1 s on an idle 2-core Intel Xeon (family 6 model 167): a guided
Heun step of the teacher (two calls on a doubled batch) plus the student's forward and
backward pass, so the 2,000 steps take about 105 minutes, two chained runs of the command
(the 2026-12-07 run: 699 steps in the first, partly beside other jobs).

Expected: docs/distillation.md has the FID of one- and two-step sampling
(``python -m jaxdiff.sample --workdir=runs/cd_mnist``; two steps:
``--num_steps=2`` with ``sigma_min=0.8``) beside the teacher's.
``:smoke`` runs two tiny steps (tests pass ``--config.teacher=WORKDIR``).
"""

from jaxdiff.distill import configs
from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = configs.base("consistency_distillation", **configs.consistency_fields())
    c.train.update(num_steps=2_000, sample_every=500)
    return configs.smoke(c) if arg == "smoke" else c
