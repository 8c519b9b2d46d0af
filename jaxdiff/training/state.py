"""The train state (a pytree orbax saves whole) and the device mesh it lives on.

Parameters, EMAs and optimiser state are replicated over a 1-D mesh of all devices
(axis "data"); batches are sharded over it. The PRNG key is kept as raw uint32 key data
so that checkpoints hold plain arrays; per-step keys are ``fold_in(key, step)``.

Example::

  mesh = state.make_mesh()
  st = state.create(params, tx, ema_decays=(0.9999,), seed=0)
  st = jax.device_put(st, state.replicated(mesh))
"""

from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdiff.training import optim

DATA_AXIS = "data"
# PRNG implementations a run may use (``config.prng_impl``); see benchmarks/prng.py for the
# measured cost of each and docs/training.md for the choice. The key data's shape depends
# on the implementation ((2,) for threefry2x32, (4,) for rbg and unsafe_rbg).
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
DEFAULT_PRNG_IMPL = "threefry2x32"


def check_prng_impl(name: str) -> str:
    """Returns ``name`` if it is one of :data:`PRNG_IMPLS`, else raises ValueError."""
    if name not in PRNG_IMPLS:
        raise ValueError(f"unknown PRNG implementation {name!r}; valid: {', '.join(PRNG_IMPLS)}.")
    return name


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs, besides the data iterator.

    Attributes:
      step: number of optimiser updates done, int32 scalar.
      params: the network parameters.
      ema: {decay name: EMA parameters} (see ``optim.ema_init``).
      opt_state: the optax state.
      key: the run's root key as uint32 key data (``jax.random.key_data``).
      importance: the importance-sampling state of the loss (or None).
      prng_impl: the PRNG implementation of ``key`` (a :data:`PRNG_IMPLS` name; static).
    """

    step: jax.Array
    params: Any
    ema: dict
    opt_state: Any
    key: jax.Array
    importance: Any = None
    prng_impl: str = flax.struct.field(pytree_node=False, default=DEFAULT_PRNG_IMPL)

    @property
    def root_key(self) -> jax.Array:
        """The root key as a typed PRNG key."""
        return jax.random.wrap_key_data(self.key, impl=self.prng_impl)


def create(
    params,
    tx: optax.GradientTransformation,
    ema_decays: Sequence[float],
    seed: int,
    importance=None,
    prng_impl: str = DEFAULT_PRNG_IMPL,
) -> TrainState:
    """A fresh train state at step 0.

    Args:
      params: initial network parameters.
      tx: the optimiser.
      ema_decays: EMA decay rates (may be empty).
      seed: the root seed; the root key is ``fold_in(key(seed), 1)`` (init uses 0).
      importance: an importance-sampling state (``time_sampling.importance_init``) or None.
      prng_impl: the PRNG implementation (:data:`PRNG_IMPLS`).
    """
    root = jax.random.key(seed, impl=check_prng_impl(prng_impl))
    key = jax.random.key_data(jax.random.fold_in(root, 1))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema=optim.ema_init(params, ema_decays),
        opt_state=tx.init(params),
        key=key,
        importance=importance,
        prng_impl=prng_impl,
    )


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "data" over all (global) devices."""
    devices = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devices.reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that copies an array to every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits an array's leading (batch) axis over "data"."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the batch splits evenly over the mesh's devices."""
    n = mesh.devices.size
    if global_batch_size % n:
        raise ValueError(
            f"batch size {global_batch_size} is not divisible by the {n} devices; "
            f"use a multiple of {n} (--config.data.batch_size)."
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles this host's numpy batch into global arrays sharded over "data"."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def abstract(state: TrainState, sharding: NamedSharding) -> TrainState:
    """Shape/dtype/sharding placeholders of ``state`` (orbax's restore target)."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x), sharding=sharding), state
    )
