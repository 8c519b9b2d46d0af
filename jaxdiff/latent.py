"""Latent diffusion (Rombach et al. 2022): a denoiser on autoencoder latents, conditioned on
prompts through cross-attention and/or on semantic maps through concatenation.

A config opts in with a section ``latent`` (see :data:`FIELDS`); its data are a latent
``.npz`` (``data.source = "latents"``) written by ``python -m jaxdiff.autoencoder encode``:
latents already multiplied by the autoencoder's scale factor (unit variance), with the
captions' ``tokens`` (N, L) and the ``semantic_map`` (N, 28, 28, 1) of each image.
``training.components`` builds from it:

- the network: :class:`jaxdiff.text.network.ConditionedDenoiser` around the configured
  backbone (U-Net or DiT; ``context_dim`` = the text width, ``out_channels`` = the latent
  channels), the text encoder inside the same parameter tree (trained jointly);
- the loss: :func:`make_loss`, which drops each condition to its null value with
  probability ``cond_dropout`` (the empty prompt, an all-zero map) for classifier-free
  guidance;
- the batches: the "tokens" / "semantic_map" fields go to the network as conditioning.

Sampling (:func:`sample`) is ``samplers.sample`` on latents, guided by
``guidance.cfg_over`` (the unconditional half gets the empty prompt, or a negative
prompt), then the autoencoder's decoder (``jaxdiff.autoencoder.run``).

Example:
  >>> import ml_collections
  >>> from jaxdiff import latent
  >>> config = ml_collections.ConfigDict({"latent": {"text": True, "max_len": 48}})
  >>> latent.cond_keys(latent.settings(config))
  ('tokens',)
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdiff import _settings, guidance, samplers
from jaxdiff._process import Process, expand_like
from jaxdiff._types import Array, PRNGKey
from jaxdiff.data.semantic_maps import MAPS
from jaxdiff.text import prompts
from jaxdiff.text.encoder import TextEncoder
from jaxdiff.text.network import ConditionedDenoiser

FIELDS = {
    "autoencoder": "the autoencoder run (workdir) that decodes samples ('': stay latents)",
    "text": "condition on prompts: a text encoder trained with the denoiser",
    "max_len": "tokens per prompt (byte-level, with begin and end tokens)",
    "text_width": "the text encoder's width D (the backbone's context_dim)",
    "text_depth": "the text encoder's transformer blocks",
    "text_heads": "the text encoder's attention heads",
    "semantic_map": f"'' (none) or a map kind {sorted(MAPS)} given by concatenation",
    "map_size": "the semantic map's height and width (the images', e.g. 28)",
    "map_features": "channels of the encoded map concatenated to the latents",
    "cond_dropout": "training probability of the null prompt / the null (zero) map",
}
_DROP_STREAM = 0x4C44  # fold_in stream of the loss key that drops conditions


@dataclasses.dataclass(frozen=True)
class Settings:
    """A config's ``latent`` section, checked (see :data:`FIELDS`)."""

    autoencoder: str = ""
    text: bool = False
    max_len: int = 48
    text_width: int = 64
    text_depth: int = 2
    text_heads: int = 4
    semantic_map: str = ""
    map_size: int = 28
    map_features: int = 16
    cond_dropout: float = 0.1

    def __post_init__(self):
        if not self.text and not self.semantic_map:
            raise ValueError("latent: give text=True and/or a semantic_map kind; both are off.")
        if self.semantic_map and self.semantic_map not in MAPS:
            raise ValueError(f"latent.semantic_map={self.semantic_map!r}; valid: {sorted(MAPS)}.")
        if self.max_len < 3:
            raise ValueError(f"latent.max_len={self.max_len}: must be >= 3 (begin, end, text).")
        if self.text_width % self.text_heads:
            raise ValueError(
                f"latent.text_width={self.text_width} is not divisible by "
                f"text_heads={self.text_heads}."
            )
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"latent.cond_dropout={self.cond_dropout}: must be in [0, 1).")


def settings(config) -> Settings | None:
    """The checked ``latent`` section of a config, or None for a pixel model.

    Raises:
      ValueError: an unknown field (listing the valid ones) or a value out of range.
    """
    fields = _settings.config_section(config, "latent", FIELDS)
    if fields is None:
        return None
    return Settings(**fields)


def cond_keys(s: Settings | None) -> tuple[str, ...]:
    """The batch fields that reach the network as conditioning."""
    if s is None:
        return ()
    return (("tokens",) if s.text else ()) + (("semantic_map",) if s.semantic_map else ())


def backbone_overrides(s: Settings, channels: int) -> dict:
    """``models.create`` overrides of the backbone: context_dim, out_channels."""
    out = {"context_dim": s.text_width} if s.text else {}
    if s.semantic_map:
        out["out_channels"] = channels
    return out


def build_network(s: Settings, backbone) -> ConditionedDenoiser:
    """The backbone wrapped with its text encoder and map encoder."""
    text = None
    if s.text:
        text = TextEncoder(s.max_len, s.text_width, s.text_depth, s.text_heads, name="text")
    return ConditionedDenoiser(backbone, text, s.map_features if s.semantic_map else 0)


def null_cond(s: Settings) -> dict:
    """Each condition's null value, unbatched: the empty prompt (L,), a zero map (H, W, 1)."""
    out = {}
    if s.text:
        out["tokens"] = jnp.asarray(prompts.null_tokens(s.max_len))
    if s.semantic_map:
        out["semantic_map"] = jnp.zeros((s.map_size, s.map_size, 1), jnp.float32)
    return out


def example_cond(s: Settings, batch: int) -> dict:
    """The null conditioning of ``batch`` examples (for initialising the network)."""
    return {k: jnp.broadcast_to(v, (batch, *v.shape)) for k, v in null_cond(s).items()}


def drop_conditions(key: PRNGKey, cond: dict, null: dict, rate: float) -> dict:
    """Replaces each example's condition by its null value with probability ``rate``,
    independently per condition (each (B, ...) in ``cond`` with a key in ``null``)."""
    out = dict(cond)
    for i, name in enumerate(sorted(null)):
        value = cond[name]
        drop = jax.random.uniform(jax.random.fold_in(key, i), value.shape[:1]) < rate
        out[name] = jnp.where(expand_like(drop, value), null[name].astype(value.dtype), value)
    return out


def make_loss(loss_fn: Callable, s: Settings) -> Callable:
    """Wraps a loss so that conditions are dropped to null with ``s.cond_dropout``.

    The drops draw from ``fold_in(key, stream)`` and ``loss_fn`` gets ``key`` itself, so
    with rate 0 the wrapper equals ``loss_fn``.
    """
    null = null_cond(s)

    def latent_loss(model_fn, key, x0, *, t=None, t_weights=None, **cond):
        if s.cond_dropout:
            k_drop = jax.random.fold_in(key, _DROP_STREAM)
            cond = drop_conditions(k_drop, cond, null, s.cond_dropout)
        return loss_fn(model_fn, key, x0, t=t, t_weights=t_weights, **cond)

    latent_loss.needs_step = getattr(loss_fn, "needs_step", False)  # type: ignore[attr-defined]
    return latent_loss


def sample(
    key: PRNGKey,
    model_fn,
    process: Process,
    shape: tuple[int, ...],
    *,
    cond: dict,
    null: dict,
    w,
    decode: Callable[[Array], Array] | None,
    method: str,
    num_steps: int,
    kind: str = "score",
    **options,
) -> Array:
    """Latents by ``samplers.sample`` (guided over ``null`` when w > 0), then decoded.

    Args:
      key: PRNG key.
      model_fn: ``(x, t, tokens=, semantic_map=) -> prediction`` on latents.
      process: the model's process.
      shape: (B, h, w, c) of the latents.
      cond: {"tokens": (B, L), "semantic_map": (B, H, W, 1)}: what to draw.
      null: the guided inputs' unconditional values (:func:`null_cond`, or a negative
        prompt's tokens in place of the empty prompt).
      w: guidance weight >= 0 (a Python 0: no guidance, one network call per step; an
        array is traced, so changing it does not recompile).
      decode: latents (B, h, w, c) -> images, or None to return latents.
      method, num_steps, kind, **options: as ``samplers.sample``.

    Returns:
      (B, H, W, C) images clipped to [-1, 1] (or the latents without ``decode``).
    """
    if not (isinstance(w, (int, float)) and w == 0):  # a traced w always guides
        model_fn = guidance.cfg_over(model_fn, w, null)
    z, _ = samplers.sample(
        key,
        model_fn,
        process,
        shape,
        method=method,
        num_steps=num_steps,
        kind=kind,
        **options,
        **cond,
    )
    return z if decode is None else jnp.clip(decode(z), -1.0, 1.0)
