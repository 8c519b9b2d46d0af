"""Bulk generation across processes and hosts: ``python -m jaxdiff.serve.bulk``.

A job of N images (e.g. 50,000 for FID) is cut into the resumable shards that
``jaxdiff.evaluate`` writes: shard i holds ``shard_size`` images drawn from
``fold_in(key(seed), i)`` with classes 0, 1, 2, ... cycling. Process p of P (from
``jax.distributed``, the multi-process engine JAX ships) draws the shards i = p (mod P)
into the shared --out_dir, then all processes meet at a barrier and process 0 writes
``manifest.json`` (the settings, the shard list and a SHA-256 of every image). Any split
draws the same shards as one process; a killed job rerun with the same flags draws only
the missing shards. Example, two processes on one machine::

  python -m jaxdiff.serve.bulk --pretrained=mnist --num_samples=50000 --out_dir=bulk \\
      --coordinator=127.0.0.1:12355 --num_processes=2 --process_id=0 &
  python -m jaxdiff.serve.bulk --pretrained=mnist --num_samples=50000 --out_dir=bulk \\
      --coordinator=127.0.0.1:12355 --num_processes=2 --process_id=1

On several hosts, --out_dir must be a shared file system (or gather the shards after).
"""

import hashlib
import json
import math
import os

from absl import flags

from jaxdiff import _cli, _xla_flags

FLAGS = flags.FlagValues()
_cli.define_model_source(FLAGS)
flags.DEFINE_string(
    "out_dir", None, "Where the shards go (shared by all processes).", flag_values=FLAGS
)
flags.DEFINE_integer("num_samples", 50_000, "Images in all.", flag_values=FLAGS)
flags.DEFINE_integer("shard_size", 500, "Images per shard (one sampler call).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Shard i draws from fold_in(key(seed), i).", flag_values=FLAGS)
flags.DEFINE_string("method", None, "Sampler (default: the model's).", flag_values=FLAGS)
flags.DEFINE_integer("num_steps", None, "Sampler steps (default: the model's).", flag_values=FLAGS)
flags.DEFINE_float("guidance", None, "Guidance w (default: the model's).", flag_values=FLAGS)
flags.DEFINE_string(
    "coordinator", None, "host:port of process 0 (multi-process).", flag_values=FLAGS
)
flags.DEFINE_integer("num_processes", 1, "Processes in the job.", flag_values=FLAGS)
flags.DEFINE_integer("process_id", 0, "This process's index.", flag_values=FLAGS)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["out_dir"], flag_values=FLAGS)


def check_flags() -> None:
    _cli.require_one_model_source(FLAGS.workdir, FLAGS.pretrained)
    _cli.require(FLAGS.num_samples >= 1, f"--num_samples={FLAGS.num_samples}: must be >= 1.")
    _cli.require(FLAGS.shard_size >= 1, f"--shard_size={FLAGS.shard_size}: must be >= 1.")
    p, n = FLAGS.process_id, FLAGS.num_processes
    _cli.require(n >= 1 and 0 <= p < n, f"--process_id={p} must be in [0, --num_processes={n}).")
    _cli.require(
        n == 1 or bool(FLAGS.coordinator),
        "--num_processes > 1 needs --coordinator=host:port (process 0's address).",
    )


def my_shards(num_samples: int, shard_size: int, process: int, processes: int) -> list[int]:
    """The shard indices process ``process`` of ``processes`` draws (i = process mod P)."""
    return list(range(process, math.ceil(num_samples / shard_size), processes))


def start_distributed():
    """``jax.distributed`` for a multi-process job (gloo collectives on CPU); jax."""
    import jax

    if FLAGS.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=FLAGS.coordinator,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    return jax


def load_model():
    """(run, settings dict) of --pretrained or --workdir with the sampler flags."""
    from jaxdiff.training import components

    run = _cli.load_model_run(FLAGS.workdir, FLAGS.pretrained)
    settings = components.sampler_settings(
        run.config, FLAGS.method, FLAGS.num_steps, FLAGS.guidance
    )
    return run, settings


def manifest(out_dir: str, settings: dict, num_shards: int) -> dict:
    """The job's record: settings, flags and a SHA-256 per shard's images."""
    import numpy as np

    from jaxdiff.evaluation import run as run_lib

    hashes = []
    for i in range(num_shards):
        with np.load(run_lib.shard_path(out_dir, i)) as data:
            hashes.append(hashlib.sha256(data["images"].tobytes()).hexdigest())
    return {
        "model": FLAGS.pretrained or FLAGS.workdir,
        "sampler": settings,
        "num_samples": FLAGS.num_samples,
        "shard_size": FLAGS.shard_size,
        "seed": FLAGS.seed,
        "num_processes": FLAGS.num_processes,
        "shard_sha256": hashes,
    }


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    jax = start_distributed()
    from jax.experimental import multihost_utils

    from jaxdiff.evaluation import run as run_lib
    from jaxdiff.training import components

    run, settings = load_model()
    sample_fn = components.jitted_sampler(
        run,
        method=settings["method"],
        num_steps=settings["num_steps"],
        guidance=settings["guidance"],
    )
    rank, size = jax.process_index(), jax.process_count()
    shards = my_shards(FLAGS.num_samples, FLAGS.shard_size, rank, size)
    labels_fn = run_lib.labels_for(run.config)
    run_lib.draw_shards(
        sample_fn, run.params, FLAGS.out_dir, shards, labels_fn, FLAGS.shard_size, FLAGS.seed
    )
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("jaxdiff.serve.bulk: shards written")
    if jax.process_index() == 0:
        num_shards = math.ceil(FLAGS.num_samples / FLAGS.shard_size)
        record = manifest(FLAGS.out_dir, settings, num_shards)
        with open(os.path.join(FLAGS.out_dir, "manifest.json"), "w") as f:
            json.dump(record, f, indent=1)
        print(f"{FLAGS.num_samples} images in {num_shards} shards under {FLAGS.out_dir}")
    if jax.process_count() > 1:
        jax.distributed.shutdown()


def main(argv=None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.serve.bulk", doc=__doc__, after=check_flags)


if __name__ == "__main__":
    main()
