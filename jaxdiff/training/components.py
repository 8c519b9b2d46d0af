"""Config -> objects: the process, network, loss, optimiser, data and sampler of a run.

The training loop and the sampling command read the config only through these builders,
which hand every module plain constructor arguments.
"""

import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import _settings, denoiser, latent, schedules, sdes, super_res
from jaxdiff.data import pipeline, sources
from jaxdiff.training import optim
from jaxdiff.training import step as step_lib


def _schedule(name, **params):
    return schedules.DiscreteSchedule.from_name(name, **params)


PROCESSES = {"schedule": _schedule, "sde": sdes.from_name}


def build_process(config: ml_collections.ConfigDict):
    """The process: a discrete schedule ("schedule") or a continuous SDE ("sde")."""
    kind = config.process.kind
    if kind not in PROCESSES:
        raise ValueError(f"Unknown process kind {kind!r}; valid kinds: {sorted(PROCESSES)}.")
    return PROCESSES[kind](config.process.name, **config.process.params.to_dict())


def num_classes(config) -> int | None:
    """The number of classes of a conditional model, None when unconditional."""
    return config.model.num_classes or None


def build_model(config):
    """The Flax network from ``models.create(name, **overrides)``.

    A config with an ``sr`` section (:mod:`jaxdiff.super_res`) gets that network as the
    backbone of a ``models.super_res.SuperResolution`` (returning the image channels); one
    with a ``latent`` section (:mod:`jaxdiff.latent`) as the backbone of a
    ``text.network.ConditionedDenoiser`` (prompts and/or semantic maps).
    """
    from jaxdiff import models

    overrides = dict(config.model.options.to_dict())
    overrides.update(num_classes=config.model.num_classes, dtype=getattr(jnp, config.model.dtype))
    if config.model.learn_sigma:
        overrides["learn_sigma"] = True
    sr, lt = super_res.settings(config), latent.settings(config)
    if lt is not None:
        overrides.update(latent.backbone_overrides(lt, config.data.channels))
        return latent.build_network(lt, models.create(config.model.name, **overrides))
    if sr is None:
        return models.create(config.model.name, **overrides)
    overrides.setdefault("out_channels", config.data.channels)
    backbone = models.create(config.model.name, **overrides)
    return models.super_res.SuperResolution(backbone, factor=sr.factor, upsample=sr.upsample)


def build_loss(config, process):
    """``losses.make_loss(name, process, **options)``."""
    from jaxdiff import losses

    loss_fn = losses.make_loss(config.loss.name, process, **config.loss.options.to_dict())
    lt = latent.settings(config)
    if lt is not None:
        return latent.make_loss(loss_fn, lt)
    sr = super_res.settings(config)
    if sr is None:
        return loss_fn
    return super_res.make_loss(loss_fn, process, factor=sr.factor, aug_max=sr.aug_max)


def build_importance(config, process):
    """``(state, (sample_fn, update_fn))`` for importance sampling of t, or ``(None, None)``."""
    if not config.loss.importance_bins:
        return None, None
    from jaxdiff import time_sampling

    st = time_sampling.importance_init(
        config.loss.importance_bins, config.loss.importance_history, process=process
    )
    return st, (time_sampling.importance_sample, time_sampling.importance_update)


def build_optimizer(config):
    o = config.optim
    return optim.make_optimizer(
        o.name,
        o.lr,
        warmup_steps=o.warmup_steps,
        clip_norm=o.clip_norm,
        b1=o.b1,
        b2=o.b2,
        eps=o.eps,
        weight_decay=o.weight_decay,
    )


def build_source(config, split: str | None = None):
    d = config.data
    return sources.build(
        d.source, name=d.name, split=split or d.split, data_dir=d.data_dir or None, path=d.path
    )


def check_frames(config, source) -> None:
    """Raises ValueError unless a video config's ``data.frames`` is its clips' length."""
    frames = config.data.get("frames", 0)
    if not frames or len(source) == 0:
        return
    length = source[0]["image"].shape[0]
    if length != frames:
        raise ValueError(
            f"--config.data.frames={frames}, but the {config.data.name!r} clips have {length} "
            "frames: set data.frames to the data set's clip length."
        )


def build_dataset(config, shard_index: int = 0, shard_count: int = 1):
    """This host's infinite, checkpointable batch stream."""
    d = config.data
    source = build_source(config)
    check_frames(config, source)
    return pipeline.make_dataset(
        source,
        d.batch_size,
        config.seed,
        shard_index=shard_index,
        shard_count=shard_count,
        flip=d.flip,
        use_labels=bool(config.model.num_classes),
        num_threads=d.num_threads,
        downsample=d.get("downsample", 1),
        extra_keys=latent.cond_keys(latent.settings(config)),
    )


def example_shape(config, batch: int) -> tuple[int, ...]:
    """(batch, H, W, C) of an image model, (batch, T, H, W, C) of a video model."""
    d = config.data
    frames = (d.frames,) if d.get("frames", 0) else ()
    return (batch, *frames, d.image_size, d.image_size, d.channels)


def make_train_step(config, net, process, loss_fn=None):
    """The pure train step and the initial importance-sampling state.

    ``loss_fn`` replaces the configured loss (e.g. a distillation loss, which needs a
    teacher that a config cannot hold).
    """
    imp_state, imp_fns = build_importance(config, process)
    fn = step_lib.make_train_step(
        net.apply,
        loss_fn or build_loss(config, process),
        build_optimizer(config),
        process,
        ema_decays=tuple(config.optim.ema_decays),
        ema_warmup=config.optim.ema_warmup,
        noise_level=config.loss.noise_level,
        split_output=config.model.learn_sigma,
        num_classes=num_classes(config),
        label_dropout=config.loss.label_dropout,
        grad_accum=config.optim.grad_accum,
        importance=imp_fns,
        cond_keys=latent.cond_keys(latent.settings(config)),
    )
    return fn, imp_state


def example_cond(config, batch: int) -> dict:
    """Dummy conditioning of the network (zeros): label, an SR model's low_res and
    aug_level, a latent model's null prompt / map."""
    cond = {"label": jnp.zeros((batch,), jnp.int32)} if num_classes(config) else {}
    lt = latent.settings(config)
    if lt is not None:
        cond.update(latent.example_cond(lt, batch))
    sr = super_res.settings(config)
    if sr is not None:
        b, h, w, c = example_shape(config, batch)
        cond["low_res"] = jnp.zeros((b, h // sr.factor, w // sr.factor, c), jnp.float32)
        cond["aug_level"] = jnp.zeros((batch,), jnp.float32)
    return cond


def init_params(config, net, key):
    """Initial parameters of the network (B = 1 dummy inputs)."""
    x = jnp.zeros(example_shape(config, 1), jnp.float32)
    cond = example_cond(config, 1)
    return net.init({"params": key}, x, jnp.zeros((1,)), train=False, **cond)["params"]


def sampler_settings(config, method=None, num_steps=None, guidance=None) -> dict:
    """{"method", "num_steps", "guidance", "options"}: ``config.sample`` with overrides.

    The configured options (e.g. ddim's spacing) belong to the configured method: another
    ``method`` starts from no options.
    """
    settings = _settings.resolve_sampler(config.sample.to_dict(), method, num_steps, guidance)
    if "distill" in config:
        _settings.check_student(config.distill, settings)
    return settings


def sample_options(config, settings: dict, extra=None) -> dict:
    """``samplers.sample``'s options: the settings', then ``extra``, then the network's
    learned variance (``learned_variance=True`` when it predicts 2C channels)."""
    options = {**settings["options"], **dict(extra or {})}
    if config.model.learn_sigma:
        options["learned_variance"] = True
    return options


def guided_model_fn(config, net, process, params, w=0.0):
    """``model_fn(x, t, **cond)`` of a run's network, guided when it should be.

    Args:
      config, net, process, params: the run's.
      w: classifier-free guidance weight, a scalar or one per row (B,); a class-conditional
        model is guided when w is per-row or nonzero.

    Returns:
      The model function (a ``(prediction, v)`` pair for a learned-variance network).
    """
    from jaxdiff import guidance as guidance_lib

    model_fn = denoiser.make_model_fn(
        net.apply, params, process, config.loss.noise_level, split_output=config.model.learn_sigma
    )
    classes = num_classes(config)
    if classes and (np.ndim(w) or w):
        model_fn = guidance_lib.cfg(model_fn, w, classes)
    return model_fn


def make_sampler(config, net, process, *, method=None, num_steps=None, guidance=None, **options):
    """``sample(params, key, labels) -> images (N, H, W, C)`` with the configured sampler.

    Pixel samples are clipped to [-1, 1]; latents are returned as they are.

    Args:
      config: the run's config (``config.sample`` holds the defaults).
      net: the network.
      process: the process it was trained with.
      method, num_steps, guidance: override ``config.sample``'s values; ``guidance`` may
        also be one weight per sample, (N,), to draw several weights in one compiled call.
      **options: passed to ``samplers.sample``; ``config.sample.options`` (e.g. ddim's
        spacing) apply only when ``method`` is the configured method.
    """
    from jaxdiff import samplers

    settings = sampler_settings(config, method, num_steps, guidance)
    options = sample_options(config, settings, options)

    def sample(params, key, labels=None):
        model_fn = guided_model_fn(config, net, process, params, settings["guidance"])
        cond = {"label": labels} if num_classes(config) else {}
        num = labels.shape[0] if labels is not None else config.sample.num_samples
        x, _ = samplers.sample(
            key,
            model_fn,
            process,
            example_shape(config, num),
            method=settings["method"],
            num_steps=settings["num_steps"],
            kind=config.sample.kind,
            **options,
            **cond,
        )
        return x if config.data.source == "latents" else jnp.clip(x, -1.0, 1.0)

    return sample


def jitted_sampler(model, **kwargs):
    """``jax.jit`` of :func:`make_sampler` for anything with ``config``, ``net`` and
    ``process`` (a restored run, a shipped model); ``kwargs`` as :func:`make_sampler`'s."""
    import jax

    return jax.jit(make_sampler(model.config, model.net, model.process, **kwargs))


def sample_labels(config, n: int):
    """Labels 0, 1, ..., 9, 0, ... for a conditional model's grid (None if unconditional)."""
    classes = num_classes(config)
    if not classes:
        return None
    return jnp.arange(n, dtype=jnp.int32) % classes
