"""Typed sampler options: one frozen record per method, fields, defaults and checks together.

Every method of :data:`jaxdiff.samplers.METHODS` has an options record, a subclass of
:class:`SamplerOptions` defined next to its stepper; the stepper receives the record (not a
dict) and reads its fields as attributes. A field is one of three kinds:

- ``traced``: a number that enters the compiled sampler as a float32 array leaf, so a new
  value -- or the same value as ``0``, ``0.0`` or a JAX scalar -- reuses the program;
- ``static``: fixes the compiled program (an int that sets a loop length, a string or a
  None-or-value switch that picks a branch); a new value compiles a new program;
- ``host``: only used on the host to build the time grid (``grid``, ``rho``,
  ``sigma_min``, ``spacing``); it never reaches the compiled program.

A field's check runs on concrete values only: an option passed as a traced value (e.g.
``sample`` called under an outer ``jit`` with a traced ``eta``) cannot be checked by Python
code and is used as given.

Adding an option is one line in the record of its method's module, e.g. in ``edm.py``::

    S_noise: float = traced(1.0, POSITIVE)

and the stepper reads ``opts.S_noise``.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import flax.struct
import jax
import jax.numpy as jnp

Check = tuple[Callable[[Any], bool], str]
T = TypeVar("T", bound="SamplerOptions")

POSITIVE: Check = (lambda v: v > 0, "a float > 0")
NON_NEGATIVE: Check = (lambda v: v >= 0, "a float >= 0")
BOOL: Check = (lambda v: isinstance(v, bool), "True or False")


def integer(low: int) -> Check:
    """Check: an integer (not a bool) >= ``low``."""
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low
    return ok, f"an integer >= {low}"


def one_of(*names: str) -> Check:
    """Check: one of the strings ``names``."""
    return (lambda v: v in names), " or ".join(repr(n) for n in names)


def _field(kind: str, default: Any, check: Check | None) -> Any:
    metadata = {"kind": kind, "check": check}
    return flax.struct.field(pytree_node=kind == "traced", default=default, metadata=metadata)


def traced(default: float | None, check: Check | None = None) -> Any:
    """A float option traced into the compiled sampler (new values do not recompile)."""
    return _field("traced", default, check)


def static(default: Any, check: Check | None = None) -> Any:
    """An option that fixes the compiled program (hashed; new values recompile)."""
    return _field("static", default, check)


def host(default: Any, check: Check | None = None) -> Any:
    """An option used only on the host (to build the time grid)."""
    return _field("host", default, check)


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


@flax.struct.dataclass
class SamplerOptions:
    """The options every method takes; subclasses add their own and change defaults.

    Attributes:
      num_steps: grid intervals (static; set by ``sample``'s ``num_steps``).
      t_start, t_end: first and last time (traced; the grid is built from their values).
      denoise_final: replace x by D(x, t_end) at the end (+1 network call).
      return_trajectory: also return every state (N + 1, B, ...).
      learned_variance: the model returns (prediction, v).
      preview_fn: host function ``fn(step, t, x0)`` for progressive previews, or None.
      preview_every: call ``preview_fn`` every this many steps (and at the last).
      grid: the time grid's name (:data:`jaxdiff.samplers.grids.GRIDS`; host).
      rho, sigma_min: the ``edm`` grid's parameters (None: its defaults; host).
      spacing: the ``discrete`` grid's spacing (None: "trailing"; host).
    """

    num_steps: int = static(1, integer(1))
    t_start: float = traced(1.0)
    t_end: float = traced(0.0)
    denoise_final: bool = static(False, BOOL)
    return_trajectory: bool = static(False, BOOL)
    learned_variance: bool = static(False, BOOL)
    preview_fn: Callable | None = static(
        None, (lambda v: v is None or callable(v), "None or a callable fn(step, t, x0)")
    )
    preview_every: int = static(1, integer(1))
    grid: str | None = host(None)
    rho: float | None = host(None)
    sigma_min: float | None = host(None)
    spacing: str | None = host(None)

    @classmethod
    def create(cls: type[T], method: str, **options: Any) -> T:
        """The record with ``options`` over the defaults, each checked.

        Raises:
          ValueError: an option the method does not take (listing the valid ones), or a
            concrete value its check refuses (saying what is allowed).
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ValueError(
                f"Unknown options {unknown} for method {method!r}; valid options: {sorted(fields)}."
            )
        for name, value in options.items():
            check = fields[name].metadata.get("check")
            if check is not None and _is_concrete(value) and not check[0](value):
                raise ValueError(f"Option {name} must be {check[1]}; got {name}={value!r}.")
        return cls(**options)

    @classmethod
    def names(cls, kind: str) -> tuple[str, ...]:
        """The names of the fields of ``kind`` ("traced", "static" or "host")."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["kind"] == kind)

    def grid_params(self) -> dict[str, Any]:
        """The grid builder's extra parameters that were set (rho, sigma_min, spacing)."""
        values = {k: getattr(self, k) for k in ("rho", "sigma_min", "spacing")}
        return {k: v for k, v in values.items() if v is not None}

    def compiled(self: T) -> T:
        """The record as the compiled sampler sees it.

        Traced fields become float32 scalar arrays (shape ()), host fields None, so only
        the static fields key the compilation cache.
        """
        changes: dict[str, Any] = dict.fromkeys(self.names("host"))
        changes.update(
            {k: jnp.asarray(getattr(self, k), jnp.float32) for k in self.names("traced")}
        )
        return dataclasses.replace(self, **changes)
