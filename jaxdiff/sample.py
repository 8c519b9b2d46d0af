"""Samples a trained run or a shipped model: ``python -m jaxdiff.sample --workdir=DIR
--out=FILE.png`` or ``python -m jaxdiff.sample --pretrained=mnist --label=7 --out=sevens.png``.

Reads the config stored with the newest good checkpoint in ``DIR/checkpoints``, restores
the EMA parameters (``--params=raw`` for the raw ones) and writes a PNG grid or an ``.npz``
of images in [-1, 1] (N, H, W, C) and labels. Example::

  python -m jaxdiff.sample --workdir=runs/mnist_cfg --method=ddim --num_steps=50 \\
      --num_samples=64 --guidance=3 --label=7 --out=sevens.png

A video run (clips (N, T, H, W, C)) also writes an animated ``.gif``, and predicts the
frames after the first ``--condition_frames`` of its test clips (reconstruction guidance,
``jaxdiff.video``; docs/video.md). A spoken-digits run also writes a ``.wav`` (Griffin-Lim;
docs/audio.md).

Bad input ends with one line ``error: ...`` (exit 2: wrong flags or values, e.g. a label
the model lacks; exit 1: no checkpoint, unwritable --out) before anything is written.
"""

import sys

import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags, pretrained

FLAGS = flags.FlagValues()
_cli.define_model_source(FLAGS)
flags.DEFINE_string(
    "out",
    None,
    "Output .png (grid), .npz (arrays), .gif (video runs) or .wav (audio runs).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "condition_frames",
    None,
    "Video: predict each test clip's frames after its first K (default: unconditional).",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "condition_weight", 2.0, "Video: reconstruction guidance weight w_r.", flag_values=FLAGS
)
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
flags.DEFINE_string(
    "prompt",
    None,
    "Text model: the prompt of every sample ('' is unconditional).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "negative_prompt", None, "Text model: what guidance steers away from.", flag_values=FLAGS
)
flags.DEFINE_string(
    "maps", None, "Map model: .npz whose 'semantic_map' (N, H, W, 1) are drawn.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "params", "ema", ["ema", "raw"], "EMA (first decay) or raw parameters.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["out"], flag_values=FLAGS)
OUTPUTS = (".png", ".npz", ".gif", ".wav")


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
    _cli.require(
        "latent" not in config,
        "this is a latent text / map model: give --prompt='a thin upright seven' (or --maps).",
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
    _xla_flags.prepare()  # before JAX starts its backends
    _cli.require(
        FLAGS.out.endswith(OUTPUTS),
        f"--out={FLAGS.out}: must end in .png or .npz (or .gif for a video run, .wav for an "
        "audio run).",
    )
    _cli.require(FLAGS.batch_size >= 1, f"--batch_size={FLAGS.batch_size}: must be >= 1.")
    _cli.check_writable_file(FLAGS.out, "--out")
    _cli.require_one_model_source(FLAGS.workdir, FLAGS.pretrained)
    if FLAGS.pretrained:
        _cli.check_pretrained(FLAGS.pretrained, ("pixel", "latent"))
    if FLAGS.pretrained in pretrained.available("latent"):
        images, labels, config = sample_latent(FLAGS.pretrained)
    elif FLAGS.pretrained:
        images, labels, config = sample_pretrained()
    elif FLAGS.prompt is not None or FLAGS.maps is not None:  # a latent text / map run
        _cli.check_run_dir(FLAGS.workdir)
        images, labels, config = sample_latent(FLAGS.workdir)
    else:
        images, labels, config = sample_run()
    write(images, labels, config)


def sample_latent(source: str):
    """(images, None, config) from a latent run or shipped latent model (``source``), for
    --prompt / --negative_prompt / --maps."""
    from jaxdiff import text2img

    _cli.require(FLAGS.label is None, "--label: a text / map model takes --prompt or --maps.")
    gen = text2img.load(source, FLAGS.params)
    images = text2img.sample_command(
        gen,
        FLAGS.num_samples,
        min(FLAGS.batch_size, FLAGS.num_samples),
        seed=FLAGS.seed,
        prompt=FLAGS.prompt,
        negative_prompt=FLAGS.negative_prompt,
        maps_file=FLAGS.maps,
        method=FLAGS.method,
        num_steps=FLAGS.num_steps,
        guidance=FLAGS.guidance,
        **sampler_options(),
    )
    return images, None, gen.run.config


def sampler_options() -> dict:
    """The --spacing and --clip_x0 options that were given."""
    options = {"spacing": FLAGS.spacing} if FLAGS.spacing else {}
    if FLAGS.clip_x0 is not None:
        options["clip_x0"] = FLAGS.clip_x0
    return options


def check_flags_against(config) -> None:
    """:func:`check_sampling_flags` and :func:`check_media_flags` with this command's flags."""
    check_sampling_flags(
        config, FLAGS.num_samples, FLAGS.num_steps, FLAGS.guidance, FLAGS.label, FLAGS.method
    )
    check_media_flags(config, FLAGS.out, FLAGS.condition_frames, FLAGS.condition_weight)


def check_media_flags(config, out: str, condition_frames, condition_weight) -> None:
    """Usage checks of the video / audio outputs and of prediction from given frames."""
    frames = config.data.get("frames", 0)
    _cli.require(
        not out.endswith(".gif") or frames,
        f"--out={out}: GIF output is for video runs (clips); use .png or .npz.",
    )
    _cli.require(
        not out.endswith(".wav") or config.data.source == "spoken_digits",
        f"--out={out}: WAV output is for spoken-digits (audio) runs; use .png or .npz.",
    )
    if condition_frames is None:
        return
    _cli.require(frames, "--condition_frames: only a video run predicts frames; leave it out.")
    _cli.require(
        1 <= condition_frames < frames,
        f"--condition_frames={condition_frames}: must be in 1..{frames - 1} for this run's "
        f"{frames}-frame clips.",
    )
    _cli.require(condition_weight >= 0, f"--condition_weight={condition_weight}: must be >= 0.")


def sample_pretrained():
    """(images, labels or None) from the shipped model --pretrained."""
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
    return images, labels, model.config


def sample_run():
    """(images, labels or None) from the newest good checkpoint of --workdir."""
    _cli.check_run_dir(FLAGS.workdir)
    import jax
    import jax.numpy as jnp

    from jaxdiff.training import components, restore

    run_ = restore.load_run(FLAGS.workdir, FLAGS.params)
    config, net, process, params = run_.config, run_.net, run_.process, run_.params
    check_flags_against(config)
    if FLAGS.condition_frames is not None:
        return predict_run(run_), None, config
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
    return images, labels, config


def predict_run(run_) -> np.ndarray:
    """Clips (N, T, H, W, C) continuing the first --condition_frames of N test clips; the
    given frames are kept as they are."""
    import jax

    from jaxdiff import video

    config = run_.config
    predict = video.make_predictor(
        config,
        run_.net,
        run_.process,
        method=FLAGS.method,
        num_steps=FLAGS.num_steps,
        weight=FLAGS.condition_weight,
    )
    known = video.first_clips(config, FLAGS.num_samples)
    mask = video.known_mask(known.shape[1], FLAGS.condition_frames)
    batch = min(FLAGS.batch_size, FLAGS.num_samples)
    predict = jax.jit(predict)
    out = []
    for i in range(0, FLAGS.num_samples, batch):
        part = known[i : i + batch]
        padded = np.concatenate([part, np.repeat(part[-1:], batch - len(part), 0)])
        key = jax.random.fold_in(jax.random.key(FLAGS.seed), i // batch)
        out.append(np.asarray(predict(run_.params, key, padded, mask))[: len(part)])
    return np.concatenate(out)


def write(images: np.ndarray, labels, config) -> None:
    """Writes samples in [-1, 1] to --out: a PNG grid (clips: one per row; spectrograms drawn
    with low frequencies at the bottom), an .npz, an animated GIF (clips) or a WAV
    (spectrograms through Griffin-Lim, 0.25 s apart)."""
    from jaxdiff.training import summaries

    if FLAGS.out.endswith(".png"):
        if config.data.source == "spoken_digits":  # spectrograms: low frequencies at the bottom
            images = images[:, ::-1]
        summaries.save_grid(images, FLAGS.out, upscale=4 if images.shape[-3] <= 32 else 1)
    elif FLAGS.out.endswith(".gif"):
        from jaxdiff import video

        video.write_gif(FLAGS.out, images)
    elif FLAGS.out.endswith(".wav"):
        from jaxdiff import audio
        from jaxdiff.data import spoken_digits

        spec = spoken_digits.SPEC
        waves = [audio.griffin_lim(image, spec) for image in images]
        audio.write_wav(FLAGS.out, waves, spec.sample_rate)
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
