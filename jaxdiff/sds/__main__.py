"""Text-to-3D by score distillation: ``python -m jaxdiff.sds --prompt=torus --out=DIR``
(``--model=`` picks another prior).

Optimises a voxel radiance field so that its renders, from every side, look like the
prompt to a view-conditioned diffusion model (by default the shipped ``shapes3d_views``;
or a run of ``configs/shapes3d_views.py``, or
``--model=empirical``: the exact denoiser of the training renders, a reference that needs
no training). Writes ``DIR/turntable.gif`` (16 views), ``DIR/field.safetensors`` and
``DIR/field.json`` (settings, prior, wall time, final metrics and, with
``--classifier=CLF``, the fraction of turntable views the shape classifier labels as the
prompt; with ``--data_dir``, the fraction whose nearest training render is seen from the
same side, within one 45-degree bin: ``sds.views``). Example::

  python -m jaxdiff.sds --prompt=mug --out=runs/sds/mug   # the shipped prior
  python -m jaxdiff.sds --prompt=mug --model=runs/shapes3d_views --out=runs/sds/mug \\
      --classifier=runs/shape_classifier

Bad input ends with one line ``error: ...`` (exit 2: an unknown prompt, whose message lists
the valid ones, or a value out of range; exit 1: a missing run or classifier).
"""

import dataclasses
import json
import os
import sys
import time

from absl import flags

from jaxdiff import _cli, _xla_flags

PROMPTS = ("torus", "mug", "die", "lblock")  # data.shapes3d.CLASSES (checked in a test)

FLAGS = flags.FlagValues()
flags.DEFINE_string("prompt", None, f"The shape: one of {', '.join(PROMPTS)}.", flag_values=FLAGS)
flags.DEFINE_string(
    "model",
    "shapes3d_views",
    "The shipped 'shapes3d_views', a run of configs/shapes3d_views.py, or 'empirical[:DATASET]'.",
    flag_values=FLAGS,
)
flags.DEFINE_string("out", None, "Output directory (created).", flag_values=FLAGS)
flags.DEFINE_string("classifier", None, "A shape classifier's directory.", flag_values=FLAGS)
flags.DEFINE_string(
    "data_dir",
    None,
    "Cache of the renders: the empirical prior's data and, with any model, the"
    " nearest-render view check (view_agreement in field.json).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("num_steps", 600, "Optimisation steps.", flag_values=FLAGS)
flags.DEFINE_integer("views_per_step", 4, "Views rendered per step.", flag_values=FLAGS)
flags.DEFINE_integer("resolution", 32, "Voxel grid resolution.", flag_values=FLAGS)
flags.DEFINE_float("guidance", 20.0, "Classifier-free guidance weight w.", flag_values=FLAGS)
flags.DEFINE_float("lr", 0.05, "Adam learning rate.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of views, t, noise and ray jitter.", flag_values=FLAGS)
flags.DEFINE_integer("turntable_views", 16, "Views of the turntable.", flag_values=FLAGS)
flags.DEFINE_float("elevation", 20.0, "Turntable elevation, degrees.", flag_values=FLAGS)
flags.DEFINE_enum(
    "params", "ema", ["ema", "raw"], "The run's EMA or raw weights.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["prompt", "out"], flag_values=FLAGS)


def check_flags() -> None:
    """Usage errors (exit 2) before anything runs."""
    _cli.require(
        FLAGS.prompt in PROMPTS,
        f"--prompt={FLAGS.prompt}: unknown shape; valid prompts: {', '.join(PROMPTS)}.",
    )
    for name in ("num_steps", "views_per_step", "turntable_views"):
        value = FLAGS[name].value
        _cli.require(value is not None and value >= 1, f"--{name}={value}: must be >= 1.")
    _cli.require(FLAGS.resolution >= 2, f"--resolution={FLAGS.resolution}: must be >= 2.")
    _cli.require(FLAGS.guidance >= 0, f"--guidance={FLAGS.guidance}: must be >= 0.")
    _cli.require(FLAGS.lr > 0, f"--lr={FLAGS.lr}: must be > 0.")
    _cli.require(abs(FLAGS.elevation) < 89, f"--elevation={FLAGS.elevation}: must be in (-89, 89).")


def check_paths() -> None:
    """Run-time errors (exit 1) for a missing run or classifier."""
    from jaxdiff import pretrained
    from jaxdiff.sds import prior

    empirical = FLAGS.model.partition(":")[0] == prior.EMPIRICAL
    shipped = FLAGS.model in pretrained.available()
    run = os.path.isdir(os.path.join(FLAGS.model, "checkpoints"))
    if not (empirical or shipped or run):
        raise ValueError(
            f"--model={FLAGS.model}: no training run there (no checkpoints folder) and no "
            "shipped model of that name; use --model=shapes3d_views (shipped), a run of "
            "configs/shapes3d_views.py or --model=empirical."
        )
    if FLAGS.classifier and not os.path.isdir(FLAGS.classifier):
        raise ValueError(
            f"--classifier={FLAGS.classifier}: no such directory; train one with "
            "python -m jaxdiff.evaluation.shape_classifier."
        )


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    check_paths()
    from jaxdiff.sds import io, optimize, prior

    settings = optimize.Settings(
        num_steps=FLAGS.num_steps,
        views_per_step=FLAGS.views_per_step,
        resolution=FLAGS.resolution,
        guidance=FLAGS.guidance,
        learning_rate=FLAGS.lr,
        seed=FLAGS.seed,
    )
    settings.check()
    model = prior.load(FLAGS.model, FLAGS.prompt, FLAGS.guidance, FLAGS.params, FLAGS.data_dir)
    start, clock = time.time(), _progress(settings)
    params, history = optimize.optimize(
        model.eps_fn, model.process, model.label_fn, settings, callback=clock
    )
    seconds = time.time() - start
    frames = optimize.turntable(params, settings, FLAGS.turntable_views, FLAGS.elevation)
    record = {
        "prompt": FLAGS.prompt,
        "prior": model.description,
        "settings": _plain(dataclasses.asdict(settings)),
        "optimisation_seconds": round(seconds, 1),  # with the first step's compilation
        "seconds_per_step": clock.seconds_per_step(),  # after the first step
        "final_metrics": history[-1],
        "turntable": {"views": FLAGS.turntable_views, "elevation": FLAGS.elevation},
    }
    if FLAGS.classifier:
        record["classifier_agreement"] = _agreement(frames)
    if FLAGS.data_dir:
        record["view_agreement"] = _view_agreement(frames, model.description["dataset"])
    os.makedirs(FLAGS.out, exist_ok=True)
    io.save_gif(frames, os.path.join(FLAGS.out, "turntable.gif"))
    io.save_field(FLAGS.out, {k: v for k, v in params.items()}, record)
    print(json.dumps({k: record[k] for k in record if k != "settings"}), flush=True)


def _agreement(frames) -> float:
    from jaxdiff.data import shapes3d
    from jaxdiff.evaluation import classifier, shape_classifier

    params, _ = classifier.load_classifier(FLAGS.classifier)
    return shape_classifier.agreement(params, frames, shapes3d.class_index(FLAGS.prompt))


def _view_agreement(frames, dataset: str) -> float:
    from jaxdiff.data import shapes3d
    from jaxdiff.sds import optimize, views

    renders = shapes3d.generate(dataset, "train", FLAGS.data_dir)
    azimuth = optimize.turntable_views(FLAGS.turntable_views, FLAGS.elevation)["azimuth"]
    return views.view_agreement(frames, azimuth, renders, shapes3d.class_index(FLAGS.prompt))


class _progress:
    """Prints metrics ten times per run; times the steps after the first (compiled) one."""

    def __init__(self, settings):
        self.num_steps, self.every = settings.num_steps, max(settings.num_steps // 10, 1)
        self.first = self.last = 0.0

    def __call__(self, step: int, metrics: dict) -> None:
        self.last = time.time()
        if step == 0:
            self.first = self.last
        if step % self.every == 0 or step == self.num_steps - 1:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            print(f"step {step}: {shown}", file=sys.stderr, flush=True)

    def seconds_per_step(self) -> float | None:
        steps = self.num_steps - 1
        return round((self.last - self.first) / steps, 4) if steps else None


def _plain(value):
    """Dataclass fields as JSON values (tuples -> lists, nested records -> dicts)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.sds", doc=__doc__, after=check_flags)


if __name__ == "__main__":
    main()
