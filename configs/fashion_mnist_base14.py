"""Class-conditional Fashion-MNIST at 14x14: the base stage of the 14 -> 28 cascade.

Command (then configs/fashion_mnist_sr28.py; docs/cascade.md has the whole experiment)::

  python -m jaxdiff.train --config=configs/fashion_mnist_base14.py \\
      --workdir=runs/fashion_mnist_base14 --config.data.data_dir=/path/to/tfds

The shipped recipe (``training.config.release``: cosine schedule of 1,024 steps,
v-prediction, label dropout 0.1, Adam 1e-3, EMAs 0.999 / 0.9999, batch 64) on the 28x28
images averaged to 14x14 (``data.downsample=2``), with the U-Net one level shallower
(``ch_mult=(1, 2)``: 14 -> 7, attention at 7; 1.0M parameters). Default sampler:
DPM-Solver++ 20 steps, w = 0.25, the shipped single-stage model's.

Equal training compute: the single-stage model (configs/fashion_mnist_release.py, shipped
as ``fashion_mnist``) trained 5,743 28x28 steps in 100 minutes on 2 cores. The cascade
gets the same: this base 12,000 steps (a 14x14 step costs 0.28 of a 28x28 one, measured)
and the SR stage 2,500 (0.95 each; configs/fashion_mnist_sr28.py): 3,360 + 2,375 = 5,735
28x28-steps, ~56 + ~40 minutes.

Expected: 14x14 garments of the requested class, in ~56 minutes on 2 idle cores (not yet
run; docs/cascade.md lists the measurements to make).
``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.release("fashion_mnist")
    c.data.update(image_size=14, downsample=2)  # 28x28 TFDS images -> mean of 2x2 blocks
    c.model.options.update(ch_mult=(1, 2), attn_resolutions=(7,))
    c.train.update(num_steps=12_000, keep_every=1_000)
    c.sample.update(method="dpm_solver++", num_steps=20, guidance=0.25)
    c.sample.options = {}
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
