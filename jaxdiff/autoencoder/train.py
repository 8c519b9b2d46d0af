"""Training the autoencoder: ``python -m jaxdiff.train --config=configs/mnist_autoencoder.py
--workdir=DIR`` (the training command sends a config with an ``autoencoder`` section here).

A small loop beside the diffusion one (its step is not a diffusion loss) that reuses its
pieces: the data pipeline and optimiser of ``training.components``, the ``TrainState``
(params, EMAs, optimiser state, key), the orbax ``Checkpointer`` (manifests, exact resume
with the grain iterator, SIGTERM), the metrics writer. At every checkpoint the latent scale
factor is measured on the first ``autoencoder.scale_examples`` training images (the EMA
parameters, posterior samples) and stored in the checkpoint's metadata:
``scale_factor = 1 / std(z)``, so that ``scale_factor * z`` has unit variance (Rombach et
al. 2022, Sec. G).
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff import _settings
from jaxdiff.autoencoder import losses
from jaxdiff.autoencoder.model import Autoencoder, sample_posterior
from jaxdiff.training import checkpoint as ckpt_lib
from jaxdiff.training import components, optim, summaries
from jaxdiff.training import state as state_lib

# A config's ``autoencoder`` section: the network's constructor arguments, and the loss's.
NETWORK_FIELDS = ("ch", "ch_mult", "num_res_blocks", "latent_channels", "num_groups")
LOSS_FIELDS = ("kl_weight", "ssim_weight", "scale_examples")


def check_section(config) -> dict:
    """The ``autoencoder`` section as a dict, with unknown fields refused."""
    section = _settings.config_section(config, "autoencoder", NETWORK_FIELDS + LOSS_FIELDS)
    if section is None:
        raise ValueError("the config has no autoencoder section.")
    return section


def build_network(config) -> Autoencoder:
    """The :class:`Autoencoder` of a config's ``autoencoder`` section."""
    section = check_section(config)
    kwargs = {k: section[k] for k in NETWORK_FIELDS if k in section}
    kwargs["ch_mult"] = tuple(kwargs.get("ch_mult", (1, 2, 2)))
    return Autoencoder(out_channels=config.data.channels, **kwargs)


def make_train_step(net: Autoencoder, tx, config):
    """The pure ``step(state, batch) -> (state, metrics)`` of the autoencoder.

    The posterior sample's key is ``fold_in(root, step)``; metrics: loss, rec, kl, psnr,
    grad_norm.
    """
    a, o = config.autoencoder, config.optim

    def loss_fn(params, key, x):
        x_hat, mean, logvar = net.apply({"params": params}, x, key)
        return losses.autoencoder_loss(
            x, x_hat, mean, logvar, kl_weight=a.kl_weight, ssim_weight=a.ssim_weight
        )

    def step(state, batch):
        key = jax.random.fold_in(state.root_key, state.step)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, key, batch["image"]
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = optim.ema_update(state.ema, params, o.ema_decays, state.step, o.ema_warmup)
        new = dataclasses.replace(
            state, step=state.step + 1, params=params, ema=ema, opt_state=opt_state
        )
        return new, {**metrics, "grad_norm": optax.tree.norm(grads)}

    return step


def first_images(config, count: int) -> np.ndarray:
    """The first ``count`` images of the training source, (N, H, W, C) float32 in [-1, 1]."""
    from jaxdiff.evaluation.fid import read_records

    source = components.build_source(config)
    records = read_records(source, min(count, len(source)))
    return np.stack([r["image"] for r in records]).astype(np.float32) / 127.5 - 1.0


def measure_scale_factor(net: Autoencoder, params, images: np.ndarray, key, batch: int = 256):
    """1 / std of posterior samples z ~ q(z | x) over ``images`` (all latent entries).

    Returns:
      a float: multiplying latents by it gives unit variance on these images.
    """
    encode = jax.jit(lambda p, x: net.apply({"params": p}, x, method=net.encode))
    zs = []
    for i in range(0, len(images), batch):
        mean, logvar = encode(params, images[i : i + batch])
        zs.append(np.asarray(sample_posterior(jax.random.fold_in(key, i), mean, logvar)))
    return float(1.0 / np.std(np.concatenate(zs)))


def decoding_params(state):
    """The parameters latents are measured and decoded with: the first EMA, else raw."""
    return next(iter(state.ema.values())) if state.ema else state.params


def train(config, workdir: str):
    """Trains (or resumes) the autoencoder of ``config`` in ``workdir``; returns the state."""
    from jaxdiff.training import loop  # the diffusion loop's workdir and config checks

    loop.check_workdir(workdir)
    net, tx, tc = build_network(config), components.build_optimizer(config), config.train
    mesh = state_lib.make_mesh()
    rep = state_lib.replicated(mesh)
    step_fn = jax.jit(make_train_step(net, tx, config), donate_argnums=0, out_shardings=(rep, rep))
    iterator = iter(components.build_dataset(config, jax.process_index(), jax.process_count()))
    create, abstract = _initial_state(config, net, tx, rep)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), tc.keep_last, tc.keep_every)
    state = loop.restore_or_init(config, ckpt, create, abstract, iterator)
    images = first_images(config, config.autoencoder.scale_examples)
    writer, stop = summaries.Writer(workdir), ckpt_lib.install_sigterm_handler()
    step = int(state.step)
    try:
        for step in range(int(state.step) + 1, tc.num_steps + 1):
            state, metrics = step_fn(state, state_lib.global_batch(next(iterator), mesh))
            if not np.isfinite(float(metrics["loss"])):
                raise loop.NonFiniteLossError(
                    f"autoencoder loss is {float(metrics['loss'])} at step {step}; stopped "
                    f"without saving. Last good checkpoint: step {ckpt.latest_step()} in "
                    f"{ckpt.directory}."
                )
            if step % tc.log_every == 0 or step == tc.num_steps:
                writer.scalars(step, metrics)
            if step % tc.checkpoint_every == 0 or step == tc.num_steps or stop.is_set():
                meta = _meta(config, net, state, images)
                ckpt.save(step, state, iterator, meta, force=True)
            ckpt.poll()
            if stop.is_set():
                break
    finally:
        ckpt.close()
        writer.close()
    loop.say(f"done at step {step}: autoencoder checkpoint {ckpt.directory}/{ckpt.latest_step()}.")
    return state


def _meta(config, net, state, images) -> dict:
    key = jax.random.fold_in(state.root_key, -1 % 2**31)
    scale = measure_scale_factor(net, decoding_params(state), images, key)
    return {"config": json.loads(json.dumps(config.to_dict())), "scale_factor": scale}


def _initial_state(config, net, tx, rep):
    """(jitted create, abstract state) as ``loop.init_state`` for the autoencoder."""
    impl = state_lib.check_prng_impl(config.prng_impl)

    def create():
        key = jax.random.fold_in(jax.random.key(config.seed, impl=impl), 0)
        x = jnp.zeros((1, config.data.image_size, config.data.image_size, config.data.channels))
        params = net.init(key, x)["params"]
        ema = config.optim.ema_decays
        return state_lib.create(params, tx, ema, config.seed, prng_impl=impl)

    return jax.jit(create, out_shardings=rep), state_lib.abstract(jax.eval_shape(create), rep)
