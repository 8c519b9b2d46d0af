"""A trained autoencoder: load it, encode to scaled latents, decode, and measure it.

Example::

  ae = run.load("runs/mnist_autoencoder")             # EMA params + scale factor
  ae = run.load("mnist_autoencoder")                  # or the shipped one
  z = ae.encode(jax.random.key(0), images)            # (N, 7, 7, 4), ~unit variance
  images = ae.decode(z)                               # (N, 28, 28, 1), unclipped
  run.measure(ae, test_images, feature_fn)            # {"psnr", "ssim", "rfid", ...}
"""

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff._chunks import map_in_chunks
from jaxdiff.autoencoder import losses
from jaxdiff.autoencoder.model import sample_posterior
from jaxdiff.autoencoder.train import build_network
from jaxdiff.training import checkpoint, optim, restore


class Loaded(NamedTuple):
    """A restored autoencoder.

    Attributes:
      config: its training config.
      net: the ``Autoencoder`` module.
      params: the parameters (first EMA by default).
      scale_factor: 1 / std of its latents on the training images (from the checkpoint).
      step: the checkpoint's step.
    """

    config: ml_collections.ConfigDict
    net: Any
    params: Any
    scale_factor: float
    step: int

    def encode(self, key, images, mode: bool = False):
        """(B, H, W, C) in [-1, 1] -> scale_factor * z (B, h, w, c); z ~ q(z | x), or its
        mean with ``mode``."""
        mean, logvar = self.net.apply({"params": self.params}, images, method=self.net.encode)
        z = mean if mode else sample_posterior(key, mean, logvar)
        return self.scale_factor * z

    def decode(self, latents):
        """Scaled latents (B, h, w, c) -> images (B, H, W, C), unclipped."""
        z = latents / self.scale_factor
        return self.net.apply({"params": self.params}, z, method=self.net.decode)


def is_autoencoder_run(workdir: str) -> bool:
    """Whether ``workdir`` is a training run whose newest checkpoint is an autoencoder's."""
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        return False
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    step = ckpt.latest_step()
    from jaxdiff import pretrained

    found = step is not None and pretrained.config_kind(ckpt.read_meta(step)["config"]) == (
        "autoencoder"
    )
    ckpt.close()
    return found


def load(source: str, params: str = "ema") -> Loaded:
    """A shipped autoencoder by name, or the newest checkpoint of an autoencoder run.

    Args:
      source: a name from ``pretrained.available("autoencoder")`` or a workdir.
      params: a run's "ema" (its first EMA) or "raw" parameters; a shipped one has its EMA.

    Raises:
      ValueError: no such shipped model and no checkpoint, or a run that is not an
        autoencoder's.
    """
    from jaxdiff import pretrained

    if source in pretrained.available("autoencoder"):
        flat, record = pretrained.read_weights(source)
        config = ml_collections.ConfigDict(record["config"])
        params_tree = jax.tree.map(jnp.asarray, pretrained.unflatten(flat))
        return Loaded(
            config, build_network(config), params_tree, record["scale_factor"], record["step"]
        )
    if not os.path.isdir(os.path.join(source, "checkpoints")):
        raise ValueError(
            f"{source}: neither a shipped autoencoder "
            f"({', '.join(pretrained.available('autoencoder')) or 'none'}) nor a run with a "
            "checkpoints folder; train the autoencoder first (python -m jaxdiff.train "
            "--config=configs/mnist_autoencoder.py --workdir=...)."
        )
    return _load_run(source, params)


def _load_run(workdir: str, params: str) -> Loaded:
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    step = ckpt.latest_step()
    if step is None:
        raise ValueError(f"no checkpoint in {ckpt.directory}; train the autoencoder first.")
    meta = ckpt.read_meta(step)
    config = ml_collections.ConfigDict(meta["config"])
    if "autoencoder" not in config or "scale_factor" not in meta:
        raise ValueError(f"{workdir} is not an autoencoder run (no autoencoder section).")
    state = restore._restore_weights(ckpt, step)  # noqa: SLF001 - the shared weights reader
    ckpt.close()
    chosen = state["params"]
    decays = list(config.optim.ema_decays)
    if params == "ema" and decays and state.get("ema"):
        chosen = state["ema"][optim.ema_key(decays[0])]
    return Loaded(config, build_network(config), jax.device_get(chosen), meta["scale_factor"], step)


def reconstruct(ae: Loaded, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Decodes each image's posterior mean: (N, H, W, C) -> (N, H, W, C) in [-1, 1]."""
    fn = jax.jit(lambda x: jnp.clip(ae.decode(ae.encode(None, x, mode=True)), -1.0, 1.0))
    return map_in_chunks(fn, images, batch)


def latent_std(ae: Loaded, images: np.ndarray, key, batch: int = 256) -> float:
    """The standard deviation of scaled posterior samples of ``images`` (~1 by design)."""
    fn = jax.jit(lambda k, x: ae.encode(k, x))
    parts = [
        np.asarray(fn(jax.random.fold_in(key, i), images[i : i + batch]))
        for i in range(0, len(images), batch)
    ]
    return float(np.std(np.concatenate(parts)))


def measure(ae: Loaded, images: np.ndarray, feature_fn=None, batch: int = 256) -> dict:
    """Reconstruction quality on ``images`` (N, H, W, C) in [-1, 1].

    Args:
      ae: the autoencoder.
      images: e.g. the test split.
      feature_fn: ``images in [-1, 1] -> (B, F)`` features for rFID (the FID between the
        images and their reconstructions), e.g. the in-repo classifier's; None skips it.

    Returns:
      {"psnr" (dB, mean), "ssim" (mean), "latent_std", "rfid" (with ``feature_fn``)}.
    """
    recon = reconstruct(ae, images, batch)
    out = {
        "psnr": float(np.mean(losses.psnr(jnp.asarray(images), jnp.asarray(recon)))),
        "ssim": float(np.mean(losses.ssim(jnp.asarray(images), jnp.asarray(recon)))),
        "latent_std": latent_std(ae, images, jax.random.key(0), batch),
    }
    if feature_fn is not None:
        from jaxdiff.evaluation import fid

        out["rfid"] = fid.fid_from_features(
            map_in_chunks(feature_fn, images, batch), map_in_chunks(feature_fn, recon, batch)
        )
    return out
