"""Space-time U-Net for video diffusion (Ho et al. 2022, "Video Diffusion Models"), NTHWC.

Frames are an extra axis of the input, x (B, T, H, W, C). The network is the image
:class:`~jaxdiff.models.unet.UNet` with its frames folded into the batch axis, so every
convolution and every spatial attention block works on one frame at a time (a "space-only"
3D convolution, kernel 1x3x3), and after each ResNet block at the resolutions in
``temporal_resolutions`` a temporal attention block lets each pixel attend over the frames
at the same place, with a learned relative-position bias per head (frame offsets clipped
to +-(``max_frames`` - 1)). This is the factorised space-time attention of the paper.

A clip of one frame has nothing to attend to in time: the temporal blocks are then the
identity, so a one-frame clip goes through exactly the image U-Net's path (same parameter
names; the image network's parameters are a subset). Jointly training on images and
videos, as the paper does, can use this.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> net = models.create("video_unet_32", ch=8, ch_mult=(1,), num_groups=4)
  >>> x, s = jnp.zeros((2, 4, 32, 32, 1)), jnp.ones((2,))
  >>> variables = net.init({"params": jax.random.key(0)}, x, s)
  >>> net.apply(variables, x, s).shape
  (2, 4, 32, 32, 1)
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._types import Array
from jaxdiff.models import conditioning
from jaxdiff.models.layers import default_init, group_norm, zeros_init
from jaxdiff.models.unet import Cond, UNet

TEMPORAL_SUFFIX = "_time"  # parameter name suffix of the temporal attention blocks


def relative_positions(frames: int, max_frames: int) -> Array:
    """(T, T) int32 indices j - i + max_frames - 1 into a bias table, offsets clipped.

    Args:
      frames: T.
      max_frames: offsets are clipped to [-(max_frames - 1), max_frames - 1].

    Returns:
      (T, T) indices in [0, 2 max_frames - 2].
    """
    offsets = jnp.arange(frames)[None, :] - jnp.arange(frames)[:, None]
    offsets = jnp.clip(offsets, -(max_frames - 1), max_frames - 1)
    return offsets + max_frames - 1


class TemporalAttention(nn.Module):
    """Residual attention over the frame axis of (B T, H, W, C) features, per pixel.

    x + Out(Attn(GroupNorm(x))) where each of the B H W sequences holds one pixel's T
    feature vectors; logits get a learned bias per head and relative frame offset.

    Attributes:
      frames: T, the frames folded into the batch axis.
      num_heads: attention heads (C must divide evenly).
      max_frames: offsets beyond +-(max_frames - 1) share the bias of the largest.
      groups: GroupNorm groups.
      eps: GroupNorm epsilon.
      skip_rescale: divide the residual sum by sqrt(2).
      dtype: compute dtype.
    """

    frames: int
    num_heads: int = 1
    max_frames: int = 16
    groups: int = 32
    eps: float = 1e-6
    skip_rescale: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """x (B T, H, W, C) -> same shape."""
        bt, h, w, c = x.shape
        t, heads = self.frames, self.num_heads
        if c % heads:
            raise ValueError(f"temporal attention: {c} channels not divisible by {heads} heads.")
        y = group_norm(self.groups, self.eps, "norm")(x).astype(self.dtype)
        seq = y.reshape(bt // t, t, h * w, c).transpose(0, 2, 1, 3).reshape(-1, t, c)
        dense = lambda name, init=default_init: nn.Dense(
            c, dtype=self.dtype, kernel_init=init, name=name
        )
        split = lambda a: a.reshape(a.shape[0], t, heads, c // heads)
        q, k, v = (split(dense(n)(seq)) for n in ("q", "k", "v"))
        table = self.param("rel_bias", zeros_init, (2 * self.max_frames - 1, heads))
        bias = table[relative_positions(t, self.max_frames)].transpose(2, 0, 1)  # (N, T, T)
        out = jax.nn.dot_product_attention(q, k, v, bias=bias[None].astype(q.dtype))
        out = dense("out", zeros_init)(out.reshape(-1, t, c))
        out = out.reshape(bt // t, h * w, t, c).transpose(0, 2, 1, 3).reshape(bt, h, w, c)
        total = x + out.astype(x.dtype)
        return total / math.sqrt(2) if self.skip_rescale else total


class VideoUNet(UNet):
    """The U-Net on clips (B, T, H, W, C): spatial layers per frame, temporal attention.

    Attributes (besides :class:`~jaxdiff.models.unet.UNet`'s):
      temporal_resolutions: spatial sizes (H) whose ResNet blocks are each followed by a
        temporal attention block; None = every resolution.
      max_frames: the longest clip the relative-position bias tells apart.
    """

    temporal_resolutions: tuple[int, ...] | None = None
    max_frames: int = 16

    def _res(self, h: Array, ch: int, name: str, cond: Cond, resample: str | None = None) -> Array:
        h = super()._res(h, ch, name, cond, resample)
        wanted = self.temporal_resolutions is None or h.shape[1] in self.temporal_resolutions
        if cond.frames == 1 or not wanted:  # one frame: the image U-Net's path
            return h
        heads = h.shape[-1] // self.head_dim if self.head_dim else 1
        block = TemporalAttention(
            cond.frames,
            heads,
            self.max_frames,
            self.num_groups,
            self.norm_eps,
            self.skip_rescale,
            self.dtype,
            name=name + TEMPORAL_SUFFIX,
        )
        return block(h)

    def _validate_video(self, x: Array, noise_level: Array) -> None:
        if x.ndim != 5:
            raise ValueError(
                f"{self.preset}: x must be a clip (B, T, H, W, C), rank 5; got shape {x.shape}."
            )
        if x.shape[1] > self.max_frames:
            raise ValueError(
                f"{self.preset}: {x.shape[1]} frames exceed max_frames={self.max_frames}."
            )
        self._validate(x[:, 0], noise_level)

    @nn.compact
    def __call__(
        self,
        x: Array,
        noise_level: Array,
        label: Array | None = None,
        context: Array | None = None,
        context_mask: Array | None = None,
        train: bool = False,
        extra_embedding: Array | None = None,
    ) -> Array:
        """Runs the space-time U-Net.

        Args:
          x: (B, T, H, W, C) noisy clips.
          noise_level, label, context, context_mask, train, extra_embedding: as
            :meth:`UNet.__call__`, one per clip.

        Returns:
          (B, T, H, W, C_out) float32.

        Raises:
          ValueError: naming the preset, for a rank other than 5, more than
            ``max_frames`` frames, or anything the image U-Net refuses.
        """
        self._validate_video(x, noise_level)
        b, t = x.shape[:2]
        conditioning.check_conditioning(
            self.preset, b, self.num_classes, self.context_dim, label, context, context_mask
        )
        per_frame = lambda a: None if a is None else jnp.repeat(a, t, axis=0)
        emb = jnp.repeat(self._embed(noise_level, label, extra_embedding), t, axis=0)
        cond = Cond(emb, train, per_frame(context), per_frame(context_mask), t)
        out = self._body(x.reshape(b * t, *x.shape[2:]), cond)
        return out.reshape(b, t, *out.shape[1:])
