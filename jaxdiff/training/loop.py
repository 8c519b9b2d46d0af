"""The training loop: the only reader of the config during a run.

``train(config, workdir)`` builds the run, resumes from the newest checkpoint in
``workdir/checkpoints`` (or starts fresh), steps the jitted ``train_step`` over a mesh of all
devices, logs, draws sample grids to ``workdir/samples/``, checkpoints, and stops cleanly on
SIGTERM or with a clear error on a non-finite loss.
"""

import json
import os
import signal
import threading

import jax
import numpy as np
from tqdm import tqdm

from jaxdiff import latent, super_res
from jaxdiff._cli import UsageError
from jaxdiff.training import checkpoint as ckpt_lib
from jaxdiff.training import components, summaries
from jaxdiff.training import state as state_lib
from jaxdiff.training import step as step_lib

# Testing hook: the process SIGKILLs itself right after this step (a deterministic kill -9),
# or with "STEP:save" / "STEP:manifest" inside that step's save (see kill_point).
KILL_ENV = "JAXDIFF_TEST_KILL_AT_STEP"


SAMPLING_THREAD = "jaxdiff in-loop sampling"


class NonFiniteLossError(ValueError):
    """Raised when the loss stops being finite."""


# (config path, lowest allowed value, what it means): checked before anything is written.
MINIMA = (
    ("train.num_steps", 1, "training steps"),
    ("train.checkpoint_every", 1, "steps between checkpoints"),
    ("train.log_every", 1, "steps between logged metrics"),
    ("train.keep_last", 1, "checkpoints kept"),
    ("train.keep_every", 0, "0: none"),
    ("train.sample_every", 0, "0: never"),
    ("data.batch_size", 1, "examples per step"),
    ("optim.grad_accum", 1, "micro-batches per step"),
    ("sample.num_steps", 1, "sampler steps"),
    ("sample.num_samples", 1, "samples per grid"),
    ("sample.guidance", 0, "the CFG weight w"),
)


def check_config(config) -> None:
    """Raises UsageError (one line) for a config value out of range."""
    for path, low, meaning in MINIMA:
        value = config
        for part in path.split("."):
            value = value[part]
        if value < low:
            raise UsageError(f"--config.{path}={value}: must be >= {low} ({meaning}).")
    if not 0 <= config.loss.label_dropout < 1:
        raise UsageError(
            f"--config.loss.label_dropout={config.loss.label_dropout}: must be in [0, 1)."
        )
    if config.sample.guidance and not config.model.num_classes and "latent" not in config:
        raise UsageError(
            f"--config.sample.guidance={config.sample.guidance}: guidance needs a "
            "class-conditional model (model.num_classes > 0); use 0."
        )
    if config.loss.label_dropout and not config.model.num_classes:
        raise UsageError("--config.loss.label_dropout needs model.num_classes > 0; use 0.")
    try:
        state_lib.check_prng_impl(config.prng_impl)
    except ValueError as e:
        raise UsageError(f"--config.prng_impl: {e}") from None
    try:
        sr = super_res.settings(config)  # a super-resolution model's ``sr`` section
    except ValueError as e:
        raise UsageError(f"--config.{e}") from None
    try:
        lt = latent.settings(config)  # a latent (text / semantic-map) model's section
    except ValueError as e:
        raise UsageError(f"--config.{e}") from None
    if lt is not None and config.train.sample_every:
        raise UsageError(
            f"--config.train.sample_every={config.train.sample_every}: a latent model draws "
            "no in-run grids (they need prompts or maps); use 0 and sample with "
            "python -m jaxdiff.sample --prompt=..."
        )
    if sr is not None and config.train.sample_every:
        raise UsageError(
            f"--config.train.sample_every={config.train.sample_every}: a super-resolution "
            "run draws no in-run grids (they need low-resolution inputs); use 0 and sample "
            "with python -m jaxdiff.cascade."
        )


def check_workdir(workdir: str) -> None:
    """Creates ``workdir`` and raises ValueError if it cannot be written."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create workdir {workdir!r}: {e.strerror}.") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ValueError(f"workdir {workdir!r} is not writable; choose another --workdir.")


def init_state(config, net, mesh, imp_state, params=None):
    """A jitted, replicated initial state, and its abstract form (for restores).

    ``params`` (host arrays) start the run instead of a random initialisation.
    """
    impl = state_lib.check_prng_impl(config.prng_impl)
    key = jax.random.key(config.seed, impl=impl)
    tx = components.build_optimizer(config)
    start = None if params is None else jax.tree.map(np.asarray, params)

    def create():
        if start is None:
            params = components.init_params(config, net, jax.random.fold_in(key, 0))
        else:
            params = jax.tree.map(jax.numpy.asarray, start)
        ema = config.optim.ema_decays
        return state_lib.create(params, tx, ema, config.seed, imp_state, prng_impl=impl)

    rep = state_lib.replicated(mesh)
    return jax.jit(create, out_shardings=rep), state_lib.abstract(jax.eval_shape(create), rep)


def restore_or_init(config, ckpt, create, abstract, iterator):
    """Resumes from the newest good checkpoint (checking it belongs to this config) or inits.

    A checkpoint that fails verification is set aside (one line each) and the next older
    one is tried.
    """
    current = json.loads(json.dumps(config.to_dict()))
    while (step := ckpt.recover()) is not None:
        try:
            ckpt_lib.check_compatible(
                ckpt.read_meta(step).get("config", {}), current, ckpt.directory
            )
            state, _ = ckpt.restore(step, abstract, iterator)
        except ckpt_lib.CheckpointDamagedError as e:
            ckpt.set_aside(step, e.problem)
            continue
        say(f"resumed from step {step} ({ckpt.directory})")
        return state
    return create()


def say(message: str) -> None:
    """A one-line message to the user (stdout, flushed: progress bars go to stderr)."""
    print(message, flush=True)


def kill_point(value: str | None) -> tuple[str, int] | None:
    """Parses the :data:`KILL_ENV` testing hook: ``"12"`` (after step 12), ``"12:save"``
    (while step 12's save is being written) or ``"12:manifest"`` (while it is committed)."""
    if not value:
        return None
    step, _, phase = value.partition(":")
    return (phase or "step", int(step))


def draw_samples(config, sample_fn, state, step, workdir, writer, stop=None) -> bool:
    """Samples with the first EMA (or the raw params) and writes a PNG grid.

    The sampler runs in a daemon thread while this one watches ``stop`` (SIGTERM): if it is
    set first, the grid is abandoned and False returned, so a preemption never waits for a
    long sampling call (the thread's result is dropped; the process may exit meanwhile).
    """
    params = next(iter(state.ema.values())) if state.ema else state.params
    labels = components.sample_labels(config, config.sample.num_samples)
    key = jax.random.fold_in(jax.random.key(config.seed, impl=config.prng_impl), 2)  # 2: samples
    out = {}

    def work():
        try:
            out["images"] = np.asarray(sample_fn(params, key, labels))
        except BaseException as e:  # noqa: BLE001 - re-raised in the loop's thread
            out["error"] = e

    thread = threading.Thread(target=work, name=SAMPLING_THREAD, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        if stop is not None and stop.is_set() and thread.is_alive():
            return False
    if "error" in out:
        raise out["error"]
    if jax.process_index() == 0:
        path = os.path.join(workdir, "samples", f"step_{step:07d}.png")
        writer.image(step, "samples", summaries.save_grid(out["images"], path))
    return True


def train(config, workdir: str, *, loss_fn=None, init_params=None):
    """Trains (or resumes) a run described by ``config`` in ``workdir``; returns the state.

    Args:
      config: the run's config.
      workdir: where checkpoints, grids and metrics go.
      loss_fn: replaces the configured loss (see ``components.make_train_step``).
      init_params: start from these parameters instead of a random initialisation (a
        resumed run ignores them).

    Raises:
      UsageError: a config value out of range (before anything is written).
      ValueError: other bad input (with a one-line message) or a non-finite loss.
    """
    check_config(config)
    created = not os.path.exists(workdir)
    try:
        return _train(config, workdir, loss_fn, init_params)
    except BaseException:
        if created:
            remove_empty_dirs(workdir)  # a failed first run leaves no empty workdir behind
        raise


def remove_empty_dirs(root: str) -> None:
    """Removes ``root`` and the folders under it that hold no files."""
    for folder, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _train(config, workdir: str, loss_fn=None, init_params=None):
    check_workdir(workdir)
    mesh = state_lib.make_mesh()
    state_lib.check_batch_size(config.data.batch_size, mesh)
    process, net = components.build_process(config), components.build_model(config)
    step_fn, imp_state = components.make_train_step(config, net, process, loss_fn)
    step_fn = step_lib.jit_train_step(step_fn, mesh)
    iterator = iter(components.build_dataset(config, jax.process_index(), jax.process_count()))
    tc, main_host = config.train, jax.process_index() == 0
    ckpt = ckpt_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"),
        tc.keep_last,
        tc.keep_every,
        async_save=tc.async_checkpoint,
        report=say if main_host else lambda message: None,
    )
    kill_at = ckpt.kill_point = kill_point(os.environ.get(KILL_ENV))
    create, abstract = init_state(config, net, mesh, imp_state, init_params)
    state = restore_or_init(config, ckpt, create, abstract, iterator)
    rep = state_lib.replicated(mesh)
    sample_fn = jax.jit(components.make_sampler(config, net, process), out_shardings=rep)
    writer = summaries.Writer(workdir, enabled=main_host)
    meta = {"config": json.loads(json.dumps(config.to_dict()))}
    stop = ckpt_lib.install_sigterm_handler()
    start = step = saved = int(state.step)
    bar = tqdm(
        total=tc.num_steps, initial=start, unit="step", disable=not tc.progress or not main_host
    )
    if start < tc.num_steps and main_host:
        bar.write("compiling the training step (the first step takes longer)...")
    try:
        for step in range(start + 1, tc.num_steps + 1):
            batch = state_lib.global_batch(next(iterator), mesh)
            state, metrics = step_fn(state, batch)
            loss = float(metrics["loss"])
            if not np.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss} at step {step}; stopped without saving. Last good "
                    f"checkpoint: step {ckpt.latest_step()} in {ckpt.directory}."
                )
            if step == start + 1:
                bar.reset(total=tc.num_steps)  # the ETA leaves out the compilation
                bar.update(start)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if step % tc.log_every == 0 or step == tc.num_steps:
                writer.scalars(step, metrics)
            preempted = stop.is_set()
            if step % tc.checkpoint_every == 0 or step == tc.num_steps or preempted:
                saved = ckpt.save(step, state, iterator, meta, force=True) and step
            due = tc.sample_every and (step % tc.sample_every == 0 or step == tc.num_steps)
            if due and not stop.is_set():  # a preemption does not wait for sampling
                draw_samples(config, sample_fn, state, step, workdir, writer, stop)
            ckpt.poll()
            if kill_at == ("step", step):
                os.kill(os.getpid(), signal.SIGKILL)
            if stop.is_set() and not preempted:  # SIGTERM while sampling: save now
                if saved != step:
                    ckpt.save(step, state, iterator, meta, force=True)
                preempted = True
            if preempted:
                bar.write(f"SIGTERM: saved step {step} in {ckpt.directory}; exiting.")
                break
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    if main_host:
        say(summary(workdir, ckpt, step, tc.sample_every))
    return state


def summary(workdir: str, ckpt, step: int, sample_every: int) -> str:
    """The closing line: where the checkpoint, the sample grids and the metrics went."""
    grids = os.path.join(workdir, "samples")
    parts = [
        f"done at step {step}: checkpoint {ckpt.directory}/{ckpt.latest_step()}",
        f"metrics {os.path.join(workdir, 'metrics.jsonl')} and {os.path.join(workdir, 'tb')}",
    ]
    if sample_every and os.path.isdir(grids):
        parts.insert(1, f"sample grids {grids}")
    return "; ".join(parts) + "."
