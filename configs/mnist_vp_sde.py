"""Continuous-time VP SDE (Song et al. 2021) on MNIST, denoising score matching.

The network predicts eps; the loss converts it to a score (``dsm`` with ``kind="eps"``,
lambda = sigma^2) and sampling uses the probability-flow ODE (Heun).

Command::

  python -m jaxdiff.train --config=configs/mnist_vp_sde.py --workdir=runs/mnist_vp

Expected: recognisable digits after ~20k steps (not measured on this project's CPUs).
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="tfds", name="mnist", image_size=28, channels=1)
    c.model.name = "unet_28x28"
    c.process.update(kind="sde", name="vp", params=dict(beta_min=0.1, beta_max=20.0))
    c.loss.update(name="dsm", options=dict(kind="eps", weighting="sigma2"))
    c.sample.update(method="ode_heun", num_steps=50, kind="eps")
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
