"""Evaluates a training run or a shipped model: ``python -m jaxdiff.evaluate --workdir=DIR``
or ``python -m jaxdiff.evaluate --pretrained=mnist --data_dir=TFDS``.

Samples with the chosen sampler (EMA parameters by default; a shipped model's own weights
and default sampler with --pretrained) in resumable shards under
``DIR/eval/<method>_<steps>_w<guidance>_<params>/`` (``--out_dir/<tag>/`` for a shipped
model), computes the metrics against the test split, prints a table and writes
``metrics_step<N>_n<num_samples>.json`` beside the shards.

  fid, kid  Frechet / kernel distance on Inception pool features (the converted FID
            Inception, see ``jaxdiff.evaluation.convert``) or, with --features=classifier,
            on the in-repo MNIST classifier's features (--classifier_dir).
  is        Inception Score over the classifier's logits (--classifier_dir).
  acc       the classifier's accuracy on the requested classes (--classifier_dir).
  bpd       bits/dim of --num_bpd test images through the probability-flow ODE.

Example::

  python -m jaxdiff.evaluate --workdir=runs/mnist_cfg --metrics=fid,kid,is,bpd \\
      --features=classifier --classifier_dir=runs/mnist_classifier --num_samples=10000
  python -m jaxdiff.evaluate --pretrained=mnist --data_dir=/path/to/tfds \\
      --metrics=fid,acc --classifier_dir=runs/mnist_classifier --out_dir=runs/eval_mnist

With --quantize=int8 on the CPU the command works in two processes: int8 convolutions are
slow under jaxdiff's XLA:CPU convolution flag (``jaxdiff._xla_flags``) and Inception is
slow without it, so this process draws the shards without the flag and a fresh one, with
it, scores them (every shard is on disk by then, so nothing int8 runs there).
"""

import os
import subprocess
import sys

from absl import flags

from jaxdiff import _cli, _xla_flags, pretrained

FLAGS = flags.FlagValues()
_cli.define_model_source(FLAGS)
flags.DEFINE_string(
    "out_dir", "eval", "With --pretrained: where the shards and metrics go.", flag_values=FLAGS
)
flags.DEFINE_string(
    "data_dir", None, "TFDS data dir of the test images (default: the config's).", flag_values=FLAGS
)
flags.DEFINE_list("metrics", ["fid", "kid"], "Metrics: fid, kid, is, acc, bpd.", flag_values=FLAGS)
flags.DEFINE_integer(
    "num_samples", 10_000, "Samples for FID/KID/IS (and test images).", flag_values=FLAGS
)
flags.DEFINE_integer("num_bpd", 256, "Test images for bits/dim.", flag_values=FLAGS)
flags.DEFINE_string(
    "method", None, "Sampler (default: the config's sample.method).", flag_values=FLAGS
)
flags.DEFINE_integer("num_steps", None, "Sampler steps (default: the config's).", flag_values=FLAGS)
flags.DEFINE_float("guidance", None, "CFG weight w (default: the config's).", flag_values=FLAGS)
flags.DEFINE_enum(
    "params", "ema", ["ema", "raw"], "EMA (first decay) or raw parameters.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "features", "inception", ["inception", "classifier"], "FID/KID features.", flag_values=FLAGS
)
flags.DEFINE_string(
    "classifier_dir", None, "A trained jaxdiff.evaluation.classifier run.", flag_values=FLAGS
)
flags.DEFINE_integer("shard_size", 500, "Samples per resumable shard.", flag_values=FLAGS)
flags.DEFINE_enum(
    "quantize",
    "none",
    ["none", "int8"],
    "int8: sample with the network in int8 (qwix W8A8, jaxdiff.export.qwix_int8; needs the "
    "export extra).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("seed", 0, "Sampling seed.", flag_values=FLAGS)
flags.DEFINE_bool(
    "score_only",
    False,
    "Score the sample shards already on disk and draw none (a missing shard is an error); "
    "the int8 scoring process runs with it, so it neither quantises nor samples.",
    flag_values=FLAGS,
)
flags.DEFINE_multi_string(
    "option",
    [],
    "A sampler option KEY=VALUE, repeatable (e.g. sigma_min=0.8 for two consistency "
    "steps); it joins the shard folder's name.",
    flag_values=FLAGS,
)
_cli.define_verbose(FLAGS)


def preflight(metrics: list[str]) -> None:
    """Checks counts, weights and folders before any sampling (minutes saved on a mistake)."""
    from jaxdiff.evaluation import convert
    from jaxdiff.evaluation import run as run_lib

    _cli.require(FLAGS.num_samples >= 2, f"--num_samples={FLAGS.num_samples}: must be >= 2.")
    _cli.require(FLAGS.shard_size >= 1, f"--shard_size={FLAGS.shard_size}: must be >= 1.")
    _cli.require(FLAGS.num_bpd >= 1, f"--num_bpd={FLAGS.num_bpd}: must be >= 1.")
    needs_classifier = FLAGS.features == "classifier" or {"is", "acc"} & set(metrics)
    _cli.require(
        FLAGS.classifier_dir or not needs_classifier,
        "--classifier_dir is needed for --features=classifier and the 'is' and 'acc' "
        "metrics (a trained jaxdiff.evaluation.classifier run).",
    )
    if FLAGS.classifier_dir and not os.path.isdir(FLAGS.classifier_dir):
        raise ValueError(f"--classifier_dir={FLAGS.classifier_dir}: no such folder.")
    if FLAGS.features == "inception" and {"fid", "kid"} & set(metrics):
        if not os.path.isfile(convert.default_path()):
            convert.load_params()  # raises with the message that says how to convert
    if FLAGS.quantize == "int8":
        import importlib.util

        if importlib.util.find_spec("qwix") is None:
            raise ValueError(
                "--quantize=int8 needs qwix: pip install 'jaxdiff[export]' (or pip install qwix)."
            )
    try:
        run_lib.parse_options(FLAGS.option)
    except ValueError as e:
        raise _cli.UsageError(f"--option: {e}") from None
    if FLAGS.pretrained:
        _cli.check_pretrained(FLAGS.pretrained)
        return
    _cli.check_run_dir(FLAGS.workdir)
    if not os.access(FLAGS.workdir, os.W_OK | os.X_OK):
        raise ValueError(f"--workdir={FLAGS.workdir}: not writable (results go to its eval/).")


def load_target():
    """(run, params tag, shard root) of --workdir or --pretrained."""
    from jaxdiff.training import restore

    if FLAGS.pretrained:
        model = pretrained.load(FLAGS.pretrained)
        run, tag, root = model.as_run(), "shipped", os.path.join(FLAGS.out_dir, FLAGS.pretrained)
    else:
        run = restore.load_run(FLAGS.workdir, FLAGS.params)
        tag, root = FLAGS.params, os.path.join(FLAGS.workdir, "eval")
    if FLAGS.data_dir:
        run.config.data.data_dir = FLAGS.data_dir
    return run, tag, root


def evaluate(score: bool = True) -> None:
    """Samples, then (``score``) computes and writes the metrics."""
    from jaxdiff.evaluation import run as run_lib
    from jaxdiff.sample import check_sampling_flags

    _cli.require_one_model_source(FLAGS.workdir, FLAGS.pretrained)
    try:
        metrics = run_lib.check_metrics(FLAGS.metrics)
    except ValueError as e:
        raise _cli.UsageError(f"--metrics: {e}") from None
    preflight(metrics)
    run, params_tag, root = load_target()
    if FLAGS.quantize == "int8":
        run, params_tag = quantized(run), params_tag + "_int8"
    check_sampling_flags(
        run.config, FLAGS.num_samples, FLAGS.num_steps, FLAGS.guidance, None, FLAGS.method
    )
    s = run.config.sample
    method, num_steps = FLAGS.method or s.method, FLAGS.num_steps or s.num_steps
    w = s.guidance if FLAGS.guidance is None else FLAGS.guidance
    options = run_lib.parse_options(FLAGS.option)
    tag = run_lib.tag_for(method, num_steps, w, params_tag, options)
    out_dir = os.path.join(root, tag)
    results = {"step": run.step, "method": method, "num_steps": num_steps, "guidance": w}
    reference, labels = run_lib.reference_images(run.config, max(FLAGS.num_samples, FLAGS.num_bpd))
    if set(metrics) - {"bpd"}:
        sample_fn = make_sample_fn(run, method, num_steps, w, options)
        labels_fn = run_lib.labels_for(run.config)
        n, shard = FLAGS.num_samples, FLAGS.shard_size
        samples = run_lib.generate_samples(
            sample_fn, run.params, out_dir, n, labels_fn, shard, FLAGS.seed
        )
        if not score:  # the shards are on disk; a fresh process scores them
            return
        feature_fn, logits_fn = run_lib.feature_and_logit_fns(FLAGS.features, FLAGS.classifier_dir)
        asked = run_lib.shard_labels(labels_fn, n, shard)
        # Inception features are kept (the classifier's are cheap and its weights may change)
        inception = FLAGS.features == "inception"
        cache = (os.path.join(root, "features"), "inception") if inception else None
        shared = run_lib.shared_reference_dir() if inception else None
        results.update(
            run_lib.sample_metrics(
                metrics, samples, reference[:n], feature_fn, logits_fn, asked, cache, shared
            )
        )
    if not score:  # bpd only: it is computed with the scores
        return
    if "bpd" in metrics:
        n = FLAGS.num_bpd
        results.update(run_lib.bits_per_dim(run, reference[:n], labels[:n], FLAGS.seed))
    os.makedirs(out_dir, exist_ok=True)
    name = f"metrics_step{run.step}_n{FLAGS.num_samples}.json"  # a smaller run keeps a larger's
    print(run_lib.write_report(results, os.path.join(out_dir, name)))


def make_sample_fn(run, method: str, num_steps: int, guidance, options: dict):
    """The jitted ``(params, key, labels) -> images`` (:func:`no_sampling` under
    --score_only)."""
    if FLAGS.score_only:
        return no_sampling
    from jaxdiff.training import components

    return components.jitted_sampler(
        run, method=method, num_steps=num_steps, guidance=guidance, **options
    )


def quantized(run):
    """``run`` with its network in int8 (qwix W8A8); as it is under --score_only, where
    the int8 network drew the shards already and nothing runs it (bits/dim aside)."""
    if FLAGS.score_only and "bpd" not in FLAGS.metrics:
        return run
    from jaxdiff.export import qwix_int8

    return qwix_int8.quantize_run(run, "w8a8")


def no_sampling(params, key, labels):
    """The sampler of --score_only: every shard must already be on disk."""
    raise RuntimeError(
        "--score_only: a sample shard is missing from the eval folder; rerun without "
        "--score_only to draw it."
    )


def scores_elsewhere(int8: bool, environ=os.environ) -> bool:
    """True when an int8 run should score in a fresh process: the convolution flag that
    int8 sampling leaves out would apply there (``_xla_flags.apply_cpu_defaults``)."""
    return int8 and _xla_flags.apply_cpu_defaults(dict(environ))


def scoring_command(argv: list[str], environ=os.environ) -> tuple[list[str], dict]:
    """(command, environment) of the fresh process that scores with the flag on."""
    env = dict(environ)
    _xla_flags.apply_cpu_defaults(env)
    return [sys.executable, "-m", "jaxdiff.evaluate", *argv, "--score_only"], env


def run(argv: list[str]) -> None:
    int8 = FLAGS.quantize == "int8"
    elsewhere = scores_elsewhere(int8)
    _xla_flags.prepare(int8=int8)  # before JAX starts its backends
    evaluate(score=not elsewhere)
    if elsewhere:
        print("int8 samples done; scoring them in a fresh process with the convolution flag")
        command, env = scoring_command(argv)
        subprocess.run(command, env=env, check=True)


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _cli.run_absl(lambda: run(argv), FLAGS, argv, "jaxdiff.evaluate", doc=__doc__)


if __name__ == "__main__":
    main()
