"""Class-conditional MNIST with classifier-free guidance (label dropout 0.1, w = 3).

Command::

  python -m jaxdiff.train --config=configs/mnist_cfg.py --workdir=runs/mnist_cfg \\
      --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.sample --workdir=runs/mnist_cfg --guidance=3 --label=7 --out=sevens.png

``:cpu`` is the CPU-sized run of docs/training.md's grid (a 165k-parameter U-Net,
batch 64, 1,000 steps; see docs/training.md for its command, time and picture); ``:smoke``
runs one tiny step.

Expected: with ``:cpu``, guided samples whose class is recognisable for most digits (the
committed picture); the full config is meant for a GPU (not measured here).
"""

from jaxdiff.training import config as base

VARIANTS = ("cpu", "smoke")  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="tfds", name="mnist", image_size=28, channels=1, batch_size=128)
    c.model.update(name="unet_28x28", num_classes=10)
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1000))
    c.loss.update(name="eps", label_dropout=0.1)
    c.optim.update(lr=1e-3, warmup_steps=200, ema_decays=(0.999,), ema_warmup=True)
    c.train.update(num_steps=20_000, sample_every=1_000, checkpoint_every=500)
    c.sample.update(method="ddim", num_steps=50, guidance=3.0, num_samples=100)
    if arg == "cpu":
        c.model.options.update(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=())
        c.data.batch_size = 64
        c.optim.update(lr=2e-3, warmup_steps=100, ema_decays=(0.99,))
        c.train.update(num_steps=1_000, sample_every=500, checkpoint_every=100)
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
