"""Quickstart: an unconditional DDPM on scikit-learn's real 8x8 digits, on a CPU in minutes.

Trains ``unet_8x8`` on the 1,500-digit train split (embedded in scikit-learn, no download),
writes sample grids to ``WORKDIR/samples/`` and checkpoints to ``WORKDIR/checkpoints``.

Commands::

  python -m jaxdiff.quickstart                     # this config + a quality figure
  python -m jaxdiff.train --config=configs/quickstart.py --workdir=runs/quickstart

Expected: see docs/training.md (grid docs/quickstart_samples.png and the measured
Frechet distance against the 297 held-out digits). ``:smoke`` runs one tiny step.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="digits", name="digits", image_size=8, channels=1, batch_size=128)
    c.model.name = "unet_8x8"
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1000))
    c.loss.name = "eps"
    c.optim.update(lr=2e-3, warmup_steps=100, ema_decays=(0.995,), ema_warmup=True)
    c.train.update(num_steps=1_000, log_every=50, checkpoint_every=250, sample_every=500)
    c.sample.update(method="ddim", num_steps=50, num_samples=100)
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
