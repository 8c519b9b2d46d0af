"""The latent data set of a latent-diffusion run: captioned digits encoded once.

``encode_split`` reads a split of the captioned MNIST set (``data.captions``: placed
digits, measured captions), encodes every image with the autoencoder (a posterior sample
times the scale factor: unit variance), tokenises its caption and derives its semantic map,
and returns the arrays of the ``latents`` source (``data.sources.latents``)::

  latents (N, h, w, c) float32   labels (N,) int32         tokens (N, max_len) int32
  semantic_map (N, H, W, 1)      images (N, H, W, 1) uint8  captions (N,) str
"""

import jax
import numpy as np

from jaxdiff.data import captions, semantic_maps, sources
from jaxdiff.text import prompts


def captioned_split(name: str, split: str, data_dir, limit: int | None = None):
    """(placed uint8 (N, H, W, 1), labels (N,), captions) of a TFDS split (first ``limit``)."""
    from jaxdiff.evaluation.fid import read_records

    base = sources.tfds(name, split, data_dir)
    records = read_records(base, min(limit or len(base), len(base)))
    images = np.stack([np.asarray(r["image"]) for r in records])
    labels = np.array([int(r["label"]) for r in records], np.int32)
    placed, texts, _ = captions.build(images, labels)
    return placed, labels, texts


def _encode(ae, x: np.ndarray, seed: int, batch: int) -> np.ndarray:
    """Scaled posterior samples of images x (N, H, W, 1), ``batch`` at a time."""
    encode = jax.jit(lambda k, b: ae.encode(k, b))
    key = jax.random.key(seed)
    parts = [
        np.asarray(encode(jax.random.fold_in(key, i), x[i : i + batch]))
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(parts)


def encode_split(
    ae, placed, labels, texts, *, max_len: int, map_kind: str, seed: int = 0, batch: int = 256
) -> dict:
    """The arrays of a latent ``.npz`` (see the module docstring).

    Args:
      ae: an ``autoencoder.run.Loaded``, or None for a pixel twin: its "latents" are the
        placed images in [-1, 1] (N, H, W, 1), the same data diffused in pixel space.
      placed, labels, texts: from :func:`captioned_split`.
      max_len: tokens per caption.
      map_kind: a ``data.semantic_maps.MAPS`` kind.
      seed: the posterior samples' seed.
      batch: images per encoder call.
    """
    x = placed.astype(np.float32) / 127.5 - 1.0
    latents = x if ae is None else _encode(ae, x, seed, batch)
    return {
        "latents": latents.astype(np.float32),
        "labels": labels,
        "tokens": prompts.encode_prompts(texts, max_len),
        "semantic_map": semantic_maps.derive(map_kind, x),
        "images": placed,
        "captions": np.array(texts),
    }
