"""The denoiser adapter: a network ``F(x, noise_level, **cond)`` as a model function.

Only this module maps the time t in [0, 1] of the processes to the network's noise input
(e.g. 1000 t for DDPM-style networks, log-SNR for VE). Training, sampling and evaluation
all build their model functions here; it sits below them and imports no training code.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff import denoiser, sdes
  >>> apply = lambda variables, x, level, train=False, rngs=None: x * level[:, None]
  >>> model_fn = denoiser.make_model_fn(apply, {}, sdes.VPSDE(), "t1000")
  >>> model_fn(jnp.ones((2, 3)), jnp.array([0.5, 1.0])).tolist()
  [[500.0, 500.0, 500.0], [1000.0, 1000.0, 1000.0]]
"""

from collections.abc import Callable

import jax.numpy as jnp

from jaxdiff._process import Process
from jaxdiff._types import Array


def _t_times_1000(process: Process, t: Array) -> Array:
    return 1000.0 * t


def _log_snr(process: Process, t: Array) -> Array:
    return process.log_snr(t)


def _identity(process: Process, t: Array) -> Array:
    return t


# How the network's ``noise_level`` input is computed from t in [0, 1]. "t1000" matches
# DDPM-style networks (timestep embedding of 1000 t); "log_snr" suits continuous processes
# whose t-scale means little (VE); "t" passes t through.
NOISE_LEVELS = {"t1000": _t_times_1000, "log_snr": _log_snr, "t": _identity}


def noise_level_fn(name: str) -> Callable:
    """Returns ``f(process, t) -> noise_level`` (B,) from :data:`NOISE_LEVELS`.

    Raises:
      ValueError: for an unknown name, listing the valid ones.
    """
    if name not in NOISE_LEVELS:
        raise ValueError(f"Unknown noise_level {name!r}; valid names: {sorted(NOISE_LEVELS)}.")
    return NOISE_LEVELS[name]


def make_model_fn(
    apply_fn: Callable,
    params,
    process: Process,
    noise_level: str = "t1000",
    *,
    split_output=False,
    train=False,
    dropout_key=None,
):
    """Wraps ``net.apply`` as ``model_fn(x, t, **cond) -> prediction``.

    Args:
      apply_fn: ``net.apply``.
      params: the network's parameters.
      process: the diffusion process (for noise levels such as log-SNR).
      noise_level: a key of :data:`NOISE_LEVELS`.
      split_output: the network predicts 2C channels (learned variance): return
        ``(prediction, v)`` split on the last axis, as the hybrid loss and samplers expect.
      train: run the network in training mode (dropout on, needs ``dropout_key``).
      dropout_key: PRNG key for dropout.

    Returns:
      ``model_fn(x, t, **cond)``; x (B, H, W, C), t (B,) in [0, 1]. A super-resolution
      model's ``aug_level=`` (B,) (the time of its noised low-resolution input, see
      :mod:`jaxdiff.super_res`) is mapped to the network's input like t.
    """
    level = noise_level_fn(noise_level)

    def model_fn(x, t, **cond):
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
        if cond.get("aug_level") is not None:
            aug = jnp.broadcast_to(jnp.asarray(cond["aug_level"], jnp.float32), x.shape[:1])
            cond = {**cond, "aug_level": level(process, aug)}
        rngs = {"dropout": dropout_key} if train else {}
        out = apply_fn({"params": params}, x, level(process, t), train=train, rngs=rngs, **cond)
        if split_output:
            return out[..., : x.shape[-1]], out[..., x.shape[-1] :]
        return out

    return model_fn
