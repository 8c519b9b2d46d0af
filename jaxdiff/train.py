"""Trains a diffusion model: ``python -m jaxdiff.train --config=configs/X.py --workdir=DIR``.

Override any config field on the command line (``--config.optim.lr=1e-4``); append ``:smoke``
to the config path for the tiny test variant. Running the same command again resumes from
the newest checkpoint in ``DIR/checkpoints``. Several processes (one per host) pass
``--coordinator_address``, ``--num_processes`` and ``--process_id`` (or run where
``jax.distributed.initialize()`` finds them itself, e.g. on Cloud TPU or SLURM).

Bad input (unknown field, missing dataset, indivisible batch, unwritable or foreign
workdir) ends with a one-line ``error: ...`` and exit status 1.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxdiff import _xla_flags

config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples and TensorBoard logs.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with no arguments.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def initialize_distributed() -> None:
    """Starts ``jax.distributed`` when the flags ask for several processes."""
    import jax

    if FLAGS.coordinator_address:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


def one_line(error: BaseException) -> str:
    """An exception's message on one line (whitespace runs collapsed, quotes stripped)."""
    text = str(error).replace("\\n", " ").replace("\\'", "'")
    return " ".join(text.split()).strip("'\"")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad config path or field reported in one line."""
    try:
        argv = FLAGS(argv)
        FLAGS.config.get("seed")  # loads the config file now, to report errors here
        return argv
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        raise SystemExit(f"error: bad flag or config: {one_line(e)}") from None


def main(argv) -> None:
    del argv
    _xla_flags.apply_cpu_defaults()  # before JAX starts its backends
    logging.set_verbosity(logging.WARNING)
    initialize_distributed()
    from jaxdiff.training import loop

    try:
        loop.train(FLAGS.config, FLAGS.workdir)
    except (ValueError, OSError) as e:  # bad input: one line, no traceback
        raise SystemExit(f"error: {one_line(e)}") from None


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
