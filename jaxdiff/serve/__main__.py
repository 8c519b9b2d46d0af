"""Serves a model over HTTP: ``python -m jaxdiff.serve --pretrained=mnist`` (or
``--workdir=DIR``), then open http://127.0.0.1:8000/.

Binds 127.0.0.1 by default. Any other --host needs a bearer token (--token or the
``JAXDIFF_SERVE_TOKEN`` environment variable): the command refuses to start without one.
With --sr (repeatable) it serves a cascade: the model, then each super-resolution stage,
previews streamed stage by stage. Requests are batched (--batch_sizes, --max_wait_ms),
capped (--max_images, --max_steps, --max_guidance, --max_queue), watermarked
(--watermark_key) and filtered (--blocked_words, --blocked_classes with --classifier_dir).
docs/serving.md has the endpoints and the load test. Example::

  python -m jaxdiff.serve --pretrained=mnist --port=8000
  curl -s localhost:8000/v1/generate -d '{"label": 7, "quality": "draft"}'
"""

import logging
import os

from absl import flags

from jaxdiff import _cli, _xla_flags

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

FLAGS = flags.FlagValues()
_cli.define_model_source(FLAGS)
flags.DEFINE_string(
    "host", "127.0.0.1", "Address to bind (non-local needs a token).", flag_values=FLAGS
)
flags.DEFINE_integer("port", 8000, "Port.", flag_values=FLAGS)
flags.DEFINE_string(
    "token", None, "Bearer token for /v1/ (default: $JAXDIFF_SERVE_TOKEN).", flag_values=FLAGS
)
flags.DEFINE_list("batch_sizes", ["1", "4", "16"], "Padded batch sizes.", flag_values=FLAGS)
flags.DEFINE_float("max_wait_ms", 20.0, "How long a batch waits to fill.", flag_values=FLAGS)
flags.DEFINE_integer("max_queue", 256, "Requests waiting before 503.", flag_values=FLAGS)
flags.DEFINE_integer("max_images", 16, "Images per request.", flag_values=FLAGS)
flags.DEFINE_integer("max_steps", 100, "Sampler steps per request.", flag_values=FLAGS)
flags.DEFINE_float("max_guidance", 10.0, "Largest guidance weight.", flag_values=FLAGS)
flags.DEFINE_integer(
    "watermark_key", 0, "Key of the invisible watermark; -1 turns it off.", flag_values=FLAGS
)
flags.DEFINE_list("blocked_words", [], "Prompt words the filter refuses.", flag_values=FLAGS)
flags.DEFINE_list(
    "blocked_classes",
    [],
    "Classes whose images are withheld (needs --classifier_dir).",
    flag_values=FLAGS,
)
flags.DEFINE_string("classifier_dir", None, "The in-repo classifier (filter).", flag_values=FLAGS)
flags.DEFINE_multi_string(
    "sr",
    [],
    "Super-resolution stages after the model (run directory or shipped name), in order: "
    "serves the cascade, previews streamed stage by stage.",
    flag_values=FLAGS,
)
flags.DEFINE_bool("warmup", True, "Compile the default program before serving.", flag_values=FLAGS)
_cli.define_verbose(FLAGS)


def check_flags() -> None:
    """Usage checks that need no model (exit 2 before anything loads)."""
    _cli.require_one_model_source(FLAGS.workdir, FLAGS.pretrained)
    token = FLAGS.token or os.environ.get("JAXDIFF_SERVE_TOKEN")
    _cli.require(
        FLAGS.host in LOCAL_HOSTS or bool(token),
        f"--host={FLAGS.host} binds beyond this machine: give a bearer token (--token or "
        "JAXDIFF_SERVE_TOKEN), or bind 127.0.0.1.",
    )
    _cli.require(
        not FLAGS.blocked_classes or bool(FLAGS.classifier_dir),
        "--blocked_classes needs --classifier_dir (the classifier that labels the images).",
    )
    sizes = FLAGS.batch_sizes
    _cli.require(
        all(s.isdigit() and int(s) >= 1 for s in sizes),
        f"--batch_sizes={','.join(sizes)}: must be positive integers.",
    )


def build_engine(run, batch_sizes: list[int]):
    """An Engine of ``run``, or a CascadeEngine when --sr names super-resolution stages."""
    from jaxdiff.serve.engine import Engine

    if not FLAGS.sr:
        return Engine(run, batch_sizes=batch_sizes)
    from jaxdiff import cascade
    from jaxdiff.serve.cascade_engine import CascadeEngine

    stages = []
    for spec in FLAGS.sr:
        model = cascade.load_model(spec)
        if "sr" not in model.config:
            raise ValueError(f"--sr={spec}: not a super-resolution model (no sr config section).")
        stages.append(cascade.Stage(model))
    return CascadeEngine(run, stages, batch_sizes=batch_sizes)


def build_server():
    """The :class:`~jaxdiff.serve.app.Server` the flags describe."""
    from jaxdiff.serve import app as app_lib
    from jaxdiff.serve import limits, safety_hooks

    run = _cli.load_model_run(FLAGS.workdir, FLAGS.pretrained)
    name = FLAGS.pretrained or os.path.basename(FLAGS.workdir.rstrip("/"))
    engine = build_engine(run, [int(s) for s in FLAGS.batch_sizes])
    lim = limits.Limits(
        max_images=FLAGS.max_images,
        max_steps=FLAGS.max_steps,
        max_guidance=FLAGS.max_guidance,
        max_queue=FLAGS.max_queue,
    )
    return app_lib.Server(
        engine,
        limits=lim,
        token=FLAGS.token or os.environ.get("JAXDIFF_SERVE_TOKEN"),
        watermark=safety_hooks.watermark(FLAGS.watermark_key),
        content_filter=safety_hooks.content_filter(
            FLAGS.blocked_words, [int(c) for c in FLAGS.blocked_classes], FLAGS.classifier_dir
        ),
        name=name,
        class_names=limits.CLASS_NAMES.get(run.config.data.name),
        max_wait_s=FLAGS.max_wait_ms / 1000.0,
    )


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    import uvicorn

    from jaxdiff.serve import app as app_lib

    server = build_server()
    if FLAGS.warmup:
        print("compiling the default sampler (the first batch size)...", flush=True)
        e = server.engine
        e.generate(None, None, [0], [0], [e.config.sample.guidance])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"serving {server.name} on http://{FLAGS.host}:{FLAGS.port}/", flush=True)
    uvicorn.run(app_lib.create_app(server), host=FLAGS.host, port=FLAGS.port, log_level="warning")


def main(argv=None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.serve", doc=__doc__, after=check_flags)


if __name__ == "__main__":
    main()
