"""Class-conditional MNIST: the model shipped as ``jaxdiff.pretrained.load("mnist")``.

Command (chained runs of at most ~100 minutes; each resumes the last)::

  timeout -s TERM 100m python -m jaxdiff.train --config=configs/mnist_release.py \\
      --workdir=runs/mnist_release --config.data.data_dir=/path/to/tfds

Recipe (issue "Models worth showing"): a discrete cosine schedule of 1,024 steps (a power of
two, so progressive distillation can halve it down to one step), v-prediction (what
distillation needs), classifier-free guidance (label dropout 0.1), a 2-level U-Net with
attention at 7x7 (``unet_28x28``), EMA of the parameters (0.999 and 0.9999).

Choices made for the 2-core CPU budget: dropout 0 (the run sees each image a few times only,
far from overfitting, and the dropout masks cost ~9% of a step's time); batch 64 (per image
the step costs the same at 32 and 64, and more updates per image help a short run);
``prng_impl`` as measured in benchmarks/prng.py (results/prng_cpu.json).

``:smoke`` runs one tiny step. docs/pretrained.md records the time, hardware and FID.
"""

from jaxdiff.training import config as base

VARIANTS = ("smoke",)  # --config=configs/X.py:VARIANT


def get_config(arg=None):
    arg = base.check_variant(arg, VARIANTS)
    c = base.base()
    c.prng_impl = "threefry2x32"
    c.data.update(source="tfds", name="mnist", image_size=28, channels=1, batch_size=64)
    c.model.update(name="unet_28x28", num_classes=10)
    c.model.options.update(dropout=0.0)
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1024))
    c.loss.update(name="v", label_dropout=0.1)
    c.optim.update(lr=1e-3, warmup_steps=500, ema_decays=(0.999, 0.9999), ema_warmup=True)
    c.train.update(num_steps=40_000, log_every=50, checkpoint_every=250, keep_every=2_000)
    c.train.update(sample_every=2_000)
    c.sample.update(method="ddim", num_steps=50, kind="v", guidance=1.0, num_samples=100)
    c.sample.options = dict(spacing="trailing")
    return base.smoke(c, **base.SMOKE_UNET) if arg == "smoke" else c
