"""The KL autoencoder of latent diffusion on captioned MNIST (28x28x1 -> 7x7x4 latents).

Commands::

  python -m jaxdiff.train --config=configs/mnist_autoencoder.py \\
      --workdir=runs/mnist_autoencoder --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.autoencoder --action=evaluate --workdir=runs/mnist_autoencoder \\
      --classifier_dir=runs/classifier_mnist --split=test --data_dir=/path/to/tfds

Recipe (jaxdiff.autoencoder; docs/latent.md): the placed digits of the captioned set
(``data.source = "captioned"``: seeded scale and offset, so that latents of off-centre and
small digits are learnt too), an encoder / decoder of residual blocks (channels 32, 64,
64; two stride-2 downsamplings: f = 4), a diagonal Gaussian posterior over 4 channels, loss
L1 + 0.5 (1 - SSIM) + 1e-5 KL (LPIPS substitute: SSIM; no patch discriminator), Adam 1e-3,
EMA 0.999. The latent scale factor (1 / std of posterior samples of the first 2,048
training digits) is measured at every checkpoint and stored in its metadata.

Expected: test PSNR above 20 dB, rFID (classifier features) well below the pixel models'
sample FID, scaled latents with std 1.00 +- 0.05; not yet run (docs/latent.md: about 75
minutes on 2 cores for 6,000 steps, estimated). ``:smoke`` runs one tiny step.
"""

import ml_collections

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="captioned", name="mnist", batch_size=64, image_size=28, channels=1)
    c.autoencoder = ml_collections.ConfigDict(
        dict(
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            latent_channels=4,
            num_groups=8,
            kl_weight=1e-5,
            ssim_weight=0.5,
            scale_examples=2048,
        )
    )
    c.optim.update(lr=1e-3, warmup_steps=200, ema_decays=(0.999,), ema_warmup=True)
    c.train.update(num_steps=6_000, log_every=50, checkpoint_every=500, sample_every=0)
    if arg == "smoke":
        c = base.smoke(c)
        c.autoencoder.update(ch=8, num_groups=4, scale_examples=16)
    return c
