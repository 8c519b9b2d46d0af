"""Drawing the diffusion time t for training losses: uniform, antithetic and importance.

Continuous processes draw t in [t_min, 1]; a :class:`~jaxdiff.schedules.DiscreteSchedule`
of N steps draws t on its grid t_i = (i + 1) / N. Importance sampling is pure, jittable
state (:class:`ImportanceState`) with a per-bin ring buffer of recent values:

- ``mode="score_norm"``: p(bin) proportional to E[||s(x_t, t)||^2], fed with squared score
  norms (the survey's choice);
- ``mode="loss"``: p(bin) proportional to sqrt(E[L_t^2]), fed with per-example losses
  (Nichol & Dhariwal 2021, iDDPM's loss-aware sampler).

Sampling stays uniform until every bin holds a full history (as iDDPM). Draws come with
weights 1 / (num_bins p(bin)), so E[weight * L(t)] equals the uniform-t expectation of L.

Example:
  >>> import jax
  >>> from jaxdiff import time_sampling
  >>> state = time_sampling.importance_init(num_bins=10, history=4)
  >>> t, w = time_sampling.importance_sample(state, jax.random.key(0), batch=8)
  >>> state = time_sampling.importance_update(state, t, values=t**2)
"""

import dataclasses
from collections.abc import Callable

import chex
import flax.struct
import jax
import jax.numpy as jnp

from jaxdiff._types import Array, PRNGKey
from jaxdiff.schedules import DiscreteSchedule


def _uniform_unit(key: PRNGKey, batch: int) -> Array:
    return jax.random.uniform(key, (batch,), jnp.float32)


def _antithetic_unit(key: PRNGKey, batch: int) -> Array:
    """Low-discrepancy draw (Kingma et al. 2021): u_i = (u_0 + i / B) mod 1."""
    u0 = jax.random.uniform(key, (), jnp.float32)
    return jnp.mod(u0 + jnp.arange(batch, dtype=jnp.float32) / batch, 1.0)


# name -> (key, batch) -> u in [0, 1), shape (batch,)
TIME_SAMPLERS: dict[str, Callable[[PRNGKey, int], Array]] = {
    "uniform": _uniform_unit,
    "antithetic": _antithetic_unit,
}


def sample_unit(key: PRNGKey, batch: int, method: str = "uniform") -> Array:
    """Draws u in [0, 1) of shape (batch,) with a method of :data:`TIME_SAMPLERS`.

    Raises:
      ValueError: unknown method (listing the valid ones) or batch < 1.
    """
    if method not in TIME_SAMPLERS:
        raise ValueError(f"Unknown time sampler {method!r}; valid names: {sorted(TIME_SAMPLERS)}.")
    if batch < 1:
        raise ValueError(f"batch must be >= 1; got batch={batch}.")
    return TIME_SAMPLERS[method](key, batch)


def _check_t_min(t_min: float) -> None:
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must lie in [0, 1); got t_min={t_min}.")


def unit_to_time(u: Array, process, t_min: float = 1e-3) -> Array:
    """Maps u in [0, 1) to training times.

    Args:
      u: uniform draws in [0, 1), any shape.
      process: a DiscreteSchedule gives its grid (floor(u N) + 1) / N; anything else
        gives t_min + (1 - t_min) u.
      t_min: smallest time for continuous processes.

    Returns:
      t, float32, shaped like ``u``.
    """
    if isinstance(process, DiscreteSchedule):
        n = process.num_steps
        i = jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)
        return (i + 1).astype(jnp.float32) / n
    return t_min + (1.0 - t_min) * u


def sample_time(
    key: PRNGKey, batch: int, process=None, method: str = "uniform", t_min: float = 1e-3
) -> Array:
    """Draws training times t.

    Args:
      key: a PRNG key.
      batch: B, the number of times.
      process: a process; a :class:`~jaxdiff.schedules.DiscreteSchedule` puts t on its grid
        (i + 1) / N (``t_min`` is then unused), anything else gives t in [t_min, 1).
      method: "uniform" (i.i.d.) or "antithetic" (stratified, low discrepancy).
      t_min: smallest time for continuous processes, in [0, 1).

    Returns:
      t, float32 of shape (B,).

    Raises:
      ValueError: unknown method or t_min outside [0, 1).
    """
    _check_t_min(t_min)
    return unit_to_time(sample_unit(key, batch, method), process, t_min)


def _score_norm_weights(history: Array) -> Array:
    return jnp.mean(history, axis=-1)


def _loss_weights(history: Array) -> Array:
    return jnp.sqrt(jnp.mean(jnp.square(history), axis=-1))


# mode -> history (K, H) -> unnormalised p(bin), shape (K,)
IMPORTANCE_MODES: dict[str, Callable[[Array], Array]] = {
    "score_norm": _score_norm_weights,
    "loss": _loss_weights,
}


@flax.struct.dataclass
class ImportanceState:
    """Per-bin ring buffers of recent values for importance sampling of t.

    Attributes:
      history: recent values per bin, shape (num_bins, history).
      count: how many values each bin holds, capped at ``history``; int32 (num_bins,).
      position: the next slot written in each bin's ring buffer; int32 (num_bins,).
      mode: "score_norm" or "loss" (static), see the module docstring.
      t_min: smallest time of continuous bins (static).
      discrete: bins are the grid steps (i + 1) / num_bins of a DiscreteSchedule (static).
      uniform_mix: probability mass spread uniformly over bins once sampling is adaptive,
        so no bin's weight 1 / (K p) explodes (static; iDDPM uses 1e-3).
    """

    history: Array
    count: Array
    position: Array
    mode: str = flax.struct.field(pytree_node=False, default="loss")
    t_min: float = flax.struct.field(pytree_node=False, default=1e-3)
    discrete: bool = flax.struct.field(pytree_node=False, default=False)
    uniform_mix: float = flax.struct.field(pytree_node=False, default=1e-3)

    @property
    def num_bins(self) -> int:
        return self.history.shape[0]


def importance_init(
    num_bins: int,
    history: int,
    *,
    mode: str = "loss",
    process=None,
    t_min: float = 1e-3,
    uniform_mix: float = 1e-3,
) -> ImportanceState:
    """Creates an empty importance-sampling state (sampling is uniform until it fills).

    Args:
      num_bins: K, the number of t-bins; equal-width bins of [t_min, 1] for a continuous
        process, or the N grid steps of a DiscreteSchedule (then K must equal N).
      history: H, the values kept per bin (iDDPM uses 10).
      mode: "score_norm" (feed squared score norms) or "loss" (feed per-example losses).
      process: the process t is drawn for; only its type matters.
      t_min: smallest time for a continuous process, in [0, 1).
      uniform_mix: uniform probability mass mixed in, in [0, 1].

    Returns:
      An :class:`ImportanceState`.

    Raises:
      ValueError: unknown mode, K or H < 1, K != N for a schedule, t_min or uniform_mix
        out of range.
    """
    if mode not in IMPORTANCE_MODES:
        raise ValueError(
            f"Unknown importance mode {mode!r}; valid names: {sorted(IMPORTANCE_MODES)}."
        )
    if num_bins < 1 or history < 1:
        raise ValueError(f"Need num_bins >= 1 and history >= 1; got {num_bins=}, {history=}.")
    _check_t_min(t_min)
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform_mix must lie in [0, 1]; got uniform_mix={uniform_mix}.")
    discrete = isinstance(process, DiscreteSchedule)
    if discrete and num_bins != process.num_steps:
        raise ValueError(
            f"For a DiscreteSchedule num_bins must equal num_steps={process.num_steps}; "
            f"got num_bins={num_bins}."
        )
    return ImportanceState(
        history=jnp.zeros((num_bins, history), jnp.float32),
        count=jnp.zeros((num_bins,), jnp.int32),
        position=jnp.zeros((num_bins,), jnp.int32),
        mode=mode,
        t_min=float(t_min),
        discrete=discrete,
        uniform_mix=float(uniform_mix),
    )


def importance_probs(state: ImportanceState) -> Array:
    """p(bin), shape (num_bins,): uniform until every bin's history is full."""
    k, h = state.history.shape
    w = jnp.maximum(IMPORTANCE_MODES[state.mode](state.history), 1e-12)
    p = (1.0 - state.uniform_mix) * w / jnp.sum(w) + state.uniform_mix / k
    full = jnp.all(state.count >= h)
    return jnp.where(full, p, jnp.full((k,), 1.0 / k))


def _bin_of(state: ImportanceState, t: Array) -> Array:
    k = state.num_bins
    if state.discrete:
        i = jnp.round(t * k).astype(jnp.int32) - 1
    else:
        i = jnp.floor((t - state.t_min) / (1.0 - state.t_min) * k).astype(jnp.int32)
    return jnp.clip(i, 0, k - 1)


def importance_sample(state: ImportanceState, key: PRNGKey, batch: int) -> tuple[Array, Array]:
    """Draws times t from p(bin) (uniform within a continuous bin) with their weights.

    Args:
      state: an :class:`ImportanceState`.
      key: a PRNG key.
      batch: B, the number of times.

    Returns:
      ``(t, weights)``, float32 each of shape (B,); weights = 1 / (num_bins p(bin)), so
      E[weights * L(t)] is the expectation of L under uniform t.
    """
    k = state.num_bins
    key_bin, key_in = jax.random.split(key)
    p = importance_probs(state)
    bins = jax.random.categorical(key_bin, jnp.log(p), shape=(batch,))
    if state.discrete:
        t = (bins + 1).astype(jnp.float32) / k
    else:
        u = (bins + jax.random.uniform(key_in, (batch,), jnp.float32)) / k
        t = state.t_min + (1.0 - state.t_min) * u
    return t, 1.0 / (k * p[bins])


def importance_update(state: ImportanceState, t: Array, values: Array) -> ImportanceState:
    """Writes one value per example into the ring buffer of its t-bin.

    Args:
      state: an :class:`ImportanceState`.
      t: the examples' times, shape (B,).
      values: squared score norms (mode "score_norm") or losses (mode "loss"), shape (B,).

    Returns:
      The updated state. Examples that share a bin take consecutive slots in batch order;
      if more than ``history`` share one, the buffer keeps an arbitrary ``history`` of them.
    """
    chex.assert_rank(t, 1)
    chex.assert_equal_shape([t, values])
    k, h = state.history.shape
    bins = _bin_of(state, t)
    same = bins[:, None] == bins[None, :]
    earlier = jnp.sum(jnp.tril(same, k=-1), axis=1).astype(jnp.int32)
    slots = (state.position[bins] + earlier) % h
    history = state.history.at[bins, slots].set(values.astype(jnp.float32))
    added = jnp.zeros((k,), jnp.int32).at[bins].add(1)
    return dataclasses.replace(
        state,
        history=history,
        count=jnp.minimum(state.count + added, h),
        position=(state.position + added) % h,
    )
