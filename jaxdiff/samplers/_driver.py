"""The one place samplers loop: a ``lax.scan`` over a fixed grid, a ``lax.while_loop`` for
adaptive steps, and the model wrapper every stepper calls.

A stepper is a pure function

    step(net, process, x, aux, sd: StepData, key, opts) -> (x, aux, calls)

that moves the state x from time ``sd.t`` to ``sd.s`` and says how many network calls it
made; ``aux`` carries what a multistep method remembers. The drivers add the calls up
(``info["nfe"]``), derive each step's key as ``fold_in(key, step index)`` so that two
samplers on the same grid consume identical noise, and optionally stack the trajectory.
Because the loop is a scan, the compiled size does not grow with the number of steps.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization
from jaxdiff._process import Process, batch_time, expand_like
from jaxdiff._types import Array, PRNGKey


def is_batched_key(key) -> bool:
    """Whether ``key`` holds one key per example: typed keys of shape (B,), raw (B, 2)."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (1 if typed else 2)


def fold_in(key: PRNGKey, data) -> PRNGKey:
    """``jax.random.fold_in`` of one key, or of each key of a per-example (B,) key array."""
    if is_batched_key(key):
        return jax.vmap(lambda k: jax.random.fold_in(k, data))(key)
    return jax.random.fold_in(key, data)


def split(key: PRNGKey) -> tuple[PRNGKey, PRNGKey]:
    """Two keys from one (or two (B,) key arrays from a per-example one)."""
    if is_batched_key(key):
        pair = jax.vmap(jax.random.split)(key)  # (B, 2)
        return pair[:, 0], pair[:, 1]
    a, b = jax.random.split(key)
    return a, b


def normal(key: PRNGKey, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """Standard normal noise of ``shape`` = (B, ...).

    With a per-example key array (B,), example i is ``normal(key[i], shape[1:])``: it does
    not depend on the batch size or on the other examples' keys.
    """
    if is_batched_key(key):
        return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(key)
    return jax.random.normal(key, shape, dtype)


def as_key(key, batch: int) -> PRNGKey:
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


class Prediction(NamedTuple):
    """One network call, seen in every parametrization.

    Attributes:
      x0: the denoised estimate, shape (B, ...).
      eps: the noise estimate, shape (B, ...).
      sigma: sigma(t) broadcastable to x, shape (B, 1, ..., 1).
      v: the learned-variance output in [-1, 1] (shape (B, ...)) or None.
    """

    x0: Array
    eps: Array
    sigma: Array
    v: Array | None

    @property
    def score(self) -> Array:
        """grad log p_t(x) = -eps / sigma, shape (B, ...)."""
        return -self.eps / self.sigma


Net = Callable[[Array, Array], Prediction]


def make_net(model_fn, kind: str, process: Process, cond: dict, learned_variance: bool) -> Net:
    """Wraps ``model_fn(x, t, **cond)`` predicting ``kind`` into ``net(x, t) -> Prediction``.

    Args:
      model_fn: the model function; returns ``(pred, v)`` when ``learned_variance``.
      kind: what it predicts ("eps", "x0", "v" or "score").
      process: the process that defines the conversions.
      cond: conditioning keyword arguments (label=, context=, ...), passed through.
      learned_variance: whether model_fn returns a (prediction, v) pair.

    Returns:
      ``net(x, t)``, t a scalar or (B,).
    """

    def net(x: Array, t: Array) -> Prediction:
        t = batch_time(t, x)
        out, v = model_fn(x, t, **cond), None
        if learned_variance:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise ValueError(
                    "learned_variance=True needs model_fn to return (prediction, v); got "
                    f"{type(out).__name__}."
                )
            out, v = out
        if getattr(out, "shape", None) != x.shape:
            raise ValueError(
                f"model_fn must return a prediction shaped like x {x.shape}; got "
                f"{getattr(out, 'shape', type(out).__name__)} (for a (prediction, v) pair "
                "pass learned_variance=True)."
            )
        x0 = parametrization.convert(out, kind, "x0", x, t, process)
        eps = parametrization.convert(out, kind, "eps", x, t, process)
        sigma = expand_like(process.sigma(t), x)
        return Prediction(x0, eps, sigma, v)

    return net


class StepData(NamedTuple):
    """What a stepper knows about its step (scalars; stacked over steps by the driver).

    Attributes:
      t: the current time.
      s: the time to step to.
      t_prev: the previous grid time (t itself at the first step).
      step: the step index k (int32), 0 at t_start.
      is_last: whether this is the final step.
    """

    t: Array
    s: Array
    t_prev: Array
    step: Array
    is_last: Array


def _no_aux(x: Array) -> tuple:
    del x
    return ()


class Stepper(NamedTuple):
    """A sampler family member: a step function and its order of convergence.

    Attributes:
      step: ``(net, process, x, aux, sd, key, opts) -> (x, aux, calls)``.
      order: the global order of the deterministic method (ODE steppers), or the weak
        order of the Markov chain for stochastic ones; tests read it.
      init: ``x -> aux``, the initial memory of a multistep method.
    """

    step: Callable[..., tuple[Array, Any, Array]]
    order: float
    init: Callable[[Array], Any] = _no_aux


def step_data(times: Array) -> StepData:
    """Per-step data for a grid of N + 1 times: each field has leading axis N."""
    n = times.shape[0] - 1
    index = jnp.arange(n, dtype=jnp.int32)
    t_prev = jnp.concatenate([times[:1], times[:-2]])
    return StepData(times[:-1], times[1:], t_prev, index, index == n - 1)


def run_grid(
    stepper: Stepper,
    net: Net,
    process: Process,
    x: Array,
    times: Array,
    key: PRNGKey,
    opts: dict,
    return_trajectory: bool = False,
    preview: tuple | None = None,
):
    """Runs ``stepper`` over a grid under one ``lax.scan``.

    Args:
      stepper: the method.
      net: the wrapped model (see :func:`make_net`).
      process: the process the stepper integrates.
      x: starting state at times[0], shape (B, ...).
      times: the grid, shape (N + 1,).
      key: the key of step k is ``fold_in(key, k)``.
      opts: method options (floats may be traced).
      return_trajectory: also return the states after every step.
      preview: ``(fn, every)``: on steps k with k % every == 0 and on the last step, the
        host calls ``fn(k, t, x0)`` with the x0 predicted by the step's first network
        call (NumPy: k int, t (B,), x0 (B, ...)); no extra network calls.

    Returns:
      ``(x, nfe, trajectory)``: final state (B, ...), int32 number of network calls, and
      the states (N + 1, B, ...) including the start, or None.
    """

    def body(carry, sd):
        state, aux, nfe = carry
        step_key = fold_in(key, sd.step)
        step_net = net if preview is None else _previewing(net, sd, *preview)
        state, aux, calls = stepper.step(step_net, process, state, aux, sd, step_key, opts)
        nfe = nfe + jnp.asarray(calls, jnp.int32)
        return (state, aux, nfe), (state if return_trajectory else None)

    init = (x, stepper.init(x), jnp.zeros((), jnp.int32))
    (x_end, _, nfe), states = jax.lax.scan(body, init, step_data(times))
    trajectory = jnp.concatenate([x[None], states]) if return_trajectory else None
    return x_end, nfe, trajectory


def _previewing(net: Net, sd: StepData, fn: Callable, every: int) -> Net:
    """``net`` that sends its first traced call's x0 of step sd to the host ``fn``."""
    pending = [True]

    def send(pred: Prediction, t: Array) -> None:
        emit = (sd.step % every == 0) | sd.is_last
        callback = lambda: jax.debug.callback(fn, sd.step, t, pred.x0)
        jax.lax.cond(emit, callback, lambda: None)

    def wrapped(x: Array, t: Array) -> Prediction:
        pred = net(x, t)
        if pending[0]:  # Python-level: the step's first call in program order
            pending[0] = False
            send(pred, batch_time(t, x))
        return pred

    return wrapped


class AdaptiveState(NamedTuple):
    t: Array
    x: Array
    h: Array
    f: Array
    err_prev: Array
    nfe: Array
    accepted: Array
    rejected: Array


def run_adaptive(solver, controller, drift: Callable, x: Array, t0, t1, h0, max_steps):
    """Integrates dx/dt = drift(x, t) from t0 to t1 under one ``lax.while_loop``.

    Args:
      solver: an embedded Runge-Kutta pair with ``step(drift, t, x, h, f) ->
        (x_new, x_err, f_new, calls)`` (first-same-as-last: f is drift at (x, t)).
      controller: ``adapt(x, x_new, x_err, h, err_prev) -> (accept, h_next, err_prev)``.
      drift: ``(x, t) -> dx/dt`` with x (B, ...) and t a scalar; one network call.
      x: state at t0, shape (B, ...).
      t0, t1: start and end times (t1 < t0 integrates backward).
      h0: the first step size (signed like t1 - t0).
      max_steps: the most steps (accepted + rejected) to try.

    Returns:
      ``(x, info)`` with info holding ``nfe``, ``accepted``, ``rejected``, ``t`` (the time
      reached) and ``reached_max_steps``.
    """
    t0, t1 = jnp.float32(t0), jnp.float32(t1)
    span = jnp.abs(t1 - t0)

    def not_done(st):
        left = jnp.abs(t1 - st.t) > 1e-6 * span
        return left & (st.accepted + st.rejected < max_steps)

    def body(st):
        hits_end = jnp.abs(st.h) >= jnp.abs(t1 - st.t)
        h = jnp.where(hits_end, t1 - st.t, st.h)
        x_new, x_err, f_new, calls = solver.step(drift, st.t, st.x, h, st.f)
        accept, h_next, err_prev = controller.adapt(st.x, x_new, x_err, h, st.err_prev)
        t_new = jnp.where(hits_end, t1, st.t + h)
        keep = lambda new, old: jnp.where(accept, new, old)
        return AdaptiveState(
            t=keep(t_new, st.t),
            x=keep(x_new, st.x),
            h=h_next,
            f=keep(f_new, st.f),
            err_prev=keep(err_prev, st.err_prev),
            nfe=st.nfe + calls,
            accepted=st.accepted + accept.astype(jnp.int32),
            rejected=st.rejected + (~accept).astype(jnp.int32),
        )

    zero = jnp.zeros((), jnp.int32)
    f0 = drift(x, t0)
    init = AdaptiveState(t0, x, jnp.float32(h0), f0, jnp.float32(1.0), zero + 1, zero, zero)
    st = jax.lax.while_loop(not_done, body, init)
    info = {
        "nfe": st.nfe,
        "accepted": st.accepted,
        "rejected": st.rejected,
        "t": st.t,
        "reached_max_steps": jnp.abs(t1 - st.t) > 1e-6 * span,
    }
    return st.x, info
