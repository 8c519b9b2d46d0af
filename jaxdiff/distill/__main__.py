"""Distils a trained model: ``python -m jaxdiff.distill --config=configs/distill_mnist.py
--workdir=DIR`` (progressive distillation, one resumable training run per round), or
trains a consistency model from it (``configs/cd_mnist.py``, ``configs/ct_mnist.py``: one
resumable run in DIR).

Override any field on the command line (``--config.teacher=mnist``,
``--config.train.num_steps=2000``); rerunning the same command resumes the unfinished
round and skips the finished ones. ``DIR/students.json`` lists the students and their time
grids; ``python -m jaxdiff.pretrained --workdir=DIR/student_0004 --name=...`` ships one.
Teachers: the shipped models (``python -m jaxdiff.sample --help`` lists them) or any
training workdir of a discrete-schedule model.
"""

import sys

from absl import flags
from ml_collections import config_flags

from jaxdiff import _cli, _xla_flags
from jaxdiff import train as train_cli

FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file(
    "config", None, "Distillation config file[:variant].", flag_values=FLAGS, lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory of the rounds (student_SSSS/).", flag_values=FLAGS)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["config", "workdir"], flag_values=FLAGS)


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    from jaxdiff.distill import consistency_run, rounds

    method = FLAGS.config.get("method", "progressive")
    if method == "progressive":
        for record in rounds.distill(FLAGS.config, FLAGS.workdir):
            print(f"student of {record['steps']} steps: {record['workdir']}", flush=True)
    else:
        consistency_run.train(FLAGS.config, FLAGS.workdir)
    train_cli.exit_now_if_sampling_was_abandoned()


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _cli.run_absl(
        run,
        FLAGS,
        argv,
        "jaxdiff.distill",
        doc=__doc__,
        before=lambda: train_cli.preload_config(argv),
    )


if __name__ == "__main__":
    main()
