"""The pure training step.

The adapter that turns a network into a model function (``make_model_fn``,
``NOISE_LEVELS``, ``noise_level_fn``) lives in :mod:`jaxdiff.denoiser`; it is re-exported
here for existing callers.

``make_train_step`` returns ``train_step(state, batch) -> (state, metrics)``: per-step keys
``fold_in(root, step)``, label dropout for classifier-free guidance, optional importance
sampling of t and gradient accumulation, one optimiser update, the parameter EMAs.
``jit_train_step`` compiles it with the state donated and replicated over the mesh.
"""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxdiff.denoiser import NOISE_LEVELS, make_model_fn, noise_level_fn
from jaxdiff.training import optim
from jaxdiff.training import state as state_lib

__all__ = [
    "NOISE_LEVELS",
    "drop_labels",
    "jit_train_step",
    "make_model_fn",
    "make_train_step",
    "noise_level_fn",
]


def drop_labels(key, labels, p: float, null_label: int):
    """Replaces each label by ``null_label`` with probability p (classifier-free guidance)."""
    return jnp.where(jax.random.uniform(key, labels.shape) < p, null_label, labels)


def make_train_step(
    apply_fn,
    loss_fn,
    tx: optax.GradientTransformation,
    process,
    *,
    ema_decays: Sequence[float] = (),
    ema_warmup: bool = False,
    noise_level: str = "t1000",
    split_output: bool = False,
    num_classes: int | None = None,
    label_dropout: float = 0.0,
    grad_accum: int = 1,
    importance=None,
    cond_keys: Sequence[str] = (),
) -> Callable:
    """Builds the pure ``train_step(state, batch) -> (state, metrics)``.

    Args:
      apply_fn: ``net.apply``.
      loss_fn: ``loss_fn(model_fn, key, x0, *, t=None, t_weights=None, **cond)`` ->
        ``(mean_loss, metrics)`` (``losses.make_loss``); one with ``needs_step = True``
        also gets ``step=`` (the state's step, e.g. a curriculum).
      tx: the optimiser.
      process: the diffusion process.
      ema_decays: EMA decay rates kept in ``state.ema``.
      ema_warmup: see ``optim.ema_update``.
      noise_level, split_output: see :func:`make_model_fn`.
      num_classes: class-conditional when set; the batch then holds "label" (B,).
      label_dropout: probability of replacing a label by the null label ``num_classes``.
      grad_accum: split the batch into this many micro-batches and sum their gradients.
      importance: ``(sample_fn, update_fn)`` of the losses module's importance sampling of
        t, with the state in ``state.importance``; None samples t inside the loss.
      cond_keys: batch fields given to the model as conditioning under their own names
        (e.g. a latent model's "tokens" and "semantic_map").

    Returns:
      ``train_step``; metrics: "loss" (mean over the batch), "grad_norm".
    """

    model_args = (apply_fn, process, noise_level, split_output)
    micro_loss = _micro_loss(loss_fn, model_args, num_classes, label_dropout, tuple(cond_keys))
    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def train_step(state: state_lib.TrainState, batch: dict):
        key = jax.random.fold_in(state.root_key, state.step)
        k_t, k_step = jax.random.split(key)
        t = w = None
        if importance is not None:
            t, w = importance[0](state.importance, k_t, batch["image"].shape[0])
        loss, grads, per_example, t_used = _accumulate(
            grad_fn, state.params, k_step, batch, t, w, grad_accum, state.step
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = optim.ema_update(state.ema, params, ema_decays, state.step, ema_warmup)
        imp = state.importance
        if importance is not None:
            imp = importance[1](imp, t_used, per_example)
        new = dataclasses.replace(
            state, step=state.step + 1, params=params, ema=ema, opt_state=opt_state, importance=imp
        )
        return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return train_step


def _micro_loss(loss_fn, model_args, num_classes, label_dropout, cond_keys=()) -> Callable:
    """``(params, key, batch, t, w, step) -> (loss, metrics)`` of one (micro-)batch.

    ``model_args`` is ``(apply_fn, process, noise_level, split_output)`` of
    :func:`make_model_fn`; labels are dropped to the null label with ``label_dropout``;
    the batch fields ``cond_keys`` are passed on as conditioning.
    """
    apply_fn, process, noise_level, split_output = model_args

    def micro_loss(params, key, batch, t, w, step):
        k_loss, k_drop, k_label = jax.random.split(key, 3)
        cond = {"step": step} if getattr(loss_fn, "needs_step", False) else {}
        if num_classes is not None:
            cond["label"] = drop_labels(k_label, batch["label"], label_dropout, num_classes)
        cond.update((name, batch[name]) for name in cond_keys)
        model_fn = make_model_fn(
            apply_fn,
            params,
            process,
            noise_level,
            split_output=split_output,
            train=True,
            dropout_key=k_drop,
        )
        return loss_fn(model_fn, k_loss, batch["image"], t=t, t_weights=w, **cond)

    return micro_loss


def _accumulate(grad_fn, params, key, batch, t, w, k, step):
    """Mean loss, gradient, per-example losses (B,) and times (B,) over k equal
    micro-batches (a ``lax.scan``; k = 1: one call of ``grad_fn``)."""
    if k == 1:
        (loss, metrics), grads = grad_fn(params, key, batch, t, w, step)
        return loss, grads, metrics["loss_per_example"], metrics["t"]
    b = batch["image"].shape[0]
    if b % k:
        raise ValueError(f"batch size {b} is not divisible by grad_accum={k}.")

    def split(x):
        return None if x is None else x.reshape((k, b // k) + x.shape[1:])

    micro = jax.tree.map(split, batch)
    ts, ws = split(t), split(w)

    def body(carry, i):
        mb = jax.tree.map(lambda x: x[i], micro)
        (loss, metrics), grads = grad_fn(
            params,
            jax.random.fold_in(key, i),
            mb,
            None if ts is None else ts[i],
            None if ws is None else ws[i],
            step,
        )
        acc = jax.tree.map(jnp.add, carry, (loss, grads))
        return acc, (metrics["loss_per_example"], metrics["t"])

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (loss, grads), (per_example, t_used) = jax.lax.scan(body, zeros, jnp.arange(k))
    grads = jax.tree.map(lambda g: g / k, grads)
    return loss / k, grads, per_example.reshape(b), t_used.reshape(b)


def jit_train_step(train_step: Callable, mesh) -> Callable:
    """Compiles ``train_step`` with the state donated and replicated, the batch sharded."""
    rep = state_lib.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(rep, state_lib.batch_sharded(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )
