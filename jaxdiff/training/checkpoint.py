"""Orbax checkpoints of the train state, the run's metadata and the grain iterator.

One ``CheckpointManager`` under ``WORKDIR/checkpoints`` keeps the latest N steps and every
K-th, saves asynchronously, and holds three items per step:
``state`` (params, EMAs, optimiser state, step, key), ``meta`` (JSON: step, config) and
``data`` (the grain iterator's position). A SIGTERM (preemption) sets a flag that the loop
polls; it then saves with ``force=True`` and waits for the write to finish.

Example::

  ckpt = Checkpointer(workdir + "/checkpoints", keep_last=3, keep_every=1000)
  ckpt.save(step, state, iterator, meta={"config": cfg.to_dict()})
  state, meta = ckpt.restore(ckpt.latest_step(), abstract_state, iterator)
"""

import os
import signal
import threading

import grain
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

# Config sections that fix the shape of the state or the meaning of the weights: a checkpoint
# written under other values cannot be resumed by this config.
IDENTITY_KEYS = (
    "model",
    "process",
    "loss.name",
    "data.source",
    "data.name",
    "optim.name",
    "optim.ema_decays",
    "prng_impl",  # the key data's shape and every random draw depend on it
)
# Fields added after checkpoints existed: a saved config without them had these values.
IDENTITY_DEFAULTS = {"prng_impl": "threefry2x32"}


def _lookup(config: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def check_compatible(saved: dict, current: dict, directory: str) -> None:
    """Raises ValueError if a checkpoint's config differs from ours in an identity field.

    Args:
      saved: the config dict stored with the checkpoint.
      current: this run's config dict.
      directory: shown in the message.
    """

    def value(config, k):
        found = _lookup(config, k)
        return IDENTITY_DEFAULTS.get(k) if found is None else found

    diffs = [k for k in IDENTITY_KEYS if value(saved, k) != value(current, k)]
    if diffs:
        k = diffs[0]
        raise ValueError(
            f"{directory} holds a checkpoint of a different config ({k}: "
            f"{value(saved, k)!r} there vs {value(current, k)!r} here); use another "
            "--workdir or the config that wrote it. Nothing was overwritten."
        )


class Checkpointer:
    """Saves and restores (state, meta, data iterator) with orbax.

    Args:
      directory: the checkpoint directory (created if missing).
      keep_last: keep the latest N checkpoints.
      keep_every: also keep every K-th step for good (0: none).
      async_save: write in a background thread.
    """

    def __init__(
        self, directory: str, keep_last: int = 3, keep_every: int = 0, async_save: bool = True
    ):
        policies = [pp.LatestN(n=keep_last)]
        if keep_every:
            policies.append(pp.EveryNSteps(interval_steps=keep_every))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self, step: int, state, iterator=None, meta: dict | None = None, force: bool = False
    ) -> bool:
        """Starts saving (asynchronously); returns whether a save was started."""
        items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {}))
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def read_meta(self, step: int) -> dict:
        """The JSON metadata of a step, without reading the arrays."""
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return out["meta"]

    def restore(self, step: int, abstract_state, iterator=None):
        """Restores ``(state, meta)``; ``iterator`` (if given) is set to the saved position.

        Args:
          step: the step to restore.
          abstract_state: ``jax.ShapeDtypeStruct`` leaves (with shardings) of the state, so
            the state returns typed (optax namedtuples) and placed.
          iterator: the grain iterator to restore in place.
        """
        items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return out["state"], out["meta"]

    def wait(self) -> None:
        """Blocks until the pending asynchronous save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def install_sigterm_handler() -> threading.Event:
    """Returns an event that is set when the process receives SIGTERM.

    The training loop polls it, saves with ``force=True`` and exits cleanly: orbax's own
    ``reached_preemption()`` only works under ``jax.distributed``.
    """
    event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    return event
