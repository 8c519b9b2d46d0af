"""The base training config that every file in configs/ starts from and overrides.

A config file defines ``get_config(arg=None)``; ``arg == "smoke"`` gives a tiny variant for
tests (``--config=configs/X.py:smoke``). :func:`base` holds every field (ml_collections
rejects unknown fields given on the command line) and :func:`smoke` shrinks a config to one
training step.
"""

import ml_collections

from jaxdiff._cli import UsageError


def check_variant(arg: str | None, variants: tuple[str, ...]) -> str | None:
    """``arg`` (None or "" for the full config) if it is one of ``variants``.

    Raises:
      UsageError: an unknown variant (the message lists the valid ones).
    """
    if arg in (None, ""):
        return None
    if arg not in variants:
        valid = ", ".join(f":{v}" for v in variants)
        raise UsageError(f"unknown config variant {arg!r}; valid: none (the full config), {valid}.")
    return arg


def base() -> ml_collections.ConfigDict:
    """Every field a training run reads, with defaults for MNIST-sized DDPM."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # PRNG implementation of every key of the run ("threefry2x32", "rbg", "unsafe_rbg");
    # recorded in checkpoints and shipped models. benchmarks/prng.py measures the choice.
    c.prng_impl = "threefry2x32"
    c.data = dict(
        # "tfds", "digits" (sklearn, embedded), "latents" (.npz), "shapes3d", "moving_mnist",
        # "spoken_digits" (data.sources.SOURCES)
        source="tfds",
        name="mnist",  # TFDS name (for "shapes3d": a data.shapes3d.DATASETS name)
        split="train",
        data_dir="",  # TFDS directory; "" -> $TFDS_DATA_DIR or TFDS's default
        path="",  # .npz file of the "latents" source ("{split}" is substituted)
        batch_size=128,  # global, over all hosts and devices
        image_size=28,
        channels=1,
        frames=0,  # > 0: clips (T, H, W, C) of this many frames (video); 0: images
        downsample=1,  # > 1: average f x f blocks of the source images (28x28 -> 14x14 at 2)
        flip=False,
        num_threads=2,
    )
    c.model = dict(
        name="unet_28x28",  # a models.PRESETS name
        num_classes=0,  # 0: unconditional; else the null label is num_classes
        learn_sigma=False,  # the network returns 2C channels (prediction, v)
        dtype="float32",  # compute dtype, e.g. "bfloat16"
        options=ml_collections.ConfigDict(),  # other models.create overrides
    )
    c.process = dict(
        kind="schedule",  # "schedule" (discrete) or "sde" (continuous)
        name="linear",
        params=ml_collections.ConfigDict(),  # constructor arguments, e.g. num_steps
    )
    c.loss = dict(
        name="eps",  # losses.make_loss name
        options=ml_collections.ConfigDict(),
        noise_level="t1000",  # how t reaches the network (denoiser.NOISE_LEVELS)
        label_dropout=0.0,  # classifier-free guidance: p(label -> null)
        importance_bins=0,  # > 0: importance-sample t (time_sampling.importance_*)
        importance_history=10,
    )
    c.optim = dict(
        name="adam",
        lr=2e-4,
        warmup_steps=0,
        clip_norm=1.0,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        ema_decays=(0.9999,),
        ema_warmup=False,
        grad_accum=1,
    )
    c.train = dict(
        num_steps=10_000,
        log_every=50,
        checkpoint_every=1_000,
        keep_last=3,
        keep_every=0,  # also keep every K-th step (0: none)
        async_checkpoint=True,
        sample_every=2_000,  # PNG grids in WORKDIR/samples (0: never)
        progress=True,
    )
    c.sample = dict(
        method="ddim",
        num_steps=50,
        num_samples=64,
        kind="eps",  # what the network predicts (parametrization.KINDS)
        guidance=0.0,  # w in eps = (1 + w) eps(x|y) - w eps(x|null)
        # samplers.sample options. "leading" spacing (diffusers' DDIM default) starts a
        # respaced discrete grid below the last step: a cosine schedule's last alpha_bar is
        # ~1e-8, and DDIM from there blows small eps errors up to +-1 unless x0 is clipped
        # (add clip_x0=1.0 to these options for trailing spacing).
        options=ml_collections.ConfigDict(dict(spacing="leading")),
    )
    return ml_collections.ConfigDict(c)


def release(dataset: str) -> ml_collections.ConfigDict:
    """The recipe of the models shipped in ``jaxdiff/weights`` (configs/*_release.py).

    Class-conditional 28x28 U-Net (``unet_28x28``, 1.6M parameters, dropout 0), discrete
    cosine schedule of 1,024 steps, v-prediction, label dropout 0.1 for classifier-free
    guidance, Adam 1e-3 (500 warmup steps), EMAs 0.999 and 0.9999, batch 64; DDIM 50
    (trailing spacing) as the sampler of the in-run grids.

    Args:
      dataset: the TFDS name ("mnist" or "fashion_mnist").
    """
    c = base()
    c.data.update(source="tfds", name=dataset, image_size=28, channels=1, batch_size=64)
    c.model.update(name="unet_28x28", num_classes=10)
    c.model.options.update(dropout=0.0)
    c.process.update(kind="schedule", name="cosine", params=dict(num_steps=1024))
    c.loss.update(name="v", label_dropout=0.1)
    c.optim.update(lr=1e-3, warmup_steps=500, ema_decays=(0.999, 0.9999), ema_warmup=True)
    c.train.update(num_steps=40_000, log_every=50, checkpoint_every=250, keep_every=2_000)
    c.train.update(sample_every=2_000)
    c.sample.update(method="ddim", num_steps=50, kind="v", guidance=1.0, num_samples=100)
    c.sample.options = dict(spacing="trailing")
    return c


def smoke(c: ml_collections.ConfigDict, **model_options) -> ml_collections.ConfigDict:
    """Shrinks ``c`` to a one-step run of a tiny network (for tests on mock data).

    Args:
      c: a full config.
      **model_options: ``models.create`` overrides that make the network tiny.
    """
    c.data.batch_size = 8
    c.data.num_threads = 0
    c.model.options.update(model_options)
    c.train.update(num_steps=1, log_every=1, checkpoint_every=1, sample_every=0, progress=False)
    c.sample.update(num_steps=2, num_samples=4)
    return c


# Tiny networks for the smoke variants (one step on mock data in the tests).
SMOKE_UNET = dict(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=4)
SMOKE_DIT = dict(hidden=32, depth=1, num_heads=2)
