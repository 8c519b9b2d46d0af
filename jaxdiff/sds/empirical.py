"""The exact denoiser of a finite labelled image set: a reference prior without training.

For data that is a finite set {x_i} (with labels y_i), the posterior mean at noise level t
is a softmax-weighted average of the images,

    E[x_0 | x_t, y] = sum_i p_i x_i,   p_i ∝ exp(-|x_t - scale x_i|^2 / (2 sigma^2)), y_i = y,

and the null label (or a label without images) averages over every image. It is the
denoiser a network converges to when it memorises its training set, so score distillation
against it tests the renderer, cameras, view labels and optimiser without a trained
network (``python -m jaxdiff.sds --model=empirical``). It is a reference, not a generative
model: it knows only the renders.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff import schedules
  >>> from jaxdiff.sds import empirical
  >>> images = jnp.stack([jnp.zeros((4, 4, 3)), jnp.ones((4, 4, 3))])
  >>> process = schedules.DiscreteSchedule.from_name("cosine", num_steps=1000)
  >>> model_fn = empirical.model_fn(images, jnp.array([0, 1]), process, num_labels=2)
  >>> x0 = model_fn(jnp.ones((1, 4, 4, 3)), jnp.array([0.5]), label=jnp.array([1]))
  >>> round(float(x0.mean()), 3)
  1.0
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdiff._process import Process
from jaxdiff._types import Array, ModelFn

KIND = "x0"  # what :func:`model_fn` predicts


def model_fn(images: ArrayLike, labels: ArrayLike, process: Process, num_labels: int) -> ModelFn:
    """``(x_t, t, label) -> E[x_0 | x_t, label]`` over ``images``; label num_labels = any.

    Args:
      images: (N, H, W, C) in the data range ([-1, 1]).
      labels: (N,) ints in [0, num_labels).
      process: the diffusion process defining x_t = scale x_0 + sigma eps.
      num_labels: the null label (index num_labels) averages over all images.

    Returns:
      A model function of kind :data:`KIND` (x0); x_t (B, H, W, C), t (B,), label (B,).

    Raises:
      ValueError: mismatched shapes.
    """
    images = jnp.asarray(images, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"need images (N, H, W, C) and labels (N,); got {images.shape} and {labels.shape}."
        )
    flat = images.reshape(images.shape[0], -1)
    sq_norms = jnp.sum(jnp.square(flat), axis=-1)

    def denoise(x: Array, t: Array, label: Array) -> Array:
        scale, sigma = process.marginal(t)
        xf = x.reshape(x.shape[0], -1)
        # |x_t - s x_i|^2 without the |x_t|^2 term (constant over i).
        dist = -2.0 * scale[:, None] * (xf @ flat.T) + jnp.square(scale)[:, None] * sq_norms
        logits = -dist / (2.0 * jnp.square(sigma)[:, None])
        allowed = (labels[None, :] == label[:, None]) | (label[:, None] == num_labels)
        allowed = allowed | ~jnp.any(allowed, axis=-1, keepdims=True)  # unseen label: all
        weights = jax.nn.softmax(jnp.where(allowed, logits, -jnp.inf), axis=-1)
        return (weights @ flat).reshape(x.shape)

    def fn(x: Array, t: Array, **cond) -> Array:
        label = cond.get("label")
        if label is None:
            label = jnp.full((x.shape[0],), num_labels, jnp.int32)
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        return denoise(x, t, label)

    return fn
