"""Optimisers (optax): Adam/AdamW with linear warmup and global-norm clipping; parameter EMA.

The EMA here averages *parameters* (``optax.incremental_update``), not updates
(``optax.ema``): ema <- decay * ema + (1 - decay) * params, one average per decay rate.

Example::

  tx = optim.make_optimizer("adamw", learning_rate=2e-4, warmup_steps=1000, clip_norm=1.0)
  ema = optim.ema_init(params, decays=(0.999, 0.9999))
  ema = optim.ema_update(ema, new_params, decays=(0.999, 0.9999), step=step)
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw}


def learning_rate_schedule(learning_rate: float, warmup_steps: int = 0) -> optax.Schedule:
    """Linear warmup from 0 to ``learning_rate`` over ``warmup_steps``, then constant."""
    if warmup_steps <= 0:
        return optax.constant_schedule(learning_rate)
    return optax.linear_schedule(0.0, learning_rate, warmup_steps)


def make_optimizer(
    name: str = "adam",
    learning_rate: float = 2e-4,
    *,
    warmup_steps: int = 0,
    clip_norm: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Builds clip_by_global_norm -> Adam/AdamW with a warmed-up learning rate.

    Args:
      name: "adam" or "adamw" (a key of :data:`OPTIMIZERS`).
      learning_rate: peak learning rate.
      warmup_steps: linear warmup length (0: none).
      clip_norm: global gradient-norm clip (None or <= 0: no clipping).
      b1, b2, eps: Adam's moments and epsilon.
      weight_decay: decoupled weight decay (AdamW only; must be 0 for Adam).

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      ValueError: for an unknown name or weight decay given to Adam.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; valid names: {sorted(OPTIMIZERS)}.")
    kwargs = dict(b1=b1, b2=b2, eps=eps)
    if name == "adamw":
        kwargs["weight_decay"] = weight_decay
    elif weight_decay:
        raise ValueError("weight_decay needs the 'adamw' optimizer; 'adam' has none.")
    opt = OPTIMIZERS[name](learning_rate_schedule(learning_rate, warmup_steps), **kwargs)
    if clip_norm is not None and clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt


def ema_key(decay: float) -> str:
    """The name of an EMA in the train state, e.g. 0.9999 -> "0.9999"."""
    return repr(float(decay))


def ema_init(params, decays: Sequence[float]) -> dict:
    """One copy of ``params`` per decay rate, keyed by :func:`ema_key`.

    Raises:
      ValueError: if a decay is outside [0, 1).
    """
    for decay in decays:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decays must lie in [0, 1); got {decay}.")
    return {ema_key(d): jax.tree.map(jnp.copy, params) for d in decays}


def ema_update(ema: dict, params, decays: Sequence[float], step=None, warmup: bool = False):
    """ema_d <- d' ema_d + (1 - d') params for every decay d.

    Args:
      ema: as returned by :func:`ema_init`.
      params: the new parameters.
      decays: the decay rates (the keys of ``ema``).
      step: the number of optimiser updates done so far (needed if ``warmup``).
      warmup: use d' = min(d, (1 + step) / (10 + step)) (as in TF's ExponentialMovingAverage
        with num_updates), so early averages are not dominated by the initialisation.

    Returns:
      The updated EMA dict.
    """
    new = {}
    for decay in decays:
        d = jnp.asarray(decay, jnp.float32)
        if warmup:
            s = jnp.asarray(step, jnp.float32)
            d = jnp.minimum(d, (1.0 + s) / (10.0 + s))
        new[ema_key(decay)] = optax.incremental_update(params, ema[ema_key(decay)], 1.0 - d)
    return new
