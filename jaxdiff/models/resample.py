"""Up- and down-sampling by 2 for NHWC images: plain, FIR (StyleGAN2/NCSN++) and with a conv.

``upsample(x, kernel)`` / ``downsample(x, kernel)`` have no parameters: with ``kernel=None``
they are nearest-neighbour up / 2x2 average-pool down; with FIR taps (e.g. (1, 3, 3, 1)) they
are ``upfirdn2d`` with the separable, normalised kernel (gain 4 for up, 1 for down), so a
constant image stays constant. ``Upsample`` / ``Downsample`` add the DDPM convolution.

References:
  Karras et al. 2020 (StyleGAN2), https://arxiv.org/abs/1912.04958 (upfirdn2d);
  Song et al. 2021, https://arxiv.org/abs/2011.13456 (FIR resampling in NCSN++).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._types import Array


def _fir_filter(x: Array, taps, gain: float, *, up: bool) -> Array:
    """Depthwise FIR filter of x (B, H, W, C), with zero-insertion (up) or stride 2 (down)."""
    k1 = np.asarray(taps, dtype=np.float32)
    k = np.outer(k1, k1)
    k = k / k.sum() * gain
    p = k.shape[0] - 2
    c = x.shape[-1]
    kernel = jnp.asarray(np.tile(k[::-1, ::-1, None, None], (1, 1, 1, c)), dtype=x.dtype)
    if up:  # upfirdn2d(up=2, pad=((p+1)//2 + 1, p//2)); lhs dilation drops one trailing zero
        pad = ((p + 1) // 2 + 1, p // 2 + 1)
        strides, dilation = (1, 1), (2, 2)
    else:  # upfirdn2d(down=2, pad=((p+1)//2, p//2))
        pad = ((p + 1) // 2, p // 2)
        strides, dilation = (2, 2), (1, 1)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=(pad, pad),
        lhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


def upsample(x: Array, fir_kernel=None) -> Array:
    """Doubles H and W of x (B, H, W, C): nearest neighbour, or FIR with ``fir_kernel`` taps."""
    if fir_kernel is None:
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return _fir_filter(x, fir_kernel, 4.0, up=True)


def downsample(x: Array, fir_kernel=None) -> Array:
    """Halves H and W of x (B, H, W, C): 2x2 average, or FIR with ``fir_kernel`` taps."""
    if fir_kernel is None:
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return _fir_filter(x, fir_kernel, 1.0, up=False)


class Upsample(nn.Module):
    """2x upsampling followed by a 3x3 convolution (DDPM / diffusers ``Upsample2D``).

    Attributes:
      fir_kernel: FIR taps, or None for nearest neighbour.
      dtype: compute dtype.
    """

    fir_kernel: tuple[int, ...] | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, H, W, C) -> (B, 2H, 2W, C)."""
        x = upsample(x, self.fir_kernel)
        return nn.Conv(x.shape[-1], (3, 3), padding="SAME", dtype=self.dtype, name="conv")(x)


class Downsample(nn.Module):
    """2x downsampling: a stride-2 3x3 convolution (DDPM), or FIR then 3x3 convolution.

    Attributes:
      fir_kernel: FIR taps (then filter + stride-1 conv), or None (stride-2 conv).
      padding: for the stride-2 conv, "SAME" (TF/DDPM: pad bottom/right only; diffusers'
        ``downsample_padding=0``) or "SYMMETRIC" (pad 1 all round; ``downsample_padding=1``).
      dtype: compute dtype.
    """

    fir_kernel: tuple[int, ...] | None = None
    padding: str = "SAME"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, H, W, C) -> (B, H/2, W/2, C)."""
        c = x.shape[-1]
        if self.fir_kernel is not None:
            x = downsample(x, self.fir_kernel)
            return nn.Conv(c, (3, 3), padding="SAME", dtype=self.dtype, name="conv")(x)
        pad = "SAME" if self.padding == "SAME" else ((1, 1), (1, 1))
        return nn.Conv(c, (3, 3), strides=(2, 2), padding=pad, dtype=self.dtype, name="conv")(x)
