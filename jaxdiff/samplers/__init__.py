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

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization
from jaxdiff._process import Process
from jaxdiff._types import Array, PRNGKey
from jaxdiff.samplers import adaptive, discrete, dpm_solver, edm, grids, langevin, ode, sde
from jaxdiff.samplers._driver import Stepper, is_batched_key, make_net, normal, run_grid, split
from jaxdiff.schedules import DiscreteSchedule


class Method(NamedTuple):
    """A registered sampler: stepper, default grid and end time, its own options.

    Attributes:
      stepper: the step function and order (None: the adaptive solve).
      grid: the default grid name (see :data:`grids.GRIDS`).
      t_end: the default final time.
      denoise_final: whether to replace x by D(x, t_end) at the end by default (+1 NFE).
      options: the method's own options and their defaults.
      discrete: needs a DiscreteSchedule.
      levels: num_steps counts noise levels from t_start to t_end, both included (the
        grid has num_steps - 1 intervals; the stepper's first step stays at t_start).
    """

    stepper: Stepper | None
    grid: str | None
    t_end: float
    denoise_final: bool
    options: dict
    discrete: bool = False
    levels: bool = False


METHODS: dict[str, Method] = {
    "ddpm": Method(
        discrete.DDPM, "discrete", 0.0, False, {"variance": "beta_tilde", "clip_x0": None}, True
    ),
    "ddim": Method(discrete.DDIM, "discrete", 0.0, False, {"eta": 0.0, "clip_x0": None}, True),
    "euler_maruyama": Method(sde.EULER_MARUYAMA, "uniform", 1e-3, True, {}),
    "pc": Method(sde.PC, "uniform", 1e-3, True, {"snr": 0.16, "n_corrector": 1}),
    "annealed_langevin": Method(
        langevin.ANNEALED_LANGEVIN,
        "log_snr",
        1e-3,
        True,
        {"steps_per_level": 100, "step_size": 2e-5},
        levels=True,
    ),
    "ode_euler": Method(ode.EULER, "edm", 0.0, False, {}),
    "ode_heun": Method(ode.HEUN, "edm", 0.0, False, {}),
    "ode_adaptive": Method(
        None, None, 1e-3, True, {"rtol": 1e-5, "atol": 1e-5, "max_steps": 10_000}
    ),
    "edm_stochastic": Method(
        edm.EDM_STOCHASTIC,
        "edm",
        0.0,
        False,
        {"S_churn": 40.0, "S_tmin": 0.05, "S_tmax": 50.0, "S_noise": 1.0},
    ),
    "dpm_solver++": Method(dpm_solver.DPM_SOLVER_PP, "log_snr", 1e-3, False, {}),
}

COND_KEYS = ("label", "context", "context_mask")
_GRID_KEYS = ("grid", "rho", "sigma_min", "spacing")
_COMMON = {
    "t_start": 1.0,
    "return_trajectory": False,
    "preview_fn": None,
    "preview_every": 1,
    "learned_variance": False,
    **dict.fromkeys(_GRID_KEYS + COND_KEYS),
}

# option -> (is it allowed?, what is allowed)
_RULES = {
    "eta": (lambda v: v >= 0, "a float >= 0"),
    "clip_x0": (lambda v: v is None or v > 0, "None or a float > 0"),
    "variance": (lambda v: v in ("beta", "beta_tilde"), "'beta' or 'beta_tilde'"),
    "snr": (lambda v: v > 0, "a float > 0"),
    "n_corrector": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
    "steps_per_level": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "step_size": (lambda v: v > 0, "a float > 0"),
    "rtol": (lambda v: v > 0, "a float > 0"),
    "atol": (lambda v: v > 0, "a float > 0"),
    "max_steps": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "preview_fn": (lambda v: v is None or callable(v), "None or a callable (step, t, x0)"),
    "preview_every": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "S_churn": (lambda v: v >= 0, "a float >= 0"),
    "S_noise": (lambda v: v > 0, "a float > 0"),
}


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid methods: {sorted(METHODS)}.")
    return METHODS[name]


def _options(name: str, spec: Method, options: dict) -> dict:
    """Defaults merged with the user's options; unknown or invalid ones raise."""
    defaults = {
        **_COMMON,
        "t_end": spec.t_end,
        "denoise_final": spec.denoise_final,
        "grid": spec.grid,
        **spec.options,
    }
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(
            f"Unknown options {unknown} for method {name!r}; valid options: {sorted(defaults)}."
        )
    opts = {**defaults, **options}
    for key, (ok, allowed) in _RULES.items():
        if key in opts and not ok(opts[key]):
            raise ValueError(f"Option {key} must be {allowed}; got {key}={opts[key]!r}.")
    return opts


def _as_key(key, batch: int):
    """One PRNG key, or one per example: typed keys (B,), raw keys (B, 2) or int seeds (B,).

    Raises:
      ValueError: a key array whose leading axis is not the batch size, or not a key.
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(key)
    key = key if isinstance(key, jax.Array) else jnp.asarray(key)
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw_single = key.dtype == jnp.uint32 and key.shape == (2,)
    if not typed and not raw_single and jnp.issubdtype(key.dtype, jnp.integer):
        if key.ndim == 0:
            return jax.random.key(key)
        if key.shape == (batch,):  # seeds, one per example
            return jax.vmap(jax.random.key)(key)
    if (typed or key.dtype == jnp.uint32) and is_batched_key(key):
        if key.shape[0] != batch:
            raise ValueError(
                f"A per-example key array needs one key per example ({batch}); got shape "
                f"{key.shape}."
            )
        return key
    if typed and key.ndim == 0 or raw_single:
        return key
    raise ValueError(
        f"key must be a PRNG key, a (B,) = ({batch},) array of keys or of integer seeds; "
        f"got dtype {key.dtype}, shape {key.shape}."
    )


def _check_kind(kind: str) -> None:
    if kind not in parametrization.KINDS:
        raise ValueError(
            f"Unknown prediction kind {kind!r}; valid kinds: {list(parametrization.KINDS)}."
        )


def _check_shape(shape) -> tuple[int, ...]:
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
    if not (
        isinstance(shape, tuple)
        and len(shape) >= 1
        and all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape)
    ):
        raise ValueError(f"shape must be a tuple (B, ...) of positive integers; got {shape!r}.")
    return tuple(int(d) for d in shape)


def _check_inputs(shape, x_init, cond, opts) -> None:
    if x_init is not None and tuple(jnp.shape(x_init)) != shape:
        raise ValueError(f"x_init must have shape {shape}; got {tuple(jnp.shape(x_init))}.")
    if x_init is None and opts["t_start"] < 1.0:
        raise ValueError(
            f"t_start={opts['t_start']} < 1 needs x_init: the input noised to t_start "
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
    """Everything that fixes the compiled program (hashable)."""

    method: str
    shape: tuple
    kind: str
    model: tuple
    has_x_init: bool
    static_opts: tuple


@functools.partial(jax.jit, static_argnums=0)
def _run(config: _Config, dyn: dict):
    treedef, static = config.model
    leaves = [s if d is None else d for s, d in zip(static, dyn["model"], strict=True)]
    model_fn = jax.tree.unflatten(treedef, leaves)
    opts = {**dict(config.static_opts), **dyn["opts"]}
    process, times = dyn["process"], dyn["times"]
    net = make_net(model_fn, config.kind, process, dyn["cond"], opts["learned_variance"])
    key_init, key_steps = split(dyn["key"])
    if config.has_x_init:
        x = dyn["x_init"]
    else:
        x = process.prior_std * normal(key_init, config.shape)
    spec = METHODS[config.method]
    trajectory = None
    if spec.stepper is None:
        x, info = adaptive.solve(net, process, x, opts)
    else:
        preview = (
            None if opts["preview_fn"] is None else (opts["preview_fn"], opts["preview_every"])
        )
        x, nfe, trajectory = run_grid(
            spec.stepper,
            net,
            process,
            x,
            times,
            key_steps,
            opts,
            opts["return_trajectory"],
            preview,
        )
        info = {"nfe": nfe}
    if opts["denoise_final"]:
        x = net(x, opts["t_end"]).x0
        info["nfe"] = info["nfe"] + 1
    if trajectory is not None:
        info["trajectory"], info["times"] = trajectory, times
    return x, info


def _grid_times(spec: Method, process, num_steps: int, opts: dict):
    if spec.stepper is None:
        grids.check_span(num_steps, opts["t_start"], opts["t_end"])
        for k in ("return_trajectory", "preview_fn"):
            if opts[k]:
                raise ValueError(f"{k} is not available for ode_adaptive.")
        return jnp.zeros((2,), jnp.float32)
    params = {k: opts[k] for k in _GRID_KEYS[1:] if opts[k] is not None}
    intervals = num_steps
    if spec.levels:
        grids.check_span(num_steps, opts["t_start"], opts["t_end"])
        if num_steps < 2:
            raise ValueError(
                f"num_steps counts noise levels from t_start to t_end here; it must be >= 2; "
                f"got num_steps={num_steps}."
            )
        intervals = num_steps - 1
    # Grids are host data: build them eagerly even when sample() is called under jit.
    with jax.ensure_compile_time_eval():
        try:
            grid = grids.build(
                opts["grid"], process, intervals, opts["t_start"], opts["t_end"], **params
            )
        except jax.errors.ConcretizationTypeError as e:
            raise ValueError(
                f"The {opts['grid']!r} grid is computed from the process on the host, but the "
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
      **options: common ones: t_start (1.0), t_end, denoise_final, grid, rho, sigma_min,
        spacing, return_trajectory, learned_variance, preview_fn (a host function
        ``fn(step, t, x0)`` called with the x0 predicted at steps k % preview_every == 0
        and the last one, for progressive previews; no extra network calls; a static
        option: pass the same function to reuse the compiled sampler), preview_every,
        and conditioning (label=,
        context=, context_mask=) passed to model_fn; plus each method's own
        (``METHODS[method].options``).

    Returns:
      ``(samples, info)``: samples of ``shape``; info["nfe"] the number of network calls
      (int32), with return_trajectory info["trajectory"] (N + 1, *shape) and
      info["times"] (N + 1,); ode_adaptive adds accepted/rejected/reached_max_steps.

    Raises:
      ValueError: unknown method or option, invalid option value, num_steps < 1, t_start
        outside (t_end, 1], shape/batch mismatches, ddpm/ddim without a DiscreteSchedule.
    """
    spec = _method(method)
    opts = _options(method, spec, options)
    _check_kind(kind)
    shape = _check_shape(shape)
    process = _process_for(method, spec, process)
    if isinstance(process, DiscreteSchedule) and not spec.discrete:
        for k in ("t_start", "t_end"):  # the network sees only trained levels
            opts[k] = float(process.round_to_level(float(opts[k])))
    cond = {k: opts.pop(k) for k in COND_KEYS if opts[k] is not None}
    for k in COND_KEYS:
        opts.pop(k, None)
    times = _grid_times(spec, process, num_steps, opts)
    _check_inputs(shape, x_init, cond, opts)
    key = _as_key(key, shape[0])
    for k in _GRID_KEYS:
        opts.pop(k)
    opts["num_steps"] = int(num_steps)
    return _call(method, spec, key, model_fn, process, shape, kind, x_init, cond, opts, times)


def _is_float_option(v) -> bool:
    """Float options are traced (changing them does not recompile); others are static."""
    if isinstance(v, (jax.Array, np.ndarray, np.generic)):
        return jnp.issubdtype(v.dtype, jnp.floating)
    return type(v) is float


def _call(method, spec, key, model_fn, process, shape, kind, x_init, cond, opts, times):
    model_static, model_dyn = _split_model(model_fn)
    dynamic_opts = {k: jnp.float32(v) for k, v in opts.items() if _is_float_option(v)}
    static_opts = tuple(sorted((k, v) for k, v in opts.items() if not _is_float_option(v)))
    config = _Config(method, shape, kind, model_static, x_init is not None, static_opts)
    dyn = {
        "model": model_dyn,
        "opts": dynamic_opts,
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
    schedule = _process_for("ddim", spec, schedule)
    _check_kind(kind)
    x0 = jnp.asarray(x0)
    shape = _check_shape(x0.shape)
    grid = grids.discrete(schedule, num_steps, spacing=spacing).reversed()
    _check_inputs(shape, x0, cond, {"t_start": 1.0})
    opts = {**_options("ddim", spec, {"eta": 0.0}), "t_end": 1.0, "num_steps": int(num_steps)}
    for k in _GRID_KEYS + COND_KEYS:
        opts.pop(k)
    times = jnp.asarray(grid.times)
    key = jax.random.key(0)  # unused: eta = 0 draws no noise
    return _call("ddim", spec, key, model_fn, schedule, shape, kind, x0, cond, opts, times)
