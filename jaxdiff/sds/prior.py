"""The image prior of score distillation: a trained view-conditioned run, or the renders'
exact denoiser.

Both give a frozen ``eps_fn(x_t, t, label=)`` (classifier-free guided), the process and a
``label_fn(azimuth) -> labels`` that turns a view's azimuth into the model's label
``class * VIEW_BINS + view_bin`` (``data.shapes3d.view_label``).

Example::

  prior = prior.load("runs/shapes3d_views", "torus", guidance=20.0)
  prior = prior.load("empirical", "torus", guidance=20.0)   # no training needed
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from jaxdiff import schedules
from jaxdiff.data import shapes3d
from jaxdiff.sds import empirical, score

EMPIRICAL = "empirical"  # --model=empirical[:DATASET]: the exact denoiser of the renders
NUM_LABELS = len(shapes3d.CLASSES) * shapes3d.VIEW_BINS


class Prior(NamedTuple):
    """A frozen, view-conditioned prior.

    Attributes:
      eps_fn: ``(x_t, t, label=) -> eps_hat`` with guidance applied.
      process: its diffusion process.
      label_fn: azimuths (B,) radians -> labels (B,).
      description: what it is, for the run's record.
    """

    eps_fn: Callable
    process: Any
    label_fn: Callable
    description: dict


def load(
    model: str, prompt: str, guidance: float, params: str = "ema", data_dir: str | None = None
) -> Prior:
    """The prior named by ``--model``: a training run's directory, or "empirical[:DATASET]"
    (the exact denoiser of a ``shapes3d`` dataset's renders, default "shapes3d").

    Args:
      model: the run directory, a shipped model's name ("shapes3d_views") or "empirical" /
        "empirical:shapes3d_tiny".
      prompt: a shape class name.
      guidance: the classifier-free guidance weight w.
      params: a run's "ema" or "raw" weights.
      data_dir: caches the renders of the empirical prior (``shapes3d.generate``).

    Raises:
      ValueError: an unknown prompt or dataset (the message lists the valid ones) or a run
        that is not a view-conditioned ``shapes3d`` model.
    """
    class_id = shapes3d.class_index(prompt)
    label_fn = functools.partial(shapes3d.view_label, class_id)
    kind, _, dataset = model.partition(":")
    if kind == EMPIRICAL:
        return from_renders(guidance, label_fn, dataset or "shapes3d", data_dir)
    return from_run(model, guidance, label_fn, params)


def from_renders(
    guidance: float, label_fn: Callable, dataset: str = "shapes3d", data_dir: str | None = None
) -> Prior:
    """The exact denoiser of a ``shapes3d`` dataset's train renders (cosine schedule)."""
    process = schedules.DiscreteSchedule.from_name("cosine", num_steps=1000)
    renders = shapes3d.generate(dataset, "train", data_dir)
    images = renders.images.astype("float32") / 127.5 - 1.0
    model_fn = empirical.model_fn(images, renders.labels, process, NUM_LABELS)
    eps_fn = score.guided_eps_fn(
        model_fn, empirical.KIND, process, guidance=guidance, null_label=NUM_LABELS
    )
    description = {"model": EMPIRICAL, "dataset": dataset, "guidance": guidance}
    return Prior(eps_fn, process, label_fn, description)


def from_run(workdir: str, guidance: float, label_fn: Callable, params: str = "ema") -> Prior:
    """The newest checkpoint of a training run of ``configs/shapes3d_views.py``, or a
    shipped model of one (``pretrained.load_run``: "shapes3d_views")."""
    from jaxdiff import pretrained

    run = pretrained.load_run(workdir, params)
    config = run.config
    if config.data.source != "shapes3d" or config.model.num_classes != NUM_LABELS:
        raise ValueError(
            f"--model={workdir}: not a view-conditioned shapes3d model (it has data.source="
            f"{config.data.source!r}, model.num_classes={config.model.num_classes}; need "
            f"'shapes3d' and {NUM_LABELS}); train configs/shapes3d_views.py."
        )
    if config.model.learn_sigma:
        raise ValueError(f"--model={workdir}: learned-variance models are not supported.")
    eps_fn = score.guided_eps_fn(
        run.model_fn(), config.sample.kind, run.process, guidance=guidance, null_label=NUM_LABELS
    )
    description = {
        "model": workdir,
        "dataset": config.data.name,
        "step": run.step,
        "params": params,
        "guidance": guidance,
    }
    return Prior(eps_fn, run.process, label_fn, description)
