"""Classifier-free guidance (Ho & Salimans 2022) as a model-function wrapper.

.. math::

   \\hat p(x, t \\mid y) = (1 + w)\\, p(x, t \\mid y) - w\\, p(x, t \\mid \\varnothing),

for a prediction p of any kind (eps, x0, v and score are affine in one another at fixed
(x, t), so guiding any of them is the same sampler). w = 0 is the plain conditional model;
diffusers' ``guidance_scale`` is 1 + w. The conditional and unconditional predictions come
from ONE call on the doubled batch (so a guided call counts as one network evaluation).

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff import guidance
  >>> model = lambda x, t, label: x * (label[:, None] + 1.0)
  >>> guided = guidance.cfg(model, w=2.0, null_label=10)
  >>> guided(jnp.ones((1, 2)), jnp.zeros((1,)), label=jnp.array([1])).tolist()
  [[-16.0, -16.0]]
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._process import expand_like
from jaxdiff._types import Array, ModelFn


def _check(w, null_label) -> None:
    concrete = isinstance(w, (int, float, np.ndarray, np.number, list, tuple))
    if concrete and np.any(np.asarray(w) < 0):
        raise ValueError(f"Guidance weight w must be >= 0; got w={w}.")
    if jnp.ndim(w) > 1:
        raise ValueError(f"w must be a scalar or have shape (B,); got shape {jnp.shape(w)}.")
    if isinstance(null_label, bool) or not isinstance(null_label, int) or null_label < 0:
        raise ValueError(
            f"null_label must be a non-negative integer (the index num_classes); got "
            f"null_label={null_label!r}."
        )


def _guided_call(model_fn: ModelFn, w, null_label: int, x: Array, t: Array, label=None, **cond):
    """The body of :func:`cfg`'s wrapper (a module-level function, so it hashes stably)."""
    if label is None:
        raise ValueError("A cfg-guided model needs label= (int array of shape (B,)).")
    label = jnp.asarray(label)
    batch = x.shape[0]
    if label.shape != (batch,):
        raise ValueError(f"label must have shape (B,) = ({batch},); got {label.shape}.")
    t = jnp.broadcast_to(jnp.asarray(t), (batch,))
    double = lambda a: jnp.concatenate([a, a], axis=0)
    labels = jnp.concatenate([label, jnp.full_like(label, null_label)])
    out = model_fn(double(x), double(t), label=labels, **jax.tree.map(double, cond))
    return _combine(out, batch, w)


def _combine(out, batch: int, w):
    """(1 + w) cond - w uncond from the doubled batch's output (extra outputs: cond half)."""
    pred, rest = (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, None)
    cond_pred, uncond_pred = pred[:batch], pred[batch:]
    if jnp.ndim(w) == 1 and jnp.shape(w) != (batch,):
        raise ValueError(f"A per-example w must have shape (B,) = ({batch},); got {jnp.shape(w)}.")
    w = expand_like(w, cond_pred)  # (B,) -> (B, 1, ..., 1): one weight per example
    guided = (1.0 + w) * cond_pred - w * uncond_pred
    if rest is None:
        return guided
    # Extra outputs (e.g. a learned variance) come from the conditional half, as DiT.
    return (guided, *(r[:batch] for r in rest))


def cfg(model_fn: ModelFn, w, null_label: int) -> ModelFn:
    """Wraps a conditional model into its classifier-free-guided version.

    Args:
      model_fn: ``(x, t, label=..., **cond) -> prediction`` (or a tuple whose first element
        is the prediction, e.g. with a learned variance), trained with label dropout to
        ``null_label``.
      w: the guidance weight, >= 0: a float, a scalar array, or one weight per example
        of shape (B,) (broadcast over the non-batch axes). It is traced, so changing it
        does not recompile a sampler (only concrete values are checked for w >= 0).
      null_label: the "no class" label, conventionally num_classes.

    Returns:
      ``guided(x, t, label=..., **cond)`` returning (1 + w) pred(x | label) - w pred(x |
      null) from one call of model_fn on the doubled batch (other conditioning, such as
      context=, is duplicated). It is a ``jax.tree_util.Partial``: its arrays are pytree
      leaves.

    Raises:
      ValueError: w < 0 or a bad null_label (here); a missing or mis-shaped label (at call).
    """
    _check(w, null_label)
    w = jnp.asarray(w, jnp.float32) if not isinstance(w, jax.Array) else w
    return jax.tree_util.Partial(_guided_call, model_fn, w, null_label)


def _guided_over_call(model_fn: ModelFn, w, null: dict, x: Array, t: Array, **cond):
    """The body of :func:`cfg_over`'s wrapper."""
    batch = x.shape[0]
    missing = sorted(set(null) - set(cond))
    if missing:
        raise ValueError(f"a guided model needs {missing}= (the conditioning it guides over).")
    t = jnp.broadcast_to(jnp.asarray(t), (batch,))
    double = lambda a: jnp.concatenate([a, a], axis=0)
    both = {}
    for name, value in cond.items():
        if name not in null:
            both[name] = jax.tree.map(double, value)
            continue
        value, empty = jnp.asarray(value), jnp.asarray(null[name])
        empty = jnp.broadcast_to(empty, value.shape).astype(value.dtype)
        both[name] = jnp.concatenate([value, empty], axis=0)
    return _combine(model_fn(double(x), double(t), **both), batch, w)


def cfg_over(model_fn: ModelFn, w, null: dict) -> ModelFn:
    """Classifier-free guidance over any conditioning: a prompt's tokens, a semantic map.

    The unconditional half gets ``null[name]`` in place of each guided input ``name``:
    the empty prompt's tokens (the null condition the model was trained with), or a
    negative prompt's tokens (negative prompting: the guidance pushes away from it).

    Args:
      model_fn: ``(x, t, **cond) -> prediction`` (or a tuple, as :func:`cfg`).
      w: the guidance weight, >= 0: a scalar or (B,).
      null: {input name: array} the "unconditional" value of each guided input, of the
        input's shape (B, ...) or broadcastable to it (e.g. one prompt (L,)).

    Returns:
      ``guided(x, t, **cond)``: (1 + w) pred(x | cond) - w pred(x | cond with null), from
      one call on the doubled batch; a ``jax.tree_util.Partial``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxdiff import guidance
      >>> model = lambda x, t, tokens: x * tokens[:, :1]
      >>> guided = guidance.cfg_over(model, 1.0, {"tokens": jnp.zeros((3,), jnp.int32)})
      >>> guided(jnp.ones((1, 2)), 0.5, tokens=jnp.array([[2, 1, 0]])).tolist()
      [[4.0, 4.0]]
    """
    _check(w, 0)
    if not null:
        raise ValueError("cfg_over needs at least one guided input in null=, e.g. tokens.")
    w = jnp.asarray(w, jnp.float32) if not isinstance(w, jax.Array) else w
    return jax.tree_util.Partial(_guided_over_call, model_fn, w, dict(null))
