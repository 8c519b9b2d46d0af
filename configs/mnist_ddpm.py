"""DDPM (eps prediction, linear schedule, 1000 steps) on MNIST with a small U-Net.

Command::

  python -m jaxdiff.train --config=configs/mnist_ddpm.py --workdir=runs/mnist_ddpm \\
      --config.data.data_dir=/path/to/tfds

Expected: recognisable digits in ``runs/mnist_ddpm/samples/`` after ~10k steps (a GPU does
that in minutes; not measured on this project's CPUs). ``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="tfds", name="mnist", image_size=28, channels=1, batch_size=128)
    c.model.name = "unet_28x28"
    c.process.update(kind="schedule", name="linear", params=dict(num_steps=1000))
    c.loss.name = "eps"
    c.train.num_steps = 20_000
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
