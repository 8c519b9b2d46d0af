"""Continuous-time VE SDE (Song et al. 2021; sigma 0.01 .. 50) on MNIST with DSM.

The network sees 1000 t, an affine function of log sigma(t) for the VE SDE; it predicts
eps (a well-scaled target) and sampling runs predictor-corrector.

Command::

  python -m jaxdiff.train --config=configs/mnist_ve_sde.py --workdir=runs/mnist_ve

Expected: recognisable digits after ~30k steps (not measured on this project's CPUs).
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="tfds", name="mnist", image_size=28, channels=1)
    c.model.name = "unet_28x28"
    c.process.update(kind="sde", name="ve", params=dict(sigma_min=0.01, sigma_max=50.0))
    c.loss.update(name="dsm", options=dict(kind="eps", weighting="sigma2"))
    c.sample.update(method="pc", num_steps=100, kind="eps")
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
