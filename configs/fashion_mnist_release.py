"""Class-conditional Fashion-MNIST: the model shipped as ``pretrained.load("fashion_mnist")``.

Command (chained runs of at most ~100 minutes; each resumes the last)::

  timeout -s TERM 100m python -m jaxdiff.train --config=configs/fashion_mnist_release.py \\
      --workdir=runs/fashion_mnist_release --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.pretrained --workdir=runs/fashion_mnist_release --name=fashion_mnist

The recipe of configs/mnist_release.py (``training.config.release``) on Fashion-MNIST.

Expected: garments of the requested class; docs/pretrained.md records the hours, hardware
and FID. ``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.release("fashion_mnist")
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
