"""Samplers: one call, ``sample(...)``, for every method; grids apart from steppers.

``sample(key, model_fn, process, shape, method=..., num_steps=...)`` draws samples from a
diffusion model. ``model_fn(x, t, **cond)`` predicts ``kind`` ("score", "eps", "x0" or
"v"); ``process`` is an SDE of :mod:`jaxdiff.sdes` or a
:class:`~jaxdiff.schedules.DiscreteSchedule`. The method's stepper (one module per family)
runs over a time grid (:mod:`~jaxdiff.samplers.grids`) inside one ``lax.scan``, or under
a ``lax.while_loop`` for ``ode_adaptive``; everything compiles once per (shape,
num_steps, method, static options). The process, the key, ``x_init``, conditioning,
float options and the array leaves of ``model_fn`` (pass parameters with
``jax.tree_util.Partial(apply_fn, params)`` or ``functools.partial``) are arguments of
the compiled function, so new values do not recompile.

``ddpm`` and ``ddim`` need a DiscreteSchedule. Every other method, given a
DiscreteSchedule, integrates the schedule itself: its marginal is the trained
``alphas_cumprod`` at the step times t_i = (i + 1) / N and log-linear in t between them
(DPM-Solver's discrete ``NoiseScheduleVP``), and every time where a fixed-grid method calls
the network (grid times, t_start, t_end, EDM's churned level) is moved to the nearest step
time, so a discrete-time network is evaluated only at noise levels it was trained on.
Only ``ode_adaptive`` steps between levels, where it sees the interpolated table (as
DPM-Solver does for discrete models).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import samplers, sdes
  >>> score = lambda x, t: -x  # data N(0, I) under VP: p_t = N(0, I) at every t
  >>> x, info = samplers.sample(jax.random.key(0), score, sdes.VPSDE(), (4, 2),
  ...                           method="ode_heun", num_steps=10)
  >>> x.shape, int(info["nfe"])
  ((4, 2), 19)
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization
from jaxdiff._process import Process
from jaxdiff._types import Array, PRNGKey
from jaxdiff.samplers import (
    adaptive,
    consistency,
    discrete,
    dpm_solver,
    edm,
    grids,
    langevin,
    ode,
    sde,
)
from jaxdiff.samplers._driver import Stepper, as_key, make_net, normal, run_grid, split
from jaxdiff.samplers.options import SamplerOptions
from jaxdiff.schedules import DiscreteSchedule


class Method(NamedTuple):
    """A registered sampler: its stepper and its options record.

    Attributes:
      stepper: the step function and order (None: the adaptive solve).
      options: the options record (defaults, checks, static vs traced; its module).
      discrete: needs a DiscreteSchedule.
      levels: num_steps counts noise levels from t_start to t_end, both included (the
        grid has num_steps - 1 intervals; the stepper's first step stays at t_start).
    """

    stepper: Stepper | None
    options: type[SamplerOptions]
    discrete: bool = False
    levels: bool = False


METHODS: dict[str, Method] = {
    "ddpm": Method(discrete.DDPM, discrete.DDPMOptions, discrete=True),
    "ddim": Method(discrete.DDIM, discrete.DDIMOptions, discrete=True),
    "euler_maruyama": Method(sde.EULER_MARUYAMA, sde.SDEOptions),
    "pc": Method(sde.PC, sde.PCOptions),
    "annealed_langevin": Method(langevin.ANNEALED_LANGEVIN, langevin.LangevinOptions, levels=True),
    "ode_euler": Method(ode.EULER, ode.ODEOptions),
    "ode_heun": Method(ode.HEUN, ode.ODEOptions),
    "ode_adaptive": Method(None, adaptive.AdaptiveOptions),
    "edm_stochastic": Method(edm.EDM_STOCHASTIC, edm.EDMOptions),
    "dpm_solver++": Method(dpm_solver.DPM_SOLVER_PP, dpm_solver.DPMSolverOptions),
    "consistency": Method(consistency.CONSISTENCY, consistency.ConsistencyOptions),
}

# Conditioning passed to model_fn (each with leading axis B); low_res and aug_level are a
# super-resolution model's low-resolution input and its noise level (jaxdiff.super_res);
# tokens and semantic_map a latent model's prompt and map (jaxdiff.latent).
COND_KEYS = ("label", "context", "context_mask", "low_res", "aug_level", "tokens", "semantic_map")


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid methods: {sorted(METHODS)}.")
    return METHODS[name]


def _check_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
    if not (
        isinstance(shape, tuple)
        and len(shape) >= 1
        and all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape)
    ):
        raise ValueError(f"shape must be a tuple (B, ...) of positive integers; got {shape!r}.")
    return tuple(int(d) for d in shape)


def _check_inputs(shape, x_init, cond, t_start: float) -> None:
    if x_init is not None and tuple(jnp.shape(x_init)) != shape:
        raise ValueError(f"x_init must have shape {shape}; got {tuple(jnp.shape(x_init))}.")
    if x_init is None and t_start < 1.0:
        raise ValueError(
            f"t_start={t_start} < 1 needs x_init: the input noised to t_start "
            "(e.g. process.sample_marginal(key, x0, t_start)[0])."
        )
    for k, v in cond.items():
        if jnp.ndim(v) < 1 or jnp.shape(v)[0] != shape[0]:
            raise ValueError(
                f"Conditioning {k}= must have batch size {shape[0]} (its first axis); "
                f"got shape {jnp.shape(v)}."
            )


def _is_dynamic(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic)) or type(leaf) is float


def _split_model(model_fn):
    """(static part, array leaves): array/float leaves are traced, the rest is hashed."""
    if isinstance(model_fn, functools.partial) and not isinstance(model_fn, jax.tree_util.Partial):
        model_fn = jax.tree_util.Partial(model_fn.func, *model_fn.args, **model_fn.keywords)
    leaves, treedef = jax.tree.flatten(model_fn)
    static = tuple(None if _is_dynamic(x) else x for x in leaves)
    return (treedef, static), [x if _is_dynamic(x) else None for x in leaves]


class _Config(NamedTuple):
    """What fixes the compiled program besides the options' static fields (hashable)."""

    method: str
    shape: tuple
    kind: str
    model: tuple
    has_x_init: bool


@functools.partial(jax.jit, static_argnums=0)
def _run(config: _Config, dyn: dict):
    treedef, static = config.model
    leaves = [s if d is None else d for s, d in zip(static, dyn["model"], strict=True)]
    model_fn = jax.tree.unflatten(treedef, leaves)
    opts, process, times = dyn["opts"], dyn["process"], dyn["times"]
    net = make_net(model_fn, config.kind, process, dyn["cond"], opts.learned_variance)
    key_init, key_steps = split(dyn["key"])
    if config.has_x_init:
        x = dyn["x_init"]
    else:
        x = process.prior_std * normal(key_init, config.shape)
    stepper = METHODS[config.method].stepper
    trajectory = None
    if stepper is None:
        x, info = adaptive.solve(net, process, x, opts)
    else:
        preview = None if opts.preview_fn is None else (opts.preview_fn, opts.preview_every)
        x, nfe, trajectory = run_grid(
            stepper, net, process, x, times, key_steps, opts, opts.return_trajectory, preview
        )
        info = {"nfe": nfe}
    if opts.denoise_final:
        x = net(x, opts.t_end).x0
        info["nfe"] = info["nfe"] + 1
    if trajectory is not None:
        info["trajectory"], info["times"] = trajectory, times
    return x, info


def _grid_times(spec: Method, process: Process, opts: SamplerOptions) -> Array:
    """The grid's times (N + 1,) built on the host (a dummy (2,) for ode_adaptive)."""
    if spec.stepper is None:
        grids.check_span(opts.num_steps, opts.t_start, opts.t_end)
        for k in ("return_trajectory", "preview_fn"):
            if getattr(opts, k):
                raise ValueError(f"{k} is not available for ode_adaptive.")
        return jnp.zeros((2,), jnp.float32)
    intervals = opts.num_steps
    if spec.levels:
        grids.check_span(opts.num_steps, opts.t_start, opts.t_end)
        if opts.num_steps < 2:
            raise ValueError(
                f"num_steps counts noise levels from t_start to t_end here; it must be >= 2; "
                f"got num_steps={opts.num_steps}."
            )
        intervals = opts.num_steps - 1
    # Grids are host data: build them eagerly even when sample() is called under jit.
    assert opts.grid is not None, "every fixed-grid method's record names its grid"
    with jax.ensure_compile_time_eval():
        try:
            grid = grids.build(
                opts.grid, process, intervals, opts.t_start, opts.t_end, **opts.grid_params()
            )
        except jax.errors.ConcretizationTypeError as e:
            raise ValueError(
                f"The {opts.grid!r} grid is computed from the process on the host, but the "
                "process holds traced values (sample() called under jit with a traced "
                "process): pass a concrete process, or grid='uniform' / 'quadratic'."
            ) from e
    if spec.levels:  # a first step that stays at t_start: its level is the top one
        return jnp.asarray(np.concatenate([grid.times[:1], grid.times]))
    return jnp.asarray(grid.times)


def _process_for(name: str, spec: Method, process) -> Process:
    if not isinstance(process, Process):
        raise ValueError(f"process must be a jaxdiff Process; got {type(process).__name__}.")
    if spec.discrete and not isinstance(process, DiscreteSchedule):
        raise ValueError(
            f"Method {name!r} needs a DiscreteSchedule (schedules.DiscreteSchedule.from_name"
            f"); got {type(process).__name__}. Continuous processes: use 'ode_heun', "
            "'dpm_solver++', 'euler_maruyama', ..."
        )
    return process


def sample(
    key: PRNGKey,
    model_fn,
    process: Process,
    shape,
    *,
    method: str,
    num_steps: int,
    kind: str = "score",
    x_init: Array | None = None,
    **options: Any,
) -> tuple[Array, dict]:
    """Draws samples with the sampler ``method`` (a key of :data:`METHODS`).

    Args:
      key: PRNG key; x_init (if drawn) uses one half, step k of the loop fold_in(other, k).
        Per-example randomness: a (B,) array of keys (``jax.random.split(key, B)``, or raw
        (B, 2) keys) or of int32 seeds; example i then draws all its noise from key i
        alone, so it equals the same key sampled in a batch of one (except ``pc``, whose
        SNR step size uses batch means, and ``ode_adaptive``, whose error norm is the
        batch maximum).
      model_fn: ``(x, t, **cond) -> prediction`` (or ``(prediction, v)`` with
        ``learned_variance=True``), x (B, ...), t (B,) in [0, 1].
      process: an SDE or a DiscreteSchedule (required by ddpm/ddim).
      shape: (B, ...), the shape of the samples.
      method: the sampler; see docs/samplers.md for the table of methods.
      num_steps: number of grid intervals (noise levels, t_start and t_end included, for
        annealed_langevin; the first step is span / num_steps for ode_adaptive).
      kind: what model_fn predicts: "score", "eps", "x0" or "v".
      x_init: the starting point at t_start, shape ``shape`` (default: a prior draw;
        required when t_start < 1, e.g. SDEdit).
      **options: the fields of the method's options record ``METHODS[method].options``
        (a :class:`~jaxdiff.samplers.options.SamplerOptions`): common ones t_start
        (1.0), t_end, denoise_final, grid, rho, sigma_min, spacing, return_trajectory,
        learned_variance, preview_fn (a host function ``fn(step, t, x0)`` called with
        the x0 predicted at steps k % preview_every == 0 and the last one, for
        progressive previews, no extra network calls; static: pass the same function
        to reuse the compiled sampler), preview_every; each method's own (e.g. eta,
        S_churn); and conditioning (label=, context=, context_mask=, each with leading
        axis B) passed to model_fn.

    Returns:
      ``(samples, info)``: samples of ``shape``; info["nfe"] the number of network calls
      (int32), with return_trajectory info["trajectory"] (N + 1, *shape) and
      info["times"] (N + 1,); ode_adaptive adds accepted/rejected/reached_max_steps.

    Raises:
      ValueError: unknown method or option, invalid option value, num_steps < 1, t_start
        outside (t_end, 1], shape/batch mismatches, ddpm/ddim without a DiscreteSchedule.
    """
    spec = _method(method)
    cond = {k: options.pop(k) for k in COND_KEYS if k in options}
    cond = {k: v for k, v in cond.items() if v is not None}
    opts = spec.options.create(method, num_steps=num_steps, **options)
    parametrization.check_kind(kind)
    shape = _check_shape(shape)
    process = _process_for(method, spec, process)
    if isinstance(process, DiscreteSchedule) and not spec.discrete:
        level = lambda t: float(process.round_to_level(float(t)))  # only trained levels
        opts = dataclasses.replace(opts, t_start=level(opts.t_start), t_end=level(opts.t_end))
    times = _grid_times(spec, process, opts)
    _check_inputs(shape, x_init, cond, opts.t_start)
    key = as_key(key, shape[0])
    return _call(method, key, model_fn, process, shape, kind, x_init, cond, opts, times)


def _call(method, key, model_fn, process, shape, kind, x_init, cond, opts, times):
    model_static, model_dyn = _split_model(model_fn)
    config = _Config(method, shape, kind, model_static, x_init is not None)
    dyn = {
        "model": model_dyn,
        "opts": opts.compiled(),
        "process": process,
        "times": times,
        "key": key,
        "x_init": None if x_init is None else jnp.asarray(x_init),
        "cond": {k: jnp.asarray(v) for k, v in cond.items()},
    }
    return _run(config, dyn)


def encode(
    model_fn,
    schedule: DiscreteSchedule,
    x0: Array,
    *,
    num_steps: int,
    kind: str = "score",
    spacing: str = "trailing",
    **cond: Any,
) -> tuple[Array, dict]:
    """DDIM inversion (eta = 0 run forward in time): data x0 -> noise at t = 1.

    The grid is the reverse of ``sample(..., method="ddim", num_steps=num_steps,
    spacing=spacing)``'s, so ``sample(..., x_init=encode(...)[0])`` decodes it back.

    Args:
      model_fn, kind: as in :func:`sample`.
      schedule: a DiscreteSchedule.
      x0: data, shape (B, ...).
      num_steps: number of DDIM steps.
      spacing: "leading", "trailing" or "linspace".
      **cond: conditioning passed to model_fn.

    Returns:
      ``(x_T, info)`` with x_T shaped like x0 and info["nfe"].
    """
    spec = METHODS["ddim"]
    _process_for("ddim", spec, schedule)
    parametrization.check_kind(kind)
    x0 = jnp.asarray(x0)
    shape = _check_shape(x0.shape)
    grid = grids.discrete(schedule, num_steps, spacing=spacing).reversed()
    _check_inputs(shape, x0, cond, 1.0)
    opts = discrete.DDIMOptions.create("ddim", num_steps=num_steps, eta=0.0, t_end=1.0)
    times = jnp.asarray(grid.times)
    key = jax.random.key(0)  # unused: eta = 0 draws no noise
    return _call("ddim", key, model_fn, schedule, shape, kind, x0, cond, opts, times)
