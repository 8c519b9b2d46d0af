"""Super-resolution networks: a U-Net that also sees an upsampled low-resolution image.

``SuperResolution`` wraps a U-Net backbone as ``F(x, noise_level, low_res=, aug_level=,
label=)``: the low-resolution image (B, H / f, W / f, C) is upsampled by the integer factor
f, concatenated to the noisy input x (B, H, W, C) along channels (the backbone sees 2C
channels and returns C), and its augmentation level (the noise level of the low-resolution
image, Ho et al. 2021's conditioning augmentation) is embedded like the time and added to
the backbone's time embedding.

The resamplers use only ops that export to ONNX with a symbolic batch (no
``jax.image.resize``): nearest upsampling is ``jnp.repeat``, bilinear upsampling
(half-pixel centres, no antialiasing, edges clamped) two constant matrix products, and
the downsampling that makes training pairs is a mean over f x f blocks (a reshape).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> from jaxdiff.models import super_res
  >>> net = super_res.SuperResolution(models.create("unet_8x8", out_channels=1), factor=2)
  >>> x, low, s = jnp.zeros((2, 8, 8, 1)), jnp.zeros((2, 4, 4, 1)), jnp.zeros((2,))
  >>> variables = net.init(jax.random.key(0), x, s, low_res=low, aug_level=s)
  >>> net.apply(variables, x, s, low_res=low, aug_level=s).shape
  (2, 8, 8, 1)
"""

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdiff._types import Array
from jaxdiff.models.layers import sinusoidal_embedding
from jaxdiff.models.unet import UNet


def _check_image(x: Array, factor: int, what: str) -> None:
    if jnp.ndim(x) != 4:
        raise ValueError(f"{what} must be (B, H, W, C), rank 4; got shape {jnp.shape(x)}.")
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"the resampling factor must be an integer >= 1; got {factor!r}.")


def upsample_nearest(x: Array, factor: int) -> Array:
    """Nearest-neighbour upsampling by an integer factor (``jnp.repeat``; exports to ONNX).

    Args:
      x: (B, h, w, C) images.
      factor: f >= 1.

    Returns:
      (B, f h, f w, C): every pixel copied to an f x f block.
    """
    _check_image(x, factor, "x")
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def bilinear_matrix(size: int, factor: int) -> np.ndarray:
    """(f size, size) weights of 1-D linear interpolation with half-pixel centres.

    Output pixel j samples the input at (j + 0.5) / f - 0.5, clamped to [0, size - 1]: the
    rule of ``jax.image.resize(..., "bilinear")`` (and PyTorch's align_corners=False) when
    upsampling, where antialiasing plays no part.
    """
    pos = np.clip((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0, size - 1.0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, size - 1)
    w = pos - lo
    m = np.zeros((size * factor, size), np.float32)
    np.add.at(m, (np.arange(size * factor), lo), 1.0 - w)
    np.add.at(m, (np.arange(size * factor), hi), w)
    return m


def upsample_bilinear(x: Array, factor: int) -> Array:
    """Bilinear upsampling by an integer factor, without antialiasing (exports to ONNX).

    Two products with constant interpolation matrices (:func:`bilinear_matrix`), equal to
    ``jax.image.resize(x, (B, f h, f w, C), "bilinear")`` up to float rounding.

    Args:
      x: (B, h, w, C) images.
      factor: f >= 1.

    Returns:
      (B, f h, f w, C).
    """
    _check_image(x, factor, "x")
    rows = jnp.asarray(bilinear_matrix(x.shape[1], factor), x.dtype)
    cols = jnp.asarray(bilinear_matrix(x.shape[2], factor), x.dtype)
    return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols)


# How the low-resolution image reaches the network's resolution (config field sr.upsample).
UPSAMPLERS: dict[str, Callable[[Array, int], Array]] = {
    "nearest": upsample_nearest,
    "bilinear": upsample_bilinear,
}


def upsample(x: Array, factor: int, method: str = "nearest") -> Array:
    """``UPSAMPLERS[method](x, factor)``.

    Raises:
      ValueError: an unknown method (listing the valid ones), a bad factor or rank.
    """
    if method not in UPSAMPLERS:
        raise ValueError(f"Unknown upsampling {method!r}; valid: {sorted(UPSAMPLERS)}.")
    return UPSAMPLERS[method](x, factor)


def downsample_mean(x: Array, factor: int) -> Array:
    """Mean over f x f blocks: (B, H, W, C) -> (B, H / f, W / f, C).

    The low-resolution half of a training pair; ``downsample_mean(upsample_nearest(x, f),
    f) == x``.

    Raises:
      ValueError: H or W not divisible by f, a bad factor or rank.
    """
    _check_image(x, factor, "x")
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not divisible by the factor {factor}.")
    return x.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


class SuperResolution(nn.Module):
    """A U-Net conditioned on an upsampled low-resolution image and its noise level.

    Attributes:
      backbone: the U-Net (created with ``out_channels`` = the image channels C).
      factor: f, the ratio of the output to the low-resolution size.
      upsample: a key of :data:`UPSAMPLERS` ("nearest" or "bilinear").
    """

    backbone: nn.Module
    factor: int = 2
    upsample: str = "nearest"

    def _validate(self, x: Array, low_res: Array | None, aug_level: Array | None) -> None:
        name = getattr(self.backbone, "preset", "backbone")
        if not isinstance(self.backbone, UNet):
            raise ValueError(
                f"super-resolution needs a U-Net backbone; got {type(self.backbone).__name__}."
            )
        if self.upsample not in UPSAMPLERS:
            raise ValueError(f"Unknown upsampling {self.upsample!r}; valid: {sorted(UPSAMPLERS)}.")
        if low_res is None or aug_level is None:
            raise ValueError(
                f"sr({name}) needs low_res= (B, H/{self.factor}, W/{self.factor}, C) and "
                "aug_level= (B,), the low-resolution image and its noise level."
            )
        if x.ndim != 4:
            raise ValueError(f"sr({name}): x must be (B, H, W, C), rank 4; got shape {x.shape}.")
        want = (x.shape[0], x.shape[1] // self.factor, x.shape[2] // self.factor, x.shape[3])
        if tuple(low_res.shape) != want or x.shape[1] % self.factor or x.shape[2] % self.factor:
            raise ValueError(
                f"sr({name}): low_res must be {want} for x of shape {x.shape} (factor "
                f"{self.factor}); got {tuple(low_res.shape)}."
            )
        if tuple(aug_level.shape) != (x.shape[0],):
            raise ValueError(
                f"sr({name}): aug_level must be ({x.shape[0]},); got {tuple(aug_level.shape)}."
            )
        if self.backbone.out_channels != x.shape[-1]:
            raise ValueError(
                f"sr({name}): the backbone must return the {x.shape[-1]} image channels "
                f"(out_channels={x.shape[-1]}); it has out_channels={self.backbone.out_channels}."
            )

    @nn.compact
    def __call__(
        self,
        x: Array,
        noise_level: Array,
        low_res: Array | None = None,
        aug_level: Array | None = None,
        label: Array | None = None,
        context: Array | None = None,
        context_mask: Array | None = None,
        train: bool = False,
    ) -> Array:
        """Runs the backbone on concat([x, upsample(low_res)]) with the level embedding.

        Args:
          x: (B, H, W, C) noisy images.
          noise_level: (B,) the backbone's noise input.
          low_res: (B, H / f, W / f, C) the (augmented) low-resolution images.
          aug_level: (B,) their noise level, as the network's noise input (the adapter
            maps it from time like ``noise_level``).
          label, context, context_mask, train: passed to the backbone.

        Returns:
          (B, H, W, C) float32 (2C with a learned variance).

        Raises:
          ValueError: a missing or mis-shaped low_res / aug_level, a non-U-Net backbone.
        """
        self._validate(x, low_res, aug_level)
        assert low_res is not None and aug_level is not None  # for mypy: checked above
        up = upsample(low_res.astype(x.dtype), self.factor, self.upsample)
        ch = self.backbone.ch
        e = sinusoidal_embedding(aug_level, ch)
        e = nn.Dense(4 * ch, name="aug_dense1")(e)
        e = nn.Dense(4 * ch, name="aug_dense2")(nn.silu(e))
        h = jnp.concatenate([x, up], axis=-1)
        return self.backbone(h, noise_level, label, context, context_mask, train, extra_embedding=e)
