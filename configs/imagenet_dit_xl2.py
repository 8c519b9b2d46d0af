"""DiT-XL/2 on 256x256 ImageNet latents (Peebles & Xie 2023), the paper's settings.

Reads pre-encoded Stable-Diffusion VAE latents (32x32x4, already times 0.18215) with labels
from ``.npz`` files (``--config.data.path=/data/in1k_latents_{split}.npz``, arrays
``latents`` and ``labels``). 675M parameters, learned variance (hybrid loss), linear
schedule of 1000 steps, AdamW lr 1e-4 without weight decay, batch 256, EMA 0.9999, label
dropout 0.1 for guidance, 400k steps; 250-step DDPM sampling with guidance scale 1.5
(w = 0.5).

Command::

  python -m jaxdiff.train --config=configs/imagenet_dit_xl2.py --workdir=runs/dit_xl2 \\
      --config.data.path=/data/in1k_latents_{split}.npz

Expected: the paper reports FID-50K 2.27 (cfg 1.5) after 7M steps on TPU v3-256 pods;
not reproduced here. ``:smoke`` runs one step of a tiny DiT on 32x32x4 latents.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(
        source="latents", name="imagenet_latents", image_size=32, channels=4, batch_size=256
    )
    c.model.update(name="dit_xl_2", num_classes=1000, learn_sigma=True)
    c.process.update(kind="schedule", name="linear", params=dict(num_steps=1000))
    c.loss.update(name="hybrid", label_dropout=0.1)
    c.optim.update(name="adamw", lr=1e-4, weight_decay=0.0, clip_norm=0.0, ema_decays=(0.9999,))
    c.train.update(
        num_steps=400_000, checkpoint_every=10_000, keep_every=50_000, sample_every=10_000
    )
    c.sample.update(method="ddpm", num_steps=250, guidance=0.5)
    return base.smoke(c, **base.SMOKE_DIT) if arg == "smoke" else c
