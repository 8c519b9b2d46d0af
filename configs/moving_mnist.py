"""Unconditional video diffusion on Moving MNIST: 16-frame 32x32 clips of 1-2 digits.

Command (chained runs of at most ~100 minutes; each resumes the last)::

  timeout -s TERM 100m python -m jaxdiff.train --config=configs/moving_mnist.py \\
      --workdir=runs/moving_mnist --config.data.data_dir=/path/to/tfds
  python -m jaxdiff.sample --workdir=runs/moving_mnist --num_samples=16 --out=clips.gif
  python -m jaxdiff.sample --workdir=runs/moving_mnist --num_samples=16 \\
      --condition_frames=4 --out=predicted.gif

The clips are generated from TFDS MNIST on the fly and seeded (``data.moving_mnist``).
Network: ``video_unet_32`` (1.26M parameters), the image U-Net applied per frame with
temporal attention (relative-position bias) after every ResNet block, spatial attention
at 8x8 (Ho et al. 2022). Recipe of the shipped image models (cosine schedule of 1,024
steps, v-prediction, Adam 1e-3 with 500 warmup steps, EMA 0.999); batch 8 clips (128
frames a step); DDIM 50 (trailing spacing) for the grids and the samples.

Expected: clips in which digits keep their identity and move smoothly; the measures and
their values on real clips are in docs/video.md (not yet run: 20,000 steps, 11-14 hours on
2 cores by the step's FLOPs, docs/video.md).
``:smoke`` runs one tiny step on 4-frame clips. ``:short`` is the recipe that fits 2 CPU
cores: 8-frame clips (the ``moving_mnist_8f`` data set) and 6,000 steps (about half the
FLOPs a step; measured 1.4-1.5 s a step on 2 idle cores, so about 2.4 hours in two chained
runs), the same network and schedule::

  timeout -s TERM 100m python -m jaxdiff.train --config=configs/moving_mnist.py:short \\
      --workdir=runs/moving_mnist_short --config.data.data_dir=/path/to/tfds
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke", "short")  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.data.update(source="moving_mnist", name="moving_mnist", image_size=32, channels=1)
    c.data.update(frames=16, batch_size=8)
    c.model.update(name="video_unet_32", num_classes=0)
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1024))
    c.loss.update(name="v")
    c.optim.update(lr=1e-3, warmup_steps=500, ema_decays=(0.999,), ema_warmup=True)
    c.train.update(num_steps=20_000, checkpoint_every=250, keep_every=2_000, sample_every=2_000)
    c.sample.update(method="ddim", num_steps=50, kind="v", num_samples=8)
    c.sample.options = dict(spacing="trailing")
    if arg == "short":
        c.data.update(name="moving_mnist_8f", frames=8)
        c.train.update(num_steps=6_000, keep_every=1_000, sample_every=1_000)
    if arg == "smoke":
        c.data.update(name="moving_mnist_tiny", frames=4)
        return base.smoke(c, **dict(base.SMOKE_UNET, head_dim=None))
    return c
