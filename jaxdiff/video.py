"""Video diffusion (docs/video.md): prediction from the first frames, GIF output.

An unconditional model of clips (B, T, H, W, C) predicts the frames after given ones with
the reconstruction guidance of Ho et al. (2022, "Video Diffusion Models", eq. 7): with the
known frames x^a marked by ``mask`` and the network's denoised clip x_hat(z_t),

    x_tilde^b = x_hat^b - (w_r scale_t / 2) grad_{z_t^b} || x^a - x_hat^a(z_t) ||^2,
    x_tilde^a = x^a,

and any sampler integrates with x_tilde as its x0 prediction (kind "x0"); w_r = 0 is plain
replacement of the known frames. The guidance is one more network call's worth of work (a
vector-Jacobian product) per step.

Example::

  guided = video.reconstruction_guidance(model_fn, "v", process, known, mask, weight=2.0)
  x, info = samplers.sample(key, guided, process, known.shape, method="ddim",
                            num_steps=50, kind="x0")
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import parametrization
from jaxdiff._process import batch_time, expand_like
from jaxdiff._types import Array, ModelFn


def known_mask(frames: int, num_known: int) -> Array:
    """(1, T, 1, 1, 1) float32: 1 for the first ``num_known`` frames, 0 after.

    Raises:
      ValueError: ``num_known`` outside [1, frames - 1].
    """
    if not 1 <= num_known < frames:
        raise ValueError(
            f"number of known frames {num_known} must be in [1, {frames - 1}] for "
            f"{frames}-frame clips (at least one given, at least one to predict)."
        )
    return (jnp.arange(frames) < num_known).astype(jnp.float32).reshape(1, frames, 1, 1, 1)


def reconstruction_guidance(
    model_fn: ModelFn, kind: str, process, known: Array, mask: Array, weight: float
) -> ModelFn:
    """A denoiser (kind "x0") of the clip given its frames where ``mask`` is 1.

    Args:
      model_fn: ``(x, t, **cond) -> prediction`` of an unconditional (or class-) model.
      kind: what ``model_fn`` predicts ("eps", "x0", "v", "score").
      process: the process it was trained with.
      known: (B, T, H, W, C) clips whose frames under ``mask`` are given (others ignored).
      mask: broadcastable to ``known``; 1 on the given frames, 0 on those to predict.
      weight: w_r >= 0 (0: replacement only).

    Returns:
      ``(x, t, **cond) -> x_tilde``, shaped like x.

    Raises:
      ValueError: a negative weight.
    """
    if weight < 0:
        raise ValueError(f"reconstruction guidance weight must be >= 0; got {weight}.")
    denoise = parametrization.to_denoiser(model_fn, kind, process)

    def guided(x: Array, t: Array, **cond) -> Array:
        t = batch_time(t, x)

        def error(z):
            x0 = denoise(z, t, **cond)
            return jnp.sum(mask * jnp.square(known - x0)), x0

        grad, x0 = jax.grad(error, has_aux=True)(x)
        scale = expand_like(process.scale(t), x)
        adjusted = x0 - 0.5 * weight * scale * grad
        return jnp.where(mask > 0, known, adjusted)

    return guided


def gif_frames(clips: np.ndarray, upscale: int = 2) -> list:
    """PIL frames of a GIF that plays N clips (N, T, H, W, C) in [-1, 1] side by side."""
    from PIL import Image

    from jaxdiff.training import summaries

    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise ValueError(f"clips must be (N, T, H, W, C); got shape {clips.shape}.")
    ncol = int(np.ceil(np.sqrt(clips.shape[0])))
    frames = []
    for t in range(clips.shape[1]):
        grid = summaries.make_grid(clips[:, t], ncol)
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
        frames.append(Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid))
    return frames


def write_gif(path: str, clips: np.ndarray, fps: float = 6.0, upscale: int = 2) -> None:
    """Writes clips (N, T, H, W, C) in [-1, 1] as one looping animated GIF (pillow)."""
    first, *rest = gif_frames(clips, upscale)
    first.save(path, save_all=True, append_images=rest, duration=int(1000 / fps), loop=0)


def make_predictor(config, net, process, *, method=None, num_steps=None, weight: float = 2.0):
    """``predict(params, key, known, mask) -> clips (B, T, H, W, C)`` in [-1, 1] of a run.

    The sampler is the run's (``config.sample``) unless ``method`` / ``num_steps`` are
    given; the known frames enter through :func:`reconstruction_guidance`.

    Raises:
      ValueError: a run that is not a video model, or one with a learned variance.
    """
    from jaxdiff import denoiser, samplers
    from jaxdiff.training import components

    if not config.data.get("frames", 0):
        raise ValueError("prediction from given frames needs a video run (data.frames > 0).")
    if config.model.learn_sigma:
        raise ValueError("reconstruction guidance needs a model without a learned variance.")
    settings = components.sampler_settings(config, method, num_steps, None)

    def predict(params, key, known, mask):
        model_fn = denoiser.make_model_fn(net.apply, params, process, config.loss.noise_level)
        guided = reconstruction_guidance(model_fn, config.sample.kind, process, known, mask, weight)
        x, _ = samplers.sample(
            key,
            guided,
            process,
            known.shape,
            method=settings["method"],
            num_steps=settings["num_steps"],
            kind="x0",
            **settings["options"],
        )
        return jnp.clip(x, -1.0, 1.0)

    return predict


def first_clips(config, count: int, split: str = "test") -> np.ndarray:
    """The first ``count`` clips (count, T, H, W, C) in [-1, 1] of the run's data source."""
    from jaxdiff.training import components

    source = components.build_source(config, split)
    clips = [np.asarray(source[i]["image"], np.float32) for i in range(count)]
    return np.stack(clips) / 127.5 - 1.0
