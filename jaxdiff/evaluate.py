"""Evaluates a training run: ``python -m jaxdiff.evaluate --workdir=DIR --metrics=fid,kid``.

Samples with the chosen sampler (EMA parameters by default) in resumable shards under
``DIR/eval/<method>_<steps>_w<guidance>_<params>/``, computes the metrics against the
run's test split, prints a table and writes ``metrics_step<N>.json`` beside the shards.

  fid, kid  Frechet / kernel distance on Inception pool features (the converted FID
            Inception, see ``jaxdiff.evaluation.convert``) or, with --features=classifier,
            on the in-repo MNIST classifier's features (--classifier_dir).
  is        Inception Score over the classifier's logits (--classifier_dir).
  bpd       bits/dim of --num_bpd test images through the probability-flow ODE.

Example::

  python -m jaxdiff.evaluate --workdir=runs/mnist_cfg --metrics=fid,kid,is,bpd \\
      --features=classifier --classifier_dir=runs/mnist_classifier --num_samples=10000
"""

import os

from absl import app, flags, logging

from jaxdiff import _xla_flags

flags.DEFINE_string("workdir", None, "A training run's directory.")
flags.DEFINE_list("metrics", ["fid", "kid"], "Metrics: fid, kid, is, bpd.")
flags.DEFINE_integer("num_samples", 10_000, "Samples for FID/KID/IS (and test images).")
flags.DEFINE_integer("num_bpd", 256, "Test images for bits/dim.")
flags.DEFINE_string("method", None, "Sampler (default: the config's sample.method).")
flags.DEFINE_integer("num_steps", None, "Sampler steps (default: the config's).")
flags.DEFINE_float("guidance", None, "CFG weight w (default: the config's).")
flags.DEFINE_enum("params", "ema", ["ema", "raw"], "EMA (first decay) or raw parameters.")
flags.DEFINE_enum("features", "inception", ["inception", "classifier"], "FID/KID features.")
flags.DEFINE_string("classifier_dir", None, "A trained jaxdiff.evaluation.classifier run.")
flags.DEFINE_integer("shard_size", 500, "Samples per resumable shard.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def evaluate() -> None:
    import jax

    from jaxdiff.evaluation import run as run_lib
    from jaxdiff.training import components, restore

    metrics = run_lib.check_metrics(FLAGS.metrics)
    run = restore.load_run(FLAGS.workdir, FLAGS.params)
    s = run.config.sample
    method, num_steps = FLAGS.method or s.method, FLAGS.num_steps or s.num_steps
    w = s.guidance if FLAGS.guidance is None else FLAGS.guidance
    out_dir = os.path.join(
        FLAGS.workdir, "eval", run_lib.tag_for(method, num_steps, w, FLAGS.params)
    )
    results = {"step": run.step, "method": method, "num_steps": num_steps, "guidance": w}
    reference, labels = run_lib.reference_images(run.config, max(FLAGS.num_samples, FLAGS.num_bpd))
    if set(metrics) - {"bpd"}:
        sample_fn = jax.jit(
            components.make_sampler(
                run.config, run.net, run.process, method=method, num_steps=num_steps, guidance=w
            )
        )
        samples = run_lib.generate_samples(
            sample_fn,
            run.params,
            out_dir,
            FLAGS.num_samples,
            run_lib.labels_for(run.config),
            FLAGS.shard_size,
            FLAGS.seed,
        )
        fns = run_lib.feature_and_logit_fns(FLAGS.features, FLAGS.classifier_dir)
        results.update(
            run_lib.sample_metrics(metrics, samples, reference[: FLAGS.num_samples], *fns)
        )
    if "bpd" in metrics:
        n = FLAGS.num_bpd
        results.update(run_lib.bits_per_dim(run, reference[:n], labels[:n], FLAGS.seed))
    os.makedirs(out_dir, exist_ok=True)
    print(run_lib.write_report(results, os.path.join(out_dir, f"metrics_step{run.step}.json")))


def main(argv) -> None:
    del argv
    _xla_flags.apply_cpu_defaults()  # before JAX starts its backends
    logging.set_verbosity(logging.WARNING)
    try:
        evaluate()
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    app.run(main)
