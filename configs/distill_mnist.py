"""Progressive distillation of the shipped MNIST model (Salimans & Ho 2022).

Command (each round is a resumable training run; rerun the same command to go on)::

  timeout -s TERM 100m python -m jaxdiff.distill --config=configs/distill_mnist.py \\
      --workdir=runs/distill_mnist --config.data.data_dir=/path/to/tfds

Recipe: the teacher is ``pretrained.load("mnist")`` with its shipped guidance w = 0.25
distilled into every student (students sample with DDIM on their own grid, unguided).
The first round halves the teacher's 64-step DDIM grid; rounds go 32 -> 16 -> ... -> 1
step, with 300 to 1,500 training steps each (4,600 in all: the first rounds start close to
their teacher). Each student starts from its teacher's weights; Adam 1e-4, batch 64, an
EMA 0.999 with warmup; the EMA of a student teaches the next round. A PD step costs about
two training steps here (two guided teacher calls on a doubled batch, then the student):
2.2 s on an idle 2-core Intel Xeon, so the 4,600 steps take two chained 100-minute runs.

Expected: docs/distillation.md has each student's FID beside the teacher's (5,000
samples, the same seeds for every row), the commands and the wall time of every round.
``:smoke`` is two rounds of two steps each, for tests.
"""

from jaxdiff.distill import configs
from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = configs.base(
        "progressive",
        teacher_steps=64,  # the teacher's DDIM grid that the first round halves
        final_steps=1,  # the last student's steps
        guidance=-1.0,  # w distilled into the students; -1: the teacher's default
        teacher_params="ema",  # a student's parameters that teach the next round
        # training steps of each round (() : train.num_steps each); the first rounds start
        # close to their teacher, the last ones have the most to learn
        steps_per_round=(300, 300, 500, 800, 1200, 1500),
    )
    if arg == "smoke":
        c.distill.update(teacher_steps=4, final_steps=1, steps_per_round=())
        return configs.smoke(c)
    return c
