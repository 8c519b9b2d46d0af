"""Ho et al. (2020) CIFAR-10 DDPM, their exact settings (for users who have the data).

35.7M-parameter U-Net (``ddpm_cifar10``: dropout 0.1), linear betas 1e-4 .. 0.02 over 1000
steps, eps prediction with the simple loss, Adam lr 2e-4 with 5,000 warmup steps, gradient
clip 1.0, batch 128, EMA 0.9999, random horizontal flips, 800k steps.

Command::

  python -m jaxdiff.train --config=configs/cifar10_ddpm.py --workdir=runs/cifar10 \\
      --config.data.data_dir=/path/to/tfds

Expected: the paper reports FID 3.17 / IS 9.46 (50k samples, 1000-step ancestral
sampling) after 800k steps on a TPU v3-8; not reproduced here. ``:smoke`` runs one step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(
        source="tfds", name="cifar10", image_size=32, channels=3, batch_size=128, flip=True
    )
    c.model.name = "ddpm_cifar10"
    c.process.update(kind="schedule", name="linear", params=dict(num_steps=1000))
    c.loss.name = "eps"
    c.optim.update(name="adam", lr=2e-4, warmup_steps=5_000, clip_norm=1.0, ema_decays=(0.9999,))
    c.train.update(
        num_steps=800_000, checkpoint_every=10_000, keep_every=100_000, sample_every=10_000
    )
    c.sample.update(method="ddpm", num_steps=1000)
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
