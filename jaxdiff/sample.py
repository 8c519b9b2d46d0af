"""Samples a trained run or a shipped model: ``python -m jaxdiff.sample --workdir=DIR
--out=FILE.png`` or ``python -m jaxdiff.sample --pretrained=mnist --label=7 --out=sevens.png``.

Reads the config stored with the newest checkpoint in ``DIR/checkpoints``, restores the
EMA parameters (``--params=raw`` for the raw ones) and writes a PNG grid or an ``.npz`` of
images in [-1, 1] (N, H, W, C) and labels. Example::

  python -m jaxdiff.sample --workdir=runs/mnist_cfg --method=ddim --num_steps=50 \\
      --num_samples=64 --guidance=3 --label=7 --out=sevens.png
"""

import numpy as np
from absl import app, flags, logging

from jaxdiff import _xla_flags, pretrained

flags.DEFINE_string("workdir", None, "A training run's directory.")
flags.DEFINE_string(
    "pretrained",
    None,
    "A model shipped with jaxdiff instead of --workdir; one of: "
    f"{', '.join(pretrained.available()) or '(none installed)'}.",
)
flags.DEFINE_string("out", None, "Output .png (grid) or .npz (arrays).")
flags.DEFINE_string("method", None, "Sampler (default: the config's sample.method).")
flags.DEFINE_integer("num_steps", None, "Sampler steps (default: the config's).")
flags.DEFINE_integer("num_samples", 64, "Number of samples.")
flags.DEFINE_float("guidance", None, "CFG weight w (eps = (1+w) eps(x|y) - w eps(x|null)).")
flags.DEFINE_enum(
    "spacing",
    None,
    ["leading", "trailing", "linspace"],
    "Discrete grid spacing (default: the config's sample.options).",
)
flags.DEFINE_float("clip_x0", None, "ddpm/ddim: clip predicted x0 to [-c, c] (1 for [-1, 1] data).")
flags.DEFINE_integer("label", None, "Class of every sample (default: 0, 1, 2, ... cycling).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_enum("params", "ema", ["ema", "raw"], "EMA (first decay) or raw parameters.")
flags.mark_flags_as_required(["out"])
flags.register_multi_flags_validator(
    ["workdir", "pretrained"],
    lambda f: (f["workdir"] is None) != (f["pretrained"] is None),
    "give exactly one of --workdir (a training run) and --pretrained (a shipped model).",
)
FLAGS = flags.FLAGS


def main(argv) -> None:
    del argv
    _xla_flags.apply_cpu_defaults()  # before JAX starts its backends
    logging.set_verbosity(logging.WARNING)
    try:
        run()
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}") from None


def run() -> None:
    import jax
    import jax.numpy as jnp

    from jaxdiff.training import components, restore

    if not FLAGS.out.endswith((".png", ".npz")):
        raise ValueError(f"--out must end in .png or .npz; got {FLAGS.out!r}.")
    options = {"spacing": FLAGS.spacing} if FLAGS.spacing else {}
    if FLAGS.clip_x0 is not None:
        options["clip_x0"] = FLAGS.clip_x0
    if FLAGS.pretrained:
        model = pretrained.load(FLAGS.pretrained)
        labels = None if not model.num_classes else FLAGS.label
        images = model.sample(
            jax.random.key(FLAGS.seed),
            FLAGS.num_samples,
            labels,
            method=FLAGS.method,
            num_steps=FLAGS.num_steps,
            guidance=FLAGS.guidance,
            **options,
        )
        write(np.asarray(images), None if labels is None else np.full(FLAGS.num_samples, labels))
        return
    run_ = restore.load_run(FLAGS.workdir, FLAGS.params)
    config, net, process, params = run_.config, run_.net, run_.process, run_.params
    labels = components.sample_labels(config, FLAGS.num_samples)
    if labels is not None and FLAGS.label is not None:
        labels = jnp.full((FLAGS.num_samples,), FLAGS.label, jnp.int32)
    config.sample.num_samples = FLAGS.num_samples
    sample = components.make_sampler(
        config,
        net,
        process,
        method=FLAGS.method,
        num_steps=FLAGS.num_steps,
        guidance=FLAGS.guidance,
        **options,
    )
    images = np.asarray(jax.jit(sample)(params, jax.random.key(FLAGS.seed), labels))
    write(images, None if labels is None else np.asarray(labels))


def write(images: np.ndarray, labels) -> None:
    """Writes images (N, H, W, C) in [-1, 1] to --out as a PNG grid or an .npz."""
    from jaxdiff.training import summaries

    if FLAGS.out.endswith(".png"):
        summaries.save_grid(images, FLAGS.out, upscale=4 if images.shape[1] <= 32 else 1)
    else:
        np.savez(FLAGS.out, images=images, labels=np.asarray(labels if labels is not None else []))
    print(f"wrote {images.shape[0]} samples to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
