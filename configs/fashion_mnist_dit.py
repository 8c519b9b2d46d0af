"""A small DiT (patch 2, width 128, depth 6) on Fashion-MNIST, eps prediction, AdamW.

Command::

  python -m jaxdiff.train --config=configs/fashion_mnist_dit.py --workdir=runs/fmnist_dit

Expected: recognisable garments after ~50k steps (not measured on this project's CPUs).
``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="tfds", name="fashion_mnist", image_size=28, channels=1)
    c.model.name = "dit_28x28"
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1000))
    c.loss.name = "eps"
    c.optim.update(name="adamw", lr=3e-4, warmup_steps=1_000, weight_decay=0.0)
    c.train.num_steps = 50_000
    return base.smoke(c, **base.SMOKE_DIT) if arg == "smoke" else c
