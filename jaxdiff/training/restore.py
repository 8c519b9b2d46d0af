"""Loads a finished (or running) training run for sampling and evaluation.

Example::

  run = restore.load_run("runs/mnist_cfg")          # newest checkpoint, EMA parameters
  model_fn = run.model_fn()                          # (x, t, **cond) -> prediction
"""

import os
from typing import Any, NamedTuple

import jax
import ml_collections

from jaxdiff.training import checkpoint, components, loop, state
from jaxdiff.training import step as step_lib

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
        return step_lib.make_model_fn(
            self.net.apply,
            self.params,
            self.process,
            self.config.loss.noise_level,
            split_output=self.config.model.learn_sigma,
        )


def load_run(workdir: str, params: str = "ema") -> Run:
    """Restores the newest checkpoint in ``workdir/checkpoints``.

    Args:
      workdir: a training run's directory.
      params: "ema" (the first EMA decay; raw parameters if the run keeps no EMA), "raw",
        or one EMA's decay (e.g. "0.9999").

    Raises:
      ValueError: no checkpoint there, or an unknown ``params`` choice.
    """
    if params not in PARAM_CHOICES and not params.replace(".", "", 1).isdigit():
        raise ValueError(
            f"params must be one of {list(PARAM_CHOICES)} or an EMA decay; got {params!r}."
        )
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    step = ckpt.latest_step()
    if step is None:
        raise ValueError(f"no checkpoint in {ckpt.directory}; train first (jaxdiff.train).")
    config = ml_collections.ConfigDict(ckpt.read_meta(step)["config"])
    process, net = components.build_process(config), components.build_model(config)
    _, imp = components.make_train_step(config, net, process)
    _, abstract = loop.init_state(config, net, state.make_mesh(), imp)
    restored, _ = ckpt.restore(step, abstract)
    ckpt.close()
    chosen = restored.params
    if params == "ema" and restored.ema:
        chosen = next(iter(restored.ema.values()))
    elif params not in PARAM_CHOICES:
        if params not in restored.ema:
            raise ValueError(f"no EMA {params!r} in {workdir}; it keeps {sorted(restored.ema)}.")
        chosen = restored.ema[params]
    return Run(config, net, process, jax.device_get(chosen), int(step))
