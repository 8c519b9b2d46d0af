"""Fashion-MNIST super-resolution 14 -> 28 with conditioning augmentation (Ho et al. 2021).

Commands (the SR stage of the cascade; ``:noaug`` is the ablation without augmentation)::

  python -m jaxdiff.train --config=configs/fashion_mnist_sr28.py \\
      --workdir=runs/fashion_mnist_sr28 --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.train --config=configs/fashion_mnist_sr28.py:noaug \\
      --workdir=runs/fashion_mnist_sr28_noaug --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.cascade --base=runs/fashion_mnist_base14 --sr=runs/fashion_mnist_sr28 \\
      --num_samples=100 --out=cascade.png

The shipped recipe (``training.config.release``) with an ``sr`` section: the 28x28
U-Net sees concat([x_t, nearest-upsampled low-res]) (2 channels in, 1 out) and the
augmentation level s embedded and added to its time embedding (1.65M parameters, the
single-stage model's 1.62M + the level's MLP). Each training image is
averaged to 14x14, noised to s ~ U[0, 0.5] with the same cosine process (s = 0.5: SNR ~
1), and is the conditioning; ``:noaug`` keeps s = 0. Sampling: DPM-Solver++ 20 steps,
no guidance (the SR model keeps the class embedding and label dropout 0.1, so
``--sr_guidance`` is available), s = 0.1 (``--aug_level``; 0 for ``:noaug``). No in-run
grids (they need low-resolution inputs): the cascade draws them.

Equal training compute: 2,500 steps here (0.95 of a 28x28 single-stage step each,
measured) plus 12,000 of configs/fashion_mnist_base14.py (0.28 each) make 5,735
28x28-steps, the 5,743 (100 minutes on 2 cores) of the shipped single-stage model.

Expected: 28x28 garments whose 2x2 block means stay close to their 14x14 input; with
augmentation, fewer copied base-model artefacts than ``:noaug``. About 40 minutes on 2
idle cores; not yet run (docs/cascade.md lists the trainings and FIDs to make).
``:smoke`` and ``:noaug_smoke`` run one tiny step.
"""

import ml_collections

from jaxdiff.training import config as base

VARIANTS = ("smoke", "noaug", "noaug_smoke")  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.release("fashion_mnist")
    c.sr = ml_collections.ConfigDict(
        dict(factor=2, upsample="nearest", aug_max=0.5, aug_level=0.1)  # see jaxdiff.super_res
    )
    if arg in ("noaug", "noaug_smoke"):
        c.sr.update(aug_max=0.0, aug_level=0.0)
    c.train.update(num_steps=2_500, keep_every=500, sample_every=0)
    c.sample.update(method="dpm_solver++", num_steps=20, guidance=0.0)
    c.sample.options = {}
    return base.smoke(c, **base.SMOKE_UNET) if arg in ("smoke", "noaug_smoke") else c
