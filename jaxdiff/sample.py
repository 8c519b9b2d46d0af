"""Samples a trained run or a shipped model: ``python -m jaxdiff.sample --workdir=DIR
--out=FILE.png`` or ``python -m jaxdiff.sample --pretrained=mnist --label=7 --out=sevens.png``.

Reads the config stored with the newest good checkpoint in ``DIR/checkpoints``, restores
the EMA parameters (``--params=raw`` for the raw ones) and writes a PNG grid or an ``.npz``
of images in [-1, 1] (N, H, W, C) and labels. Example::

  python -m jaxdiff.sample --workdir=runs/mnist_cfg --method=ddim --num_steps=50 \\
      --num_samples=64 --guidance=3 --label=7 --out=sevens.png

Bad input ends with one line ``error: ...`` (exit 2: wrong flags or values, e.g. a label
the model lacks; exit 1: no checkpoint, unwritable --out) before anything is written.
"""

import os
import sys

import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags, pretrained

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "A training run's directory.", flag_values=FLAGS)
_cli.define_pretrained(FLAGS)
flags.DEFINE_string("out", None, "Output .png (grid) or .npz (arrays).", flag_values=FLAGS)
flags.DEFINE_string(
    "method", None, "Sampler (default: the config's sample.method).", flag_values=FLAGS
)
flags.DEFINE_integer("num_steps", None, "Sampler steps (default: the config's).", flag_values=FLAGS)
flags.DEFINE_integer("num_samples", 64, "Number of samples.", flag_values=FLAGS)
flags.DEFINE_integer(
    "batch_size", 256, "Samples per sampler call (one compile).", flag_values=FLAGS
)
flags.DEFINE_float(
    "guidance", None, "CFG weight w (eps = (1+w) eps(x|y) - w eps(x|null)).", flag_values=FLAGS
)
flags.DEFINE_enum(
    "spacing",
    None,
    ["leading", "trailing", "linspace"],
    "Discrete grid spacing (default: the config's sample.options).",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "clip_x0",
    None,
    "ddpm/ddim: clip predicted x0 to [-c, c] (1 for [-1, 1] data).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "label", None, "Class of every sample (default: 0, 1, 2, ... cycling).", flag_values=FLAGS
)
flags.DEFINE_integer("seed", 0, "Sampling seed.", flag_values=FLAGS)
flags.DEFINE_enum(
    "params", "ema", ["ema", "raw"], "EMA (first decay) or raw parameters.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["out"], flag_values=FLAGS)


def check_run_dir(workdir: str) -> None:
    """Raises ValueError (exit 1) unless ``workdir`` holds a checkpoints folder.

    Creates nothing (restoring would create an empty ``checkpoints`` folder).
    """
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise ValueError(
            f"--workdir={workdir}: no checkpoints folder there; train first (python -m "
            "jaxdiff.train) or point --workdir at a training run."
        )


def check_sampling_flags(config, num_samples, num_steps, guidance, label, method) -> None:
    """Usage checks against the run's config: counts, steps, method, guidance and label."""
    from jaxdiff import samplers
    from jaxdiff.training import components

    _cli.require(num_samples >= 1, f"--num_samples={num_samples}: must be >= 1.")
    _cli.require(num_steps is None or num_steps >= 1, f"--num_steps={num_steps}: must be >= 1.")
    _cli.require(
        method is None or method in samplers.METHODS,
        f"--method={method}: unknown sampler; valid: {', '.join(sorted(samplers.METHODS))}.",
    )
    classes = components.num_classes(config)
    if not classes:
        _cli.require(
            not guidance,
            f"--guidance={guidance}: this model is unconditional (no classes); leave it out.",
        )
        _cli.require(label is None, f"--label={label}: this model is unconditional; leave it out.")
        return
    _cli.require(guidance is None or guidance >= 0, f"--guidance={guidance}: must be >= 0.")
    _cli.require(
        label is None or 0 <= label < classes,
        f"--label={label}: this model has {classes} classes; use 0..{classes - 1}.",
    )


def run() -> None:
    _xla_flags.apply_cpu_defaults()  # before JAX starts its backends
    _cli.require(
        FLAGS.out.endswith((".png", ".npz")), f"--out={FLAGS.out}: must end in .png or .npz."
    )
    _cli.require(FLAGS.batch_size >= 1, f"--batch_size={FLAGS.batch_size}: must be >= 1.")
    _cli.check_writable_file(FLAGS.out, "--out")
    _cli.require(
        (FLAGS.workdir is None) != (FLAGS.pretrained is None),
        "give exactly one of --workdir (a training run) and --pretrained (a shipped model).",
    )
    if FLAGS.pretrained:
        images, labels = sample_pretrained()
    else:
        images, labels = sample_run()
    write(images, labels)


def sampler_options() -> dict:
    """The --spacing and --clip_x0 options that were given."""
    options = {"spacing": FLAGS.spacing} if FLAGS.spacing else {}
    if FLAGS.clip_x0 is not None:
        options["clip_x0"] = FLAGS.clip_x0
    return options


def check_flags_against(config) -> None:
    """:func:`check_sampling_flags` with this command's flags."""
    check_sampling_flags(
        config, FLAGS.num_samples, FLAGS.num_steps, FLAGS.guidance, FLAGS.label, FLAGS.method
    )


def sample_pretrained():
    """(images, labels or None) from the shipped model --pretrained."""
    _cli.check_pretrained(FLAGS.pretrained)
    model = pretrained.load(FLAGS.pretrained)
    check_flags_against(model.config)
    method = FLAGS.method or model.config.sample.method
    labels = model.labels_for(FLAGS.num_samples, FLAGS.label)
    batch = min(FLAGS.batch_size, FLAGS.num_samples)
    options = dict(method=FLAGS.method, num_steps=FLAGS.num_steps, guidance=FLAGS.guidance)

    def sample(params, key, lab):
        del params  # the model holds its own
        return model.sample(key, batch, lab, **options, **sampler_options())

    desc = f"sampling {FLAGS.num_samples} from {FLAGS.pretrained} ({method})"
    images = draw(sample, None, labels, FLAGS.num_samples, batch, FLAGS.seed, desc)
    return images, labels


def sample_run():
    """(images, labels or None) from the newest good checkpoint of --workdir."""
    check_run_dir(FLAGS.workdir)
    import jax
    import jax.numpy as jnp

    from jaxdiff.training import components, restore

    run_ = restore.load_run(FLAGS.workdir, FLAGS.params)
    config, net, process, params = run_.config, run_.net, run_.process, run_.params
    check_flags_against(config)
    labels = components.sample_labels(config, FLAGS.num_samples)
    if labels is not None and FLAGS.label is not None:
        labels = jnp.full((FLAGS.num_samples,), FLAGS.label, jnp.int32)
    batch = min(FLAGS.batch_size, FLAGS.num_samples)
    config.sample.num_samples = batch
    sample = components.make_sampler(
        config,
        net,
        process,
        method=FLAGS.method,
        num_steps=FLAGS.num_steps,
        guidance=FLAGS.guidance,
        **sampler_options(),
    )
    steps = FLAGS.num_steps or config.sample.num_steps
    desc = f"sampling {FLAGS.num_samples} ({FLAGS.method or config.sample.method}, {steps} steps)"
    images = draw(jax.jit(sample), params, labels, FLAGS.num_samples, batch, FLAGS.seed, desc)
    return images, labels


def write(images: np.ndarray, labels) -> None:
    """Writes images (N, H, W, C) in [-1, 1] to --out as a PNG grid or an .npz."""
    from jaxdiff.training import summaries

    if FLAGS.out.endswith(".png"):
        summaries.save_grid(images, FLAGS.out, upscale=4 if images.shape[1] <= 32 else 1)
    else:
        labels = np.asarray(labels if labels is not None else [])
        np.savez(FLAGS.out, images=images, labels=labels)
    print(f"wrote {images.shape[0]} samples to {FLAGS.out}")


def draw(sample, params, labels, num: int, batch: int, seed: int, desc: str) -> np.ndarray:
    """``num`` images in batches of ``batch`` (one compile) under a labelled progress bar.

    One batch uses ``key(seed)`` itself (as before batching); batch i of several uses
    ``fold_in(key(seed), i)``.
    """
    import jax
    import tqdm

    root, count = jax.random.key(seed), -(-num // batch)
    out = []
    for i in tqdm.trange(count, desc=desc, unit="batch", file=sys.stderr):
        lab = None
        if labels is not None:
            lab = np.resize(np.asarray(labels[i * batch : (i + 1) * batch]), batch)
        key = root if count == 1 else jax.random.fold_in(root, i)
        out.append(np.asarray(sample(params, key, lab)))
    return np.concatenate(out)[:num]


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.sample", doc=__doc__)


if __name__ == "__main__":
    main()
