"""Sampling a latent diffusion run from prompts and/or semantic maps, decoded to pixels.

``load(source)`` restores the run (a workdir or a shipped name) and the autoencoder its
config names (``latent.autoencoder``); ``Generator.generate`` draws images for prompts
(negative prompts optional) or maps with the run's sampler settings, through
``latent.sample`` (the same ``samplers.sample`` and classifier-free guidance as every
model). ``python -m jaxdiff.sample --workdir=DIR --prompt="a thin upright seven"
--guidance=4`` (or ``--pretrained=mnist_text2img``) calls it.

Example::

  gen = text2img.load("runs/mnist_text2img")   # or the shipped "mnist_text2img"
  images = gen.generate(jax.random.key(0), prompts=["a thick seven"] * 16, guidance=4.0)
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import latent
from jaxdiff.data import captions
from jaxdiff.text import prompts as prompts_lib
from jaxdiff.training import components, restore


@dataclasses.dataclass
class Generator:
    """A restored latent run with its decoder.

    Attributes:
      run: the ``restore.Run`` (config, net, process, params).
      decode: scaled latents -> images, or None (samples stay latents).
      settings: the run's ``latent`` section.
    """

    run: Any
    decode: Any
    settings: latent.Settings
    _compiled: dict = dataclasses.field(default_factory=dict)

    def conditions(self, n: int, prompts=None, negative_prompt=None, maps=None):
        """(cond, null) for ``latent.sample``: prompt tokens / maps, checked.

        Args:
          n: the number of samples.
          prompts: n strings (a text model); "" is the null condition.
          negative_prompt: one string the guidance pushes away from (replaces "").
          maps: (n, H, W, 1) maps in {0, 1} (a map model).

        Raises:
          ValueError: a missing or unexpected input, a prompt too long (the message says
            by how much); words outside the caption grammar only warn.
        """
        s, cond, null = self.settings, {}, latent.null_cond(self.settings)
        if s.text:
            if prompts is None or len(prompts) != n:
                raise ValueError(f"this text model needs {n} prompts; got {prompts!r:.80}.")
            cond["tokens"] = jnp.asarray(
                prompts_lib.encode_prompts(prompts, s.max_len, captions.VOCABULARY)
            )
            if negative_prompt is not None:
                null["tokens"] = jnp.asarray(
                    prompts_lib.encode_prompts([negative_prompt], s.max_len, captions.VOCABULARY)[0]
                )
        elif prompts is not None or negative_prompt is not None:
            raise ValueError("this model has no text encoder: leave out the prompt.")
        if s.semantic_map:
            shape = (n, s.map_size, s.map_size, 1)
            if maps is None or np.shape(maps) != shape:
                raise ValueError(
                    f"this map model needs maps of shape {shape}; got {np.shape(maps)}."
                )
            cond["semantic_map"] = jnp.asarray(maps, jnp.float32)
        elif maps is not None:
            raise ValueError("this model takes no semantic map: leave out the maps.")
        return cond, null

    def generate(
        self,
        key,
        *,
        prompts=None,
        negative_prompt=None,
        maps=None,
        method=None,
        num_steps=None,
        guidance=None,
        **options,
    ) -> np.ndarray:
        """(n, H, W, C) images in [-1, 1] (latents if no autoencoder was given)."""
        n = len(prompts) if prompts is not None else len(maps)
        cond, null = self.conditions(n, prompts, negative_prompt, maps)
        config = self.run.config
        st = components.sampler_settings(config, method, num_steps, guidance)
        fn = self._sampler(st["method"], st["num_steps"], {**st["options"], **options})
        shape = components.example_shape(config, n)
        w = float(st["guidance"])
        return np.asarray(fn(self.run.params, key, cond, null, jnp.float32(w), shape, w > 0))

    def _sampler(self, method, num_steps, options):
        cache_key = (method, num_steps, tuple(sorted(options.items())))
        if cache_key not in self._compiled:
            run = self.run

            def fn(params, key, cond, null, w, shape, guided):
                model_fn = restore.Run(
                    run.config, run.net, run.process, params, run.step
                ).model_fn()
                return latent.sample(
                    key,
                    model_fn,
                    run.process,
                    shape,
                    cond=cond,
                    null=null,
                    w=w if guided else 0.0,
                    decode=self.decode,
                    method=method,
                    num_steps=num_steps,
                    kind=run.config.sample.kind,
                    **options,
                )

            self._compiled[cache_key] = jax.jit(fn, static_argnums=(5, 6))
        return self._compiled[cache_key]


def load(
    source: str, params: str = "ema", autoencoder: str | None = None, step: int | None = None
) -> Generator:
    """A shipped latent model (``pretrained.available("latent")``) or the run in a workdir
    (its newest checkpoint or the one of ``step``), with its autoencoder (``autoencoder``
    overrides the config's; a shipped model names a shipped autoencoder; a pixel twin has
    none: its "latents" are the images).

    Raises:
      ValueError: not a latent run, or no such model or autoencoder.
    """
    from jaxdiff import pretrained

    run = pretrained.load_run(source, params, step)
    s = latent.settings(run.config)
    if s is None:
        raise ValueError(f"{source} is not a latent (text / map) run: it has no latent section.")
    where = s.autoencoder if autoencoder is None else autoencoder
    decode = None
    if where:
        from jaxdiff.autoencoder import run as ae_run

        decode = ae_run.load(where).decode
    return Generator(run, decode, s)


def sample_command(
    gen: Generator,
    num: int,
    batch: int,
    *,
    seed: int,
    prompt=None,
    negative_prompt=None,
    maps_file=None,
    **sampler,
) -> np.ndarray:
    """``python -m jaxdiff.sample``'s draw for a latent run: ``num`` images in batches.

    Raises:
      UsageError: inputs this run does not take, or a bad --maps file / prompt.
    """
    from jaxdiff._cli import UsageError, require

    require(num >= 1, f"--num_samples={num}: must be >= 1.")
    require(
        sampler.get("guidance") is None or sampler["guidance"] >= 0,
        f"--guidance={sampler.get('guidance')}: must be >= 0.",
    )
    maps = None
    if maps_file is not None:
        with np.load(maps_file) as f:
            require("semantic_map" in f.files, f"--maps={maps_file}: no 'semantic_map' array.")
            maps = np.asarray(f["semantic_map"][:num], np.float32)
        require(
            len(maps) == num, f"--maps={maps_file} holds {len(maps)} maps; --num_samples={num}."
        )
    root, out = jax.random.key(seed), []
    for i in range(0, num, batch):
        n = min(batch, num - i)
        part = dict(
            prompts=None if prompt is None else [prompt] * batch,
            negative_prompt=negative_prompt,
            maps=None if maps is None else np.resize(maps[i : i + n], (batch, *maps.shape[1:])),
        )
        try:
            images = gen.generate(jax.random.fold_in(root, i // batch), **part, **sampler)
        except ValueError as e:
            raise UsageError(str(e)) from None
        out.append(images[:n])
    return np.concatenate(out)
