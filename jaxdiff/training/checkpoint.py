"""Orbax checkpoints of the train state, the run's metadata and the grain iterator.

One ``CheckpointManager`` under ``WORKDIR/checkpoints`` saves asynchronously and holds
three items per step: ``state`` (params, EMAs, optimiser state, step, key), ``meta`` (JSON:
step, config) and ``data`` (the grain iterator's position). Once orbax has finished a save,
the step is committed with a manifest of checksums (:mod:`jaxdiff.training.integrity`);
restores verify it, and the training loop sets a damaged step aside (renamed
``<step>.damaged``, never deleted) and falls back to the newest good one. The latest N
committed steps (at least 2) and every K-th are kept; nothing is removed before a newer
step is committed. Directories written before manifests existed restore unverified.
A SIGTERM (preemption) sets a flag that the loop polls; it then saves with ``force=True``
and waits for the write to finish.

Example::

  ckpt = Checkpointer(workdir + "/checkpoints", keep_last=3, keep_every=1000)
  ckpt.save(step, state, iterator, meta={"config": cfg.to_dict()})
  step = ckpt.recover()            # newest good step; damaged newer ones set aside
  state, meta = ckpt.restore(step, abstract_state, iterator)
"""

import os
import signal
import threading

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxdiff.training import integrity

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
    # a latent model's text encoder / map input, an autoencoder's shape (jaxdiff.latent,
    # jaxdiff.autoencoder); absent from other configs, so None on both sides
    "latent.text",
    "latent.max_len",
    "latent.text_width",
    "latent.text_depth",
    "latent.semantic_map",
    "autoencoder.ch",
    "autoencoder.ch_mult",
    "autoencoder.num_res_blocks",
    "autoencoder.latent_channels",
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


class CheckpointDamagedError(ValueError):
    """A checkpoint that fails verification or cannot be read back."""

    def __init__(self, step: int, problem: str):
        super().__init__(f"checkpoint step {step} is damaged: {problem}")
        self.step, self.problem = step, problem


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


class Checkpointer:
    """Saves, commits (with a manifest), verifies and restores (state, meta, data iterator).

    A save is committed by a manifest of checksums once orbax has finished it (at once for
    synchronous saves; for asynchronous ones at the next :meth:`poll`, save or close). Old
    steps are removed only after a newer one is committed, keeping the newest
    ``max(keep_last, 2)`` committed steps and every ``keep_every``-th.

    Args:
      directory: the checkpoint directory (created if missing).
      keep_last: keep the latest N committed checkpoints (at least 2 are kept).
      keep_every: also keep every K-th step for good (0: none).
      async_save: write in a background thread.
      report: called with one-line messages (a damaged checkpoint set aside, legacy restore).
    """

    def __init__(
        self,
        directory: str,
        keep_last: int = 3,
        keep_every: int = 0,
        async_save: bool = True,
        report=print,
    ):
        options = ocp.CheckpointManagerOptions(
            preservation_policy=pp.PreserveAll(),  # deletion waits for a verified successor
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.keep_last, self.keep_every, self.report = max(2, keep_last), keep_every, report
        self.async_save = async_save
        self.kill_point: tuple[str, int] | None = None  # testing hook: ("save"|"manifest", step)
        self._pending: list[tuple[int, str]] = []  # saved, not yet committed: (step, prng_impl)
        self._problems: dict[int, str | None] = {}  # verification results, per step
        steps = self.all_steps()
        self.legacy = integrity.is_legacy(self.directory, [self.step_dir(s) for s in steps])
        self._committed = {
            s for s in steps if os.path.exists(os.path.join(self.step_dir(s), integrity.MANIFEST))
        }

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def all_steps(self) -> list[int]:
        """Every step directory orbax sees (committed or not)."""
        return sorted(self.manager.all_steps())

    def problem(self, step: int) -> str | None:
        """None if ``step`` verifies against its manifest (or the directory is legacy)."""
        if self.legacy:
            return None
        if step not in self._problems:
            self._problems[step] = integrity.verify(self.step_dir(step), step)
        return self._problems[step]

    def latest_step(self) -> int | None:
        """The newest checkpoint that verifies (skipping damaged and unfinished ones), or None."""
        return next((s for s in reversed(self.all_steps()) if self.problem(s) is None), None)

    def recover(self) -> int | None:
        """The newest good step, after setting aside every newer one that fails verification.

        Only the run that owns the directory (the training loop) calls this.
        """
        steps = self.all_steps()
        if self.legacy and steps:
            self.report(
                f"checkpoints in {self.directory} predate manifests (legacy): restoring step "
                f"{steps[-1]} unverified."
            )
        for step in reversed(steps):
            problem = self.problem(step)
            if problem is None:
                return step
            self.set_aside(step, problem)
        return None

    def set_aside(self, step: int, problem: str) -> None:
        """Renames a damaged step out of orbax's sight and says so in one line."""
        target = self.step_dir(step) + integrity.SET_ASIDE
        if jax.process_index() == 0:
            target = integrity.set_aside(self.step_dir(step))
        self.manager.reload()
        self._committed.discard(step)
        self._problems.pop(step, None)
        older = [s for s in self.all_steps() if s < step and self.problem(s) is None]
        then = f"falling back to step {older[-1]}" if older else "no older good checkpoint"
        self.report(
            f"checkpoint step {step} failed verification ({problem}); set aside as {target}; "
            f"{then}."
        )

    def _kill(self, phase: str, step: int) -> None:
        if self.kill_point == (phase, step):
            os.kill(os.getpid(), signal.SIGKILL)

    def _adopt_legacy(self) -> None:
        """Before the first save in a legacy directory: manifests for the steps already there."""
        if jax.process_index() == 0:
            for step in self.all_steps():
                integrity.write_manifest(self.step_dir(step), step, "unknown", legacy=True)
            integrity.mark_directory(self.directory)
        self._committed.update(self.all_steps())
        self.legacy = False

    def _commit_pending(self, block: bool) -> None:
        """Writes the manifests of finished saves, then removes steps beyond the policy."""
        if not self._pending:
            return
        if block:
            self.manager.wait_until_finished()
        elif self.manager.is_saving_in_progress():
            return
        for step, prng_impl in self._pending:
            if jax.process_index() == 0:
                hook = lambda s=step: self._kill("manifest", s)  # noqa: E731
                integrity.write_manifest(self.step_dir(step), step, prng_impl, before_rename=hook)
            self._committed.add(step)
            self._problems[step] = None
        self._pending = []
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        good = sorted(s for s in self.all_steps() if s in self._committed)
        keep = set(good[-self.keep_last :])
        keep.update(s for s in good if self.keep_every and s % self.keep_every == 0)
        for step in good:
            if step not in keep:
                self.manager.delete(step)
                self._committed.discard(step)

    def poll(self) -> None:
        """Commits a finished asynchronous save without waiting (call it every step)."""
        self._commit_pending(block=False)

    def save(
        self, step: int, state, iterator=None, meta: dict | None = None, force: bool = False
    ) -> bool:
        """Starts saving (asynchronously); returns whether a save was started.

        The previous save is committed first (waiting for it if needed).
        """
        self._commit_pending(block=True)
        if self.legacy:
            self._adopt_legacy()
        elif jax.process_index() == 0:
            integrity.mark_directory(self.directory)
        items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {}))
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        started = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        if started:
            self._pending.append((step, getattr(state, "prng_impl", "unknown")))
            self._kill("save", step)
            if not self.async_save:
                self._commit_pending(block=True)
        return started

    def read_meta(self, step: int) -> dict:
        """The JSON metadata of a step, without reading the arrays.

        Raises:
          CheckpointDamagedError: the metadata cannot be read.
        """
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except (OSError, ValueError) as e:
            raise CheckpointDamagedError(step, f"meta: {_first_line(e)}") from None
        return out["meta"]

    def restore(self, step: int, abstract_state, iterator=None):
        """Restores ``(state, meta)``; ``iterator`` (if given) is set to the saved position.

        Args:
          step: the step to restore.
          abstract_state: ``jax.ShapeDtypeStruct`` leaves (with shardings) of the state, so
            the state returns typed (optax namedtuples) and placed.
          iterator: the grain iterator to restore in place.

        Raises:
          CheckpointDamagedError: the step fails verification, or (legacy) cannot be read.
          ValueError: the step was saved with another PRNG implementation.
        """
        problem = self.problem(step)
        if problem is not None:
            raise CheckpointDamagedError(step, problem)
        self._check_prng_impl(step, getattr(abstract_state, "prng_impl", None))
        items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 - unverified (legacy) files: any failure is damage
            if not self.legacy:
                raise
            raise CheckpointDamagedError(step, f"restore failed: {_first_line(e)}") from None
        return out["state"], out["meta"]

    def _check_prng_impl(self, step: int, want: str | None) -> None:
        if self.legacy or want is None:
            return
        saved = integrity.read_manifest(self.step_dir(step)).get("prng_impl", "unknown")
        if saved not in ("unknown", want):
            raise ValueError(
                f"checkpoint step {step} in {self.directory} holds a {saved} key; this run "
                f"uses {want} (--config.prng_impl={saved} resumes it)."
            )

    def wait(self) -> None:
        """Blocks until the pending asynchronous save is on disk and committed."""
        self._commit_pending(block=True)
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.wait()
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
