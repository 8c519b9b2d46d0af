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
