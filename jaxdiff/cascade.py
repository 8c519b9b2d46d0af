"""Cascaded generation: a base model, then super-resolution stages, each yielded when ready.

A cascade is a list of :class:`Stage` s: a base model (any model with no ``sr`` config
section) followed by super-resolution (SR) models (:mod:`jaxdiff.super_res`), each with
its own sampler settings and augmentation level. :func:`generate_progressive` yields
``(stage index, images)`` as each stage finishes (the low-resolution result first, so a
server can stream a preview); :func:`cascade` returns the last stage's images. Given
``low=`` images instead of a base stage, the SR stages upscale them.

Two ways to feed an SR stage (Ho et al. 2021, conditioning augmentation):

- non-truncated (default): the previous stage samples down to t = 0; its images,
  clipped to [-1, 1], are noised to the SR stage's level s;
- truncated (``Stage(..., truncated=True)``): the previous stage stops at t = s (moved
  to one of its levels for a discrete schedule) and its noisy x_s is the input as it
  is; both models must share the process at s. Its preview is the previous model's
  denoised estimate at s (one more network call).

Stage i draws from ``fold_in(key, i)``, so changing a later stage leaves the earlier
stages' images alone (the same base images for every SR setting).

Example::

  from jaxdiff import cascade
  stages = [cascade.Stage(cascade.load_model("runs/fashion_mnist_base14")),
            cascade.Stage(cascade.load_model("runs/fashion_mnist_sr28"), aug_level=0.1)]
  for index, images in cascade.generate_progressive(jax.random.key(0), stages, 16, label=3):
      print(index, images.shape)      # 0 (16, 14, 14, 1), then 1 (16, 28, 28, 1)

The command ``python -m jaxdiff.cascade`` (:mod:`jaxdiff.cascade_cli`) runs it.
"""

import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization, pretrained, samplers, super_res
from jaxdiff._process import batch_time
from jaxdiff._types import Array, PRNGKey
from jaxdiff.schedules import DiscreteSchedule


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity (compiled-stage cache)
class Stage:
    """One stage of a cascade: a model and how to sample it.

    Attributes:
      model: a restored run (``training.restore.load_run``), a shipped model
        (``pretrained.load``) or anything with ``config``, ``net``, ``process``, ``params``.
      method, num_steps, guidance: the sampler (None: the model's ``config.sample``).
      aug_level: an SR stage's augmentation level s (None: the model's ``sr.aug_level``);
        must lie in [0, sr.aug_max].
      truncated: an SR stage takes the previous stage stopped at t = s.
      options: other ``samplers.sample`` options (e.g. ``{"spacing": "trailing"}``).
    """

    model: Any
    method: str | None = None
    num_steps: int | None = None
    guidance: float | None = None
    aug_level: float | None = None
    truncated: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def sr(self) -> super_res.Settings | None:
        """The model's checked ``sr`` section (None for a base model)."""
        return super_res.settings(self.model.config)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of this stage's images."""
        d = self.model.config.data
        return (d.image_size, d.image_size, d.channels)

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(h, w, C) of an SR stage's low-resolution input (None for a base model)."""
        sr = self.sr
        if sr is None:
            return None
        h, w, c = self.image_shape
        return (h // sr.factor, w // sr.factor, c)

    def level(self) -> float:
        """The SR stage's augmentation level s, checked against its training range."""
        sr = self.sr
        assert sr is not None, "only an SR stage has an augmentation level"
        level = sr.aug_level if self.aug_level is None else float(self.aug_level)
        super_res.check_level(level, sr.aug_max)
        return level


def load_model(spec: str):
    """A training run's directory (newest checkpoint, EMA) or a shipped model's name.

    Raises:
      ValueError: neither a directory with checkpoints nor a shipped name (lists them).
    """
    if os.path.isdir(os.path.join(spec, "checkpoints")):
        from jaxdiff.training import restore

        return restore.load_run(spec)
    if spec in pretrained.available():
        return pretrained.load(spec)
    raise ValueError(
        f"{spec!r} is neither a training run (a folder with checkpoints/) nor a shipped "
        f"model ({', '.join(pretrained.available()) or 'none installed'})."
    )


class Step(NamedTuple):
    """How one stage runs: stop time, whether its input is already noised, its level."""

    t_end: float  # 0: to clean images; > 0: stopped for a truncated next stage
    noised: bool  # an SR stage whose input is a truncated x_s
    level: float  # an SR stage's augmentation level (0 for a base stage)


def plan(stages: Sequence[Stage], low_shape: tuple[int, ...] | None = None) -> list[Step]:
    """Checks a cascade and returns each stage's :class:`Step`.

    Args:
      stages: the stages.
      low_shape: (N, h, w, C) of given low-resolution images (then every stage is SR).

    Raises:
      ValueError: no stages, a base model after the first stage (or with ``low``), shapes
        that do not chain, a level out of range, a truncated stage without a previous
        model or whose process differs from the previous stage's at s.
    """
    if not stages or not all(isinstance(s, Stage) for s in stages):
        raise ValueError(f"stages must be a non-empty list of cascade.Stage; got {stages!r}.")
    prev = None if low_shape is None else tuple(low_shape[1:])
    steps = []
    for i, stage in enumerate(stages):
        if stage.sr is None:
            if i > 0 or low_shape is not None:
                where = "with low= images" if low_shape is not None else f"at stage {i}"
                raise ValueError(f"a base model (no sr section) {where}: only SR stages follow.")
            if stage.truncated:
                raise ValueError("stage 0 is a base model: truncated applies to SR stages.")
            steps.append(Step(0.0, False, 0.0))
        else:
            if prev is None:
                raise ValueError("stage 0 is an SR model: give low= images or a base stage.")
            if stage.input_shape != prev:
                raise ValueError(
                    f"stage {i} takes {stage.input_shape} low-resolution images (h, w, C) but "
                    f"gets {prev}."
                )
            steps.append(_sr_step(i, stage, stages[i - 1] if i else None, steps))
        prev = stage.image_shape
    return steps


def _sr_step(i: int, stage: Stage, before: Stage | None, steps: list[Step]) -> Step:
    """An SR stage's Step; a truncated one also stops the previous stage at its level."""
    level = stage.level()
    if not stage.truncated:
        return Step(0.0, False, level)
    if before is None:
        raise ValueError(f"stage {i} is truncated: it needs a previous model, not low= images.")
    if isinstance(before.model.process, DiscreteSchedule):
        level = float(before.model.process.round_to_level(level))
    if level <= 0.0:
        raise ValueError(f"stage {i} is truncated at s = 0: use truncated=False instead.")
    ours = np.asarray(stage.model.process.marginal(level))
    theirs = np.asarray(before.model.process.marginal(level))
    if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-5):
        raise ValueError(
            f"stage {i} is truncated, but its process gives (scale, sigma) = {ours} at s = "
            f"{level} and stage {i - 1}'s {theirs}: truncation needs the same process."
        )
    steps[i - 1] = steps[i - 1]._replace(t_end=level)
    return Step(0.0, True, level)


class _Ref:
    """A model as a cache key: hashed and compared by identity (its params are dicts)."""

    def __init__(self, model):
        self.model = model

    def __hash__(self) -> int:
        return id(self.model)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Ref) and other.model is self.model


def _runner(stage: Stage, step: Step, num: int, has_labels: bool):
    """The compiled ``run(params, key, labels, low, level) -> (x carried on, preview)``;
    one per model, sampler settings and batch size (the level is traced: a sweep of it
    compiles once)."""
    options = tuple(sorted(stage.options.items()))
    settings = (stage.method, stage.num_steps, stage.guidance, options)
    return _compiled(_Ref(stage.model), settings, step.t_end, step.noised, num, has_labels)


@functools.lru_cache(maxsize=32)
def _compiled(ref: _Ref, sampler: tuple, t_end: float, noised: bool, num: int, has_labels: bool):
    from jaxdiff.training import components

    config, net, process = ref.model.config, ref.model.net, ref.model.process
    method, num_steps, w, extra = sampler
    settings = components.sampler_settings(config, method, num_steps, w)
    options, kind = components.sample_options(config, settings, extra), config.sample.kind
    if t_end > 0:
        options["t_end"] = t_end
    classes, w = components.num_classes(config), settings["guidance"]
    if w and not has_labels:
        raise ValueError("a guided stage (guidance > 0) needs labels; pass label= or guidance=0.")
    sr = super_res.settings(config)
    d = config.data
    shape = (num, d.image_size, d.image_size, d.channels)

    def run(params, key, labels, low, level):
        model_fn = components.guided_model_fn(config, net, process, params, w)
        cond = {"label": labels} if classes and has_labels else {}
        k_aug, k_sample = jax.random.split(key)
        if sr is not None:
            cond.update(super_res.conditioning(k_aug, low, level, process, noised))
        x, _ = samplers.sample(
            k_sample, model_fn, process, shape, method=settings["method"],
            num_steps=settings["num_steps"], kind=kind, **options, **cond,
        )  # fmt: skip
        if t_end == 0:
            x = jnp.clip(x, -1.0, 1.0)
            return x, x
        t = batch_time(t_end, x)
        pred = model_fn(x, t, **cond)
        pred = pred[0] if isinstance(pred, tuple) else pred
        x0 = parametrization.convert(pred, kind, "x0", x, t, process)
        return x, jnp.clip(x0, -1.0, 1.0)

    return jax.jit(run)


def _labels(stage: Stage, num: int, label, unconditional: bool):
    """The stage's (num,) labels, or None (unconditional model, or the null class)."""
    classes = int(stage.model.config.model.num_classes)
    if not classes or (unconditional and label is None):
        return None
    return jnp.asarray(pretrained.class_labels(num, label, classes, "this stage's model"))


def generate_progressive(
    key: PRNGKey, stages: Sequence[Stage], num: int | None = None, label=None, *, low=None
) -> Iterator[tuple[int, Array]]:
    """Runs the cascade, yielding ``(stage index, images)`` as each stage is ready.

    Args:
      key: PRNG key; stage i uses ``fold_in(key, i)``.
      stages: a base stage then SR stages, or only SR stages with ``low``.
      num: number of images (default: ``low``'s count).
      label: an int or (num,) ints for the class-conditional stages (default 0, 1, 2, ...
        cycling; with ``low`` and no label, conditional SR stages use the null class).
      low: optional (num, h, w, C) low-resolution images in [-1, 1] to upscale.

    Yields:
      ``(i, images)``: stage i's (num, H_i, W_i, C) images in [-1, 1], computed (blocked
      on) before they are yielded, lowest resolution first.

    Raises:
      ValueError: see :func:`plan`; ``num`` disagreeing with ``low``; labels outside a
        stage's classes, or a label for a cascade of unconditional models.
    """
    steps = plan(stages, None if low is None else tuple(jnp.shape(low)))
    if low is not None:
        low = jnp.asarray(low, jnp.float32)
        if num is not None and num != low.shape[0]:
            raise ValueError(f"num={num} but low holds {low.shape[0]} images.")
        num = low.shape[0]
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer; got {num!r}.")
    if label is not None and not any(s.model.config.model.num_classes for s in stages):
        raise ValueError("every stage of this cascade is unconditional; pass label=None.")
    x = low
    for i, (stage, step) in enumerate(zip(stages, steps, strict=True)):
        labels = _labels(stage, int(num), label, unconditional=low is not None)
        run = _runner(stage, step, int(num), labels is not None)
        level = jnp.float32(step.level)
        x, preview = run(stage.model.params, jax.random.fold_in(key, i), labels, x, level)
        yield i, jax.block_until_ready(preview)


def cascade(key: PRNGKey, stages: Sequence[Stage], num: int | None = None, label=None, *, low=None):
    """The last stage's images (num, H, W, C) in [-1, 1]: :func:`generate_progressive`'s
    last yield (same arguments)."""
    *_, (_, images) = generate_progressive(key, stages, num, label, low=low)
    return images


def main(argv: list[str] | None = None) -> None:
    """``python -m jaxdiff.cascade``: see :mod:`jaxdiff.cascade_cli`."""
    from jaxdiff import cascade_cli

    cascade_cli.main(argv)


if __name__ == "__main__":
    main()
