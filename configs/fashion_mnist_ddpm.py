"""DDPM (cosine schedule, v prediction) on Fashion-MNIST with a small U-Net.

Command::

  python -m jaxdiff.train --config=configs/fashion_mnist_ddpm.py --workdir=runs/fmnist

Expected: recognisable garments after ~20k steps (not measured on this project's CPUs).
``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="tfds", name="fashion_mnist", image_size=28, channels=1)
    c.model.name = "unet_28x28"
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1000))
    c.loss.name = "v"
    c.sample.update(method="ddim", num_steps=50, kind="v")
    c.train.num_steps = 20_000
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
