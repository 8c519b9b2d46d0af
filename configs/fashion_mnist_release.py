"""Class-conditional Fashion-MNIST: the model shipped as ``pretrained.load("fashion_mnist")``.

Command (chained runs of at most ~100 minutes; each resumes the last)::

  timeout -s TERM 100m python -m jaxdiff.train --config=configs/fashion_mnist_release.py \\
      --workdir=runs/fashion_mnist_release --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.pretrained --workdir=runs/fashion_mnist_release --name=fashion_mnist

The recipe of configs/mnist_release.py (``training.config.release``) on Fashion-MNIST.

Expected: garments of the requested class. The shipped weights (2026-12-06) are one run
stopped by SIGTERM at step 5,743 of the 40,000 planned: 100 minutes on 2 cores of an Intel
Xeon (0.96 steps/s), 6.1 epochs; 92.2% of its samples are classified as the garment asked
for (in-repo classifier, itself 90.9% right on real test images; shipped DPM-Solver++ 20
steps, w = 0.25). docs/pretrained.md records the hours, hardware, choices and scores.
``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.release("fashion_mnist")
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
