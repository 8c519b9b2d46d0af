"""Trains a diffusion model: ``python -m jaxdiff.train --config=configs/X.py --workdir=DIR``.

Override any config field on the command line (``--config.optim.lr=1e-4``); append a
variant to the config path (``configs/mnist_cfg.py:cpu``, ``:smoke`` for the tiny test
run). Running the same command again resumes from the newest good checkpoint in
``DIR/checkpoints``. Several processes (one per host) pass ``--coordinator_address``,
``--num_processes`` and ``--process_id`` (or run where ``jax.distributed.initialize()``
finds them itself, e.g. on Cloud TPU or SLURM).

Bad input ends with one line ``error: ...``: exit status 2 for a wrong command line
(unknown flag, field or variant, a value out of range), 1 for a problem found while running
(missing dataset, unwritable or foreign workdir); see docs/training.md.
"""

import glob
import os
import re
import sys

from absl import flags
from ml_collections import config_flags

from jaxdiff import _cli, _xla_flags

FLAGS = flags.FlagValues()
config_flags.DEFINE_config_file(
    "config", None, "Training config file[:variant].", flag_values=FLAGS, lock_config=True
)
flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, samples and TensorBoard logs.", flag_values=FLAGS
)
flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-process).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_processes", None, "Number of processes (multi-process).", flag_values=FLAGS
)
flags.DEFINE_integer("process_id", None, "This process's index (multi-process).", flag_values=FLAGS)
flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() with no arguments.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["config", "workdir"], flag_values=FLAGS)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS_DOC = "jaxdiff/training/config.py, where every field has a comment"


def config_variants() -> str:
    """One line per configs/*.py: its name and variants (read from its VARIANTS line)."""
    lines = []
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        found = re.search(r"^VARIANTS = \((.*)\)", open(path).read(), re.M)
        names = re.findall(r'"(\w+)"', found.group(1)) if found else []
        shown = " ".join(f":{n}" for n in names)
        lines.append(f"  configs/{os.path.basename(path):24s} variants: (full) {shown}")
    return "\n".join(lines)


HELP_EXTRA = (
    "configs (--config=configs/NAME.py[:VARIANT]):\n{variants}\n"
    f"config fields (--config.SECTION.FIELD=VALUE): see {FIELDS_DOC}.\n\n"
)


def _walk(config, prefix=""):
    for key, value in config.items():
        yield prefix + key
        if hasattr(value, "items"):
            yield from _walk(value, f"{prefix}{key}.")


def check_overrides(config, argv) -> None:
    """Raises UsageError naming the valid fields for an unknown ``--config.X=`` field."""
    known = set(_walk(config))
    for arg in argv:
        match = re.match(r"--config\.([\w.]+)(=|$)", arg)
        if not match or match.group(1) in known:
            continue
        path = match.group(1)
        parent = path.rpartition(".")[0]
        section = config
        for part in parent.split(".") if parent else []:
            section = section.get(part) if hasattr(section, "get") else None
        valid = ", ".join(sorted(section.keys())) if hasattr(section, "keys") else ""
        where = f"fields of {parent}" if parent and valid else "top-level fields"
        if not valid:
            valid = ", ".join(sorted(config.keys()))
        raise _cli.UsageError(
            f"unknown config field {path!r}; valid {where}: {valid} (see {FIELDS_DOC})."
        )


def preload_config(argv):
    """Loads ``--config=PATH[:VARIANT]`` and checks ``--config.X=`` overrides before absl does.

    A missing file, an unknown variant or field is reported in one line (exit 2), where
    absl/ml_collections would print a wrapped traceback.
    """
    import importlib.util

    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return  # absl reports the missing required flag
    path, _, variant = spec.partition(":")
    if not os.path.isfile(path):
        names = ", ".join(sorted(os.path.basename(p) for p in glob.glob("configs/*.py")))
        raise _cli.UsageError(
            f"--config={spec}: no such config file{'; configs/ holds ' + names if names else ''}."
        )
    module_spec = importlib.util.spec_from_file_location("jaxdiff_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(*([variant] if variant else []))
    check_overrides(config, argv)


def _check_config():
    from jaxdiff.training import loop

    loop.check_config(FLAGS.config)


def initialize_distributed() -> None:
    """Starts ``jax.distributed`` when the flags ask for several processes."""
    import jax

    if FLAGS.coordinator_address:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    initialize_distributed()
    if "autoencoder" in FLAGS.config:  # a latent-diffusion autoencoder (its own loop)
        from jaxdiff.autoencoder import train as autoencoder_train

        autoencoder_train.train(FLAGS.config, FLAGS.workdir)
        return
    from jaxdiff.training import loop

    loop.train(FLAGS.config, FLAGS.workdir)
    exit_now_if_sampling_was_abandoned()


def exit_now_if_sampling_was_abandoned() -> None:
    """After a SIGTERM during in-loop sampling (checkpoint already committed), exit at once.

    The sampling thread is still inside XLA; interpreter shutdown around it can crash, so
    the process ends here with status 0 without running finalizers.
    """
    import threading

    if any(t.name == loop_thread_name() and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def loop_thread_name() -> str:
    from jaxdiff.training import loop

    return loop.SAMPLING_THREAD


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _cli.run_absl(
        run,
        FLAGS,
        argv,
        "jaxdiff.train",
        doc=__doc__,
        help_extra=HELP_EXTRA.format(variants=config_variants()),
        before=lambda: preload_config(argv),
        after=_check_config,
    )


if __name__ == "__main__":
    main()
