"""Building blocks shared by the U-Net and the DiT (Flax Linen, NHWC).

Noise-level embeddings (sinusoidal, random Fourier features), GroupNorm, attention through
``jax.nn.dot_product_attention`` (self and cross, with a key padding mask), ResNet blocks
with time/class modulation (DDPM and BigGAN styles) and an attention block.

Mixed precision: parameters are float32 (``param_dtype``); convolutions and dense layers
compute in ``dtype``; GroupNorm/LayerNorm statistics and the attention softmax are float32.

References:
  Ho et al. 2020, https://arxiv.org/abs/2006.11239 (DDPM U-Net blocks);
  Song et al. 2021, https://arxiv.org/abs/2011.13456 (BigGAN blocks, Fourier features);
  Tancik et al. 2020, https://arxiv.org/abs/2006.10739 (Fourier features).
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._types import Array
from jaxdiff.models import resample

Dtype = Any
zeros_init = nn.initializers.zeros
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def sinusoidal_embedding(
    noise_level: Array,
    dim: int,
    *,
    max_period: float = 10000.0,
    flip_sin_to_cos: bool = False,
    freq_shift: float = 1.0,
) -> Array:
    """Transformer-style sinusoidal embedding of a scalar per example.

    .. math::
      e_i = \\sin(s\\, \\omega_i),\\ e_{i + d/2} = \\cos(s\\, \\omega_i),\\quad
      \\omega_i = P^{-i / (d/2 - \\text{shift})}

    ``freq_shift=1`` and sin first is DDPM's (and diffusers' ``Timesteps(flip_sin_to_cos=False,
    downscale_freq_shift=1)``); ``freq_shift=0`` with cos first is DiT's.

    Args:
      noise_level: (B,) floats (e.g. the DDPM step index or c_noise).
      dim: embedding width (even).
      max_period: P, the longest period.
      flip_sin_to_cos: put the cosines first.
      freq_shift: the shift in the frequency exponent's denominator.

    Returns:
      (B, dim) float32 embedding.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even; got {dim=}.")
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    args = noise_level.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None]
    sin, cos = jnp.sin(args), jnp.cos(args)
    return jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise level (NCSN++): [sin(2 pi s W), cos(2 pi s W)].

    The frequencies W ~ N(0, scale^2) are stored as a parameter but never trained
    (``stop_gradient``), as in score_sde.

    Attributes:
      dim: output width (even).
      scale: standard deviation of the frequencies.
    """

    dim: int
    scale: float = 16.0

    @nn.compact
    def __call__(self, noise_level: Array) -> Array:
        """(B,) -> (B, dim) float32."""
        init = lambda key, shape: self.scale * jax.random.normal(key, shape)
        freqs = jax.lax.stop_gradient(self.param("W", init, (self.dim // 2,)))
        args = 2 * jnp.pi * noise_level.astype(jnp.float32)[:, None] * freqs[None]
        return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def group_norm(groups: int, eps: float = 1e-6, name: str | None = None) -> nn.GroupNorm:
    """GroupNorm whose statistics and output are float32 (input cast up first)."""
    return nn.GroupNorm(num_groups=groups, epsilon=eps, dtype=jnp.float32, name=name)


def attention(q: Array, k: Array, v: Array, mask: Array | None = None) -> Array:
    """Multi-head scaled dot-product attention via ``jax.nn.dot_product_attention``.

    On GPU in bf16/fp16 without a mask it asks for cuDNN's fused kernel (head dims that
    cuDNN takes: a multiple of 8, at most 128); otherwise XLA's path, whose logits and
    softmax are float32.

    Args:
      q: (B, T, N, H) queries.
      k: (B, S, N, H) keys.
      v: (B, S, N, H) values.
      mask: optional (B, S) bool, True for keys that may be attended to. A row with no
        True entry (an empty context) gives a zero output.

    Returns:
      (B, T, N, H) in q's dtype.
    """
    head_dim = q.shape[-1]
    fused = (
        jax.default_backend() == "gpu"
        and q.dtype in (jnp.bfloat16, jnp.float16)
        and mask is None
        and head_dim % 8 == 0
        and head_dim <= 128
    )
    bias_mask = None if mask is None else mask[:, None, None, :]
    out = jax.nn.dot_product_attention(
        q, k, v, mask=bias_mask, implementation="cudnn" if fused else None
    )
    if mask is not None:  # a fully padded row attends to nothing: zero output, not an average
        out = jnp.where(jnp.any(mask, axis=-1)[:, None, None, None], out, 0)
    return out


class MultiHeadAttention(nn.Module):
    """Attention of x (B, T, C) over itself or over a context (B, S, D) with a padding mask.

    Attributes:
      num_heads: heads; C must divide evenly.
      dtype: compute dtype.
      out_init: initializer of the output projection (zeros for a residual branch).
    """

    num_heads: int = 1
    dtype: Dtype = jnp.float32
    out_init: Any = default_init

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None, mask: Array | None = None):
        """x (B, T, C), context (B, S, D) or None (self-attention), mask (B, S) bool."""
        b, t, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"channels {c} not divisible by num_heads={self.num_heads}.")
        kv = x if context is None else context
        dense = lambda name, init=default_init: nn.Dense(
            c, dtype=self.dtype, kernel_init=init, name=name
        )
        split = lambda a: a.reshape(a.shape[0], a.shape[1], self.num_heads, -1)
        q, k, v = (split(dense(n)(a)) for n, a in (("q", x), ("k", kv), ("v", kv)))
        out = attention(q, k, v, mask).reshape(b, t, c)
        return dense("out", self.out_init)(out)


class AttnBlock(nn.Module):
    """Residual self-attention (and optional cross-attention) over the pixels of (B, H, W, C).

    x + Attn(GroupNorm(x)), then, with a context, x + CrossAttn(GroupNorm(x), context).
    With ``skip_rescale`` each sum is divided by sqrt(2) (NCSN++/DDPM++).

    Attributes:
      num_heads: attention heads.
      groups: GroupNorm groups.
      eps: GroupNorm epsilon.
      skip_rescale: divide residual sums by sqrt(2).
      dtype: compute dtype.
    """

    num_heads: int = 1
    groups: int = 32
    eps: float = 1e-6
    skip_rescale: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, context: Array | None = None, mask: Array | None = None):
        """x (B, H, W, C); context (B, L, D) or None; mask (B, L) bool or None."""
        b, h, w, c = x.shape
        rescale = 1 / math.sqrt(2) if self.skip_rescale else 1.0
        y = group_norm(self.groups, self.eps, "norm")(x).astype(self.dtype).reshape(b, h * w, c)
        mha = lambda name: MultiHeadAttention(self.num_heads, self.dtype, zeros_init, name=name)
        x = (x + mha("attn")(y).reshape(b, h, w, c)) * rescale
        if context is not None:
            y = group_norm(self.groups, self.eps, "norm_cross")(x).astype(self.dtype)
            y = mha("cross")(y.reshape(b, h * w, c), context.astype(self.dtype), mask)
            x = (x + y.reshape(b, h, w, c)) * rescale
        return x


class ResBlock(nn.Module):
    """ResNet block with additive noise/class embedding (DDPM or BigGAN style).

    h = Conv(act(GN(x))) [+ resampling of h and x for BigGAN], h += Dense(act(emb)),
    h = Conv(Dropout(act(GN(h)))), out = (shortcut(x) + h) [/ sqrt(2)].

    Attributes:
      out_ch: output channels.
      groups: GroupNorm groups.
      eps: GroupNorm epsilon.
      dropout: dropout rate before the second convolution.
      resample: None, "up" or "down" (BigGAN blocks resample inside the block).
      fir: resample with the FIR kernel (else nearest-up / average-down).
      fir_kernel: 1-D FIR taps.
      skip_rescale: divide the sum by sqrt(2).
      dtype: compute dtype.
    """

    out_ch: int
    groups: int = 32
    eps: float = 1e-6
    dropout: float = 0.0
    resample: str | None = None
    fir: bool = False
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = False
    dtype: Dtype = jnp.float32

    def _resample(self, x: Array) -> Array:
        if self.resample == "up":
            return resample.upsample(x, self.fir_kernel if self.fir else None)
        if self.resample == "down":
            return resample.downsample(x, self.fir_kernel if self.fir else None)
        return x

    @nn.compact
    def __call__(self, x: Array, emb: Array, train: bool = False) -> Array:
        """x (B, H, W, C), emb (B, E) -> (B, H', W', out_ch); H' = 2H up, H/2 down."""
        conv = lambda name, k=3, init=default_init: nn.Conv(
            self.out_ch, (k, k), padding="SAME", dtype=self.dtype, kernel_init=init, name=name
        )
        h = nn.silu(group_norm(self.groups, self.eps, "norm1")(x)).astype(self.dtype)
        h, x = self._resample(h), self._resample(x)
        h = conv("conv1")(h)
        h = (
            h
            + nn.Dense(self.out_ch, dtype=self.dtype, name="emb_proj")(nn.silu(emb))[:, None, None]
        )
        h = nn.silu(group_norm(self.groups, self.eps, "norm2")(h)).astype(self.dtype)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = conv("conv2", init=zeros_init)(h)
        if x.shape[-1] != self.out_ch or self.resample is not None:
            x = conv("shortcut", k=1)(x)
        out = x.astype(self.dtype) + h
        return out / math.sqrt(2) if self.skip_rescale else out
