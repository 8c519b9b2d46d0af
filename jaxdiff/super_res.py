"""Super-resolution diffusion with noise-conditioning augmentation (Ho et al. 2021).

A super-resolution (SR) model samples x (B, H, W, C) given a low-resolution image
(B, H / f, W / f, C). Its network (:class:`jaxdiff.models.super_res.SuperResolution`) sees
the low-resolution image upsampled and concatenated to x_t, and a second noise level:

- **Conditioning augmentation.** The low-resolution input is noised with the model's own
  process to a level s (a time in [0, 1]): z_s = scale(s) low + sigma(s) n, and s is
  given to the network (``aug_level=``). Training draws s ~ U[0, aug_max] per example
  (``aug_max = 0``: no augmentation); at sampling time s is a knob (``sr.aug_level`` by
  default). A little noise hides the difference between real low-resolution images (seen
  in training) and a base model's samples (seen in a cascade), which otherwise compounds.
- **Non-truncated** (Ho et al.'s Gaussian conditioning augmentation): the previous stage
  runs to t = 0, its sample is clipped and noised to s (``noised=False`` below).
- **Truncated**: the previous stage's reverse process stops at t = s and its noisy x_s,
  which follows the same marginal as z_s when both stages share a process, is the input
  (``noised=True``): no extra noise, and the base model saves the steps below s.

Training pairs come from the data themselves: the loss wrapper :func:`make_loss` takes
x0 (B, H, W, C), averages f x f blocks into the low-resolution image, augments it and
passes ``low_res=`` and ``aug_level=`` to the model with any other conditioning.

A config opts in with a section ``sr`` (see :data:`FIELDS`); ``training.components``
builds the network and the loss from it, and :mod:`jaxdiff.cascade` chains the models.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import sdes, super_res
  >>> low = jnp.zeros((2, 4, 4, 1))
  >>> z = super_res.augment(jax.random.key(0), low, 0.0, sdes.VPSDE())
  >>> bool(jnp.all(z == low))  # level 0 is no augmentation
  True
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _settings, samplers
from jaxdiff._process import Process, batch_time, expand_like
from jaxdiff._types import Array, PRNGKey
from jaxdiff.models.super_res import UPSAMPLERS, downsample_mean

# The fields of a config's ``sr`` section and what they mean.
FIELDS = {
    "factor": "output size / low-resolution size (an integer >= 2)",
    "upsample": f"how the network upsamples the low-resolution input: {sorted(UPSAMPLERS)}",
    "aug_max": "training draws the augmentation level s ~ U[0, aug_max] (0: no augmentation)",
    "aug_level": "the default sampling-time level s, in [0, aug_max]",
}
# Noise-level maps that are finite at s = 0 (log-SNR is infinite there).
NOISE_LEVELS = ("t1000", "t")
# fold_in stream of the loss key that draws the augmentation (the inner loss gets the key).
_AUG_STREAM = 0x5352


@dataclasses.dataclass(frozen=True)
class Settings:
    """A config's ``sr`` section, checked (see :data:`FIELDS`)."""

    factor: int = 2
    upsample: str = "nearest"
    aug_max: float = 0.0
    aug_level: float = 0.0

    def __post_init__(self):
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, int) or f < 2:
            raise ValueError(f"sr.factor={f!r}: must be an integer >= 2.")
        if self.upsample not in UPSAMPLERS:
            raise ValueError(f"sr.upsample={self.upsample!r}: valid: {sorted(UPSAMPLERS)}.")
        if not 0.0 <= self.aug_max <= 1.0:
            raise ValueError(f"sr.aug_max={self.aug_max}: must be in [0, 1] (a time).")
        check_level(self.aug_level, self.aug_max, "sr.aug_level")


def check_level(level: float, aug_max: float, what: str = "aug_level") -> None:
    """Raises ValueError unless 0 <= level <= aug_max (the levels the model was trained on)."""
    if not 0.0 <= float(level) <= aug_max:
        raise ValueError(
            f"{what}={level}: must be in [0, aug_max] = [0, {aug_max}], the augmentation "
            "levels this model was trained on."
        )


def settings(config) -> Settings | None:
    """The checked ``sr`` section of a config, or None for a model that is not SR.

    Raises:
      ValueError: an unknown field (listing the valid ones), a value out of range, an image
        size not divisible by the factor, or a noise-level map infinite at s = 0.
    """
    fields = _settings.config_section(config, "sr", FIELDS)
    if fields is None:
        return None
    s = Settings(**fields)
    if config.data.image_size % s.factor:
        raise ValueError(
            f"data.image_size={config.data.image_size} is not divisible by sr.factor={s.factor}."
        )
    if config.loss.noise_level not in NOISE_LEVELS:
        raise ValueError(
            f"loss.noise_level={config.loss.noise_level!r}: an SR model embeds its "
            f"augmentation level like t, which must be finite at 0; use one of {NOISE_LEVELS}."
        )
    return s


def augment(key: PRNGKey, low: Array, level, process: Process) -> Array:
    """Noises ``low`` to ``level`` with ``process``: scale(s) low + sigma(s) n.

    Args:
      key: PRNG key of the noise n.
      low: (B, h, w, C) low-resolution images.
      level: s, a scalar or (B,) times in [0, 1].
      process: the SR model's process.

    Returns:
      (B, h, w, C); examples at s = 0 are ``low`` exactly, for every process (even VE,
      whose sigma(0) = sigma_min).
    """
    s = batch_time(level, low)
    noised, _ = process.sample_marginal(key, low, s)
    return jnp.where(expand_like(s, low) > 0, noised, low)


def make_loss(loss_fn: Callable, process: Process, *, factor: int, aug_max: float) -> Callable:
    """Wraps a loss for an SR model: the low-resolution input comes from x0 itself.

    Per batch: low = mean of x0's f x f blocks, s ~ U[0, aug_max] per example, z =
    :func:`augment` (low, s); ``loss_fn`` then runs on x0 with ``low_res=z, aug_level=s``
    added to the conditioning. The augmentation draws from ``fold_in(key, stream)`` and
    ``loss_fn`` gets ``key`` itself, so with aug_max = 0 the wrapper equals ``loss_fn``
    called with the clean low-resolution image at level 0.

    Args:
      loss_fn: ``loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond)``.
      process: the model's process (also the augmentation's).
      factor: f.
      aug_max: the largest training level (0: no augmentation).

    Returns:
      a loss function with the same signature (and ``needs_step`` as ``loss_fn``).
    """
    Settings(factor=factor, aug_max=aug_max)  # checks

    def sr_loss(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        low = downsample_mean(x0, factor)
        k_level, k_noise = jax.random.split(jax.random.fold_in(key, _AUG_STREAM))
        s = aug_max * jax.random.uniform(k_level, (x0.shape[0],))
        z = augment(k_noise, low, s, process)
        return loss_fn(model_fn, key, x0, t=t, t_weights=t_weights, low_res=z, aug_level=s, **cond)

    sr_loss.needs_step = getattr(loss_fn, "needs_step", False)  # type: ignore[attr-defined]
    return sr_loss


def conditioning(key: PRNGKey, low: Array, level, process: Process, noised: bool = False):
    """The SR model's conditioning ``{"low_res": z, "aug_level": s (B,)}``.

    Args:
      key: PRNG key of the augmentation noise (unused with ``noised``).
      low: (B, h, w, C) low-resolution images: clean, or with ``noised`` already at s.
      level: s, a scalar or (B,) times in [0, 1].
      process: the SR model's process.
      noised: ``low`` is already at level s (truncated conditioning augmentation).
    """
    if jnp.ndim(low) != 4:
        raise ValueError(f"low must be (B, h, w, C), rank 4; got shape {jnp.shape(low)}.")
    s = batch_time(level, low)
    return {"low_res": low if noised else augment(key, low, s, process), "aug_level": s}


def upscale(
    key: PRNGKey,
    model_fn,
    process: Process,
    low: Array,
    *,
    factor: int,
    aug_level,
    method: str,
    num_steps: int,
    kind: str = "score",
    noised: bool = False,
    **options,
) -> tuple[Array, dict]:
    """Samples high-resolution images given low-resolution ones.

    Args:
      key: PRNG key (one half augments, the other samples).
      model_fn: ``(x, t, low_res=, aug_level=, **cond) -> prediction``.
      process: the SR model's process.
      low: (B, h, w, C) low-resolution images: clean (in [-1, 1]) or, with ``noised``,
        already at ``aug_level`` (a truncated previous stage).
      factor: f; the samples are (B, f h, f w, C).
      aug_level: s, a scalar or (B,) in [0, 1].
      method, num_steps, kind: as ``samplers.sample``.
      noised: ``low`` is already noised to s (truncated conditioning augmentation).
      **options: other ``samplers.sample`` options and conditioning (e.g. ``label=``).

    Returns:
      ``(x, info)`` of ``samplers.sample``; x unclipped.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxdiff import sdes, super_res
      >>> model_fn = lambda x, t, low_res, aug_level: jnp.zeros_like(x)  # eps = 0
      >>> x, info = super_res.upscale(jax.random.key(0), model_fn, sdes.VPSDE(),
      ...     jnp.zeros((2, 4, 4, 1)), factor=2, aug_level=0.1, method="ode_euler",
      ...     num_steps=4, kind="eps")
      >>> x.shape
      (2, 8, 8, 1)
    """
    k_aug, k_sample = jax.random.split(key)
    cond = conditioning(k_aug, low, aug_level, process, noised)
    b, h, w, c = low.shape
    shape = (b, h * factor, w * factor, c)
    return samplers.sample(
        k_sample,
        model_fn,
        process,
        shape,
        method=method,
        num_steps=num_steps,
        kind=kind,
        **cond,
        **options,
    )
