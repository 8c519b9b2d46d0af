"""Loads a finished (or running) training run for sampling and evaluation.

Example::

  run = restore.load_run("runs/mnist_cfg")          # newest checkpoint, EMA parameters
  model_fn = run.model_fn()                          # (x, t, **cond) -> prediction
"""

import os
from typing import Any, NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from jaxdiff import denoiser
from jaxdiff.training import checkpoint, components, optim, state

PARAM_CHOICES = ("ema", "raw")


class Run(NamedTuple):
    """A restored run.

    Attributes:
      config: the config stored with the checkpoint.
      net: the network (``models.create``'s module).
      process: the diffusion process it was trained with.
      params: the chosen parameters (host arrays).
      step: the checkpoint's training step.
    """

    config: ml_collections.ConfigDict
    net: Any
    process: Any
    params: Any
    step: int

    def model_fn(self):
        """``model_fn(x, t, **cond)`` of the restored network (``(pred, v)`` if learned)."""
        return denoiser.make_model_fn(
            self.net.apply,
            self.params,
            self.process,
            self.config.loss.noise_level,
            split_output=self.config.model.learn_sigma,
        )


def load_run(workdir: str, params: str = "ema", step: int | None = None) -> Run:
    """Restores the newest checkpoint in ``workdir/checkpoints`` (or the one of ``step``).

    Args:
      workdir: a training run's directory.
      params: "ema" (the first EMA decay; raw parameters if the run keeps no EMA), "raw",
        or one EMA's decay (e.g. "0.9999").
      step: a kept checkpoint's step (e.g. to measure a run through training); None: the
        newest that verifies.

    Raises:
      ValueError: no checkpoint there, no verified checkpoint of ``step`` (the message lists
        the kept ones), or an unknown ``params`` choice.
    """
    if params not in PARAM_CHOICES and not params.replace(".", "", 1).isdigit():
        raise ValueError(
            f"params must be one of {list(PARAM_CHOICES)} or an EMA decay; got {params!r}."
        )
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    step = _chosen_step(ckpt, step)
    config = ml_collections.ConfigDict(ckpt.read_meta(step)["config"])
    process, net = components.build_process(config), components.build_model(config)
    restored = _restore_weights(ckpt, step)
    ckpt.close()
    chosen = restored["params"]
    decays = list(config.optim.ema_decays)
    if params == "ema" and decays and restored.get("ema"):
        chosen = restored["ema"][optim.ema_key(decays[0])]
    elif params not in PARAM_CHOICES:
        if params not in restored.get("ema", {}):
            raise ValueError(f"no EMA {params!r} in {workdir}; it keeps {sorted(restored['ema'])}.")
        chosen = restored["ema"][params]
    return Run(config, net, process, jax.device_get(chosen), int(step))


def _chosen_step(ckpt: checkpoint.Checkpointer, step: int | None) -> int:
    """``step`` if it is a kept checkpoint that verifies, the newest such with None."""
    if step is None:
        step = ckpt.latest_step()
        if step is None:
            raise ValueError(f"no checkpoint in {ckpt.directory}; train first (jaxdiff.train).")
    elif step not in ckpt.all_steps() or ckpt.problem(step) is not None:
        kept = [s for s in ckpt.all_steps() if ckpt.problem(s) is None]
        raise ValueError(
            f"no verified checkpoint of step {step} in {ckpt.directory}; kept: {kept}."
        )
    return step


def _restore_weights(ckpt: checkpoint.Checkpointer, step: int) -> dict:
    """The saved state as plain dicts, read against the checkpoint's own array metadata.

    Sampling needs only the parameters and EMAs: no optimizer, loss or train step is built
    to learn the state's structure (the optimizer state comes back as plain dicts).
    """
    path = epath.Path(ckpt.directory) / str(step) / "state"
    tree = ocp.StandardCheckpointHandler().metadata(path).tree
    rep = state.replicated(state.make_mesh())
    is_array = lambda m: hasattr(m, "shape") and hasattr(m, "dtype")
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=rep), tree, is_leaf=is_array
    )
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    return ckpt.manager.restore(step, args=args)["state"]
