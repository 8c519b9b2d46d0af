"""Diffusion Transformer (DiT, Peebles & Xie 2023), Flax Linen, NHWC.

Patchify (a p x p stride-p conv), add a fixed 2-D sin-cos position embedding, run ``depth``
adaLN-Zero blocks conditioned on c = t_emb + y_emb, and un-patchify with a final adaLN
layer. adaLN modulations and the final projection are zero-initialised, so the initial
output is exactly zero. With ``context_dim > 0`` every block also cross-attends to a
context (B, L, D) with a padding mask (PixArt-alpha style), its output projection
zero-initialised too.

References:
  Peebles & Xie 2023, https://arxiv.org/abs/2212.09748 (Table 1: S/B/L/XL sizes).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> net = models.create("dit_28x28")
  >>> x, s = jnp.zeros((1, 28, 28, 1)), jnp.ones((1,))
  >>> variables = net.init({"params": jax.random.key(0)}, x, s)
  >>> float(abs(net.apply(variables, x, s)).max())
  0.0
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdiff._types import Array
from jaxdiff.models import conditioning
from jaxdiff.models.layers import MultiHeadAttention, sinusoidal_embedding, zeros_init

xavier = nn.initializers.xavier_uniform()


def sincos_pos_embed(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding (MAE/DiT): half the width per axis.

    Returns:
      (grid_h * grid_w, dim) float32, rows in raster order.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim % 4 == 0; got {dim=}.")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    gh, gw = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")

    def axis(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([axis(gw), axis(gh)], axis=1).astype(np.float32)


def modulate(x: Array, shift: Array, scale: Array) -> Array:
    """x (B, T, C) * (1 + scale) + shift, with shift/scale (B, C)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def layer_norm(name: str) -> nn.LayerNorm:
    """Non-affine LayerNorm (eps 1e-6) computed and returned in float32."""
    return nn.LayerNorm(1e-6, dtype=jnp.float32, use_bias=False, use_scale=False, name=name)


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (optionally with cross-attention).

    Attributes:
      hidden: width.
      num_heads: attention heads.
      mlp_ratio: MLP hidden width / width.
      dtype: compute dtype.
    """

    hidden: int
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, c: Array, context: Array | None, mask: Array | None) -> Array:
        """x (B, T, hidden), c (B, hidden); context (B, L, D), mask (B, L) bool or None."""
        mod = nn.Dense(6 * self.hidden, dtype=self.dtype, kernel_init=zeros_init, name="adaLN")
        mods = jnp.split(mod(nn.silu(c)).astype(jnp.float32), 6, axis=-1)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
        y = modulate(layer_norm("norm1")(x), shift_a, scale_a).astype(self.dtype)
        y = MultiHeadAttention(self.num_heads, self.dtype, xavier, name="attn")(y)
        x = x + gate_a[:, None] * y
        if context is not None:
            y = nn.LayerNorm(1e-6, dtype=jnp.float32, name="norm_cross")(x).astype(self.dtype)
            cross = MultiHeadAttention(self.num_heads, self.dtype, zeros_init, name="cross")
            x = x + cross(y, context.astype(self.dtype), mask)
        y = modulate(layer_norm("norm2")(x), shift_m, scale_m).astype(self.dtype)
        dense = lambda n, name: nn.Dense(n, dtype=self.dtype, kernel_init=xavier, name=name)
        y = dense(self.hidden, "fc2")(nn.gelu(dense(int(self.hidden * self.mlp_ratio), "fc1")(y)))
        return x + gate_m[:, None] * y


RematDiTBlock = nn.remat(DiTBlock)


class DiT(nn.Module):
    """Diffusion Transformer with adaLN-Zero conditioning.

    Attributes:
      patch_size: patch side p; H and W must be multiples of p.
      hidden: transformer width.
      depth: number of blocks.
      num_heads: attention heads.
      mlp_ratio: MLP width ratio.
      freq_dim: width of the sinusoidal noise-level features.
      num_classes: classes for label conditioning (0 = unconditional).
      context_dim: width D of a cross-attention context (0 = none).
      learn_sigma: output twice the channels.
      out_channels: output channels before doubling (None = input channels).
      dtype: compute dtype (parameters float32; output float32).
      remat: rematerialise each block in the backward pass.
      preset: name quoted in error messages.
    """

    patch_size: int = 2
    hidden: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    freq_dim: int = 256
    num_classes: int = 0
    context_dim: int = 0
    learn_sigma: bool = False
    out_channels: int | None = None
    dtype: Any = jnp.float32
    remat: bool = False
    preset: str = "dit"

    def _validate(self, x: Array, noise_level: Array) -> None:
        p = self.preset
        if x.ndim != 4:
            raise ValueError(f"{p}: x must be (B, H, W, C), rank 4; got shape {x.shape}.")
        if x.shape[1] % self.patch_size or x.shape[2] % self.patch_size:
            raise ValueError(
                f"{p}: spatial size {x.shape[1:3]} must be divisible by "
                f"patch_size={self.patch_size}."
            )
        if noise_level.shape != (x.shape[0],):
            raise ValueError(f"{p}: noise_level must be ({x.shape[0]},); got {noise_level.shape}.")
        if self.hidden % self.num_heads or self.hidden % 4:
            raise ValueError(
                f"{p}: hidden={self.hidden} must be divisible by num_heads={self.num_heads} and 4."
            )

    def _condition(self, noise_level: Array, label: Array | None) -> Array:
        """(B,) noise level (+ label) -> (B, hidden) float32 conditioning vector c."""
        t = sinusoidal_embedding(noise_level, self.freq_dim, flip_sin_to_cos=True, freq_shift=0.0)
        init = nn.initializers.normal(0.02)
        t = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=init, name="t_dense1")(t)
        t = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=init, name="t_dense2")(nn.silu(t))
        c = t.astype(jnp.float32)
        if self.num_classes:
            if label is None:
                label = jnp.full((noise_level.shape[0],), self.num_classes, jnp.int32)
            c = c + conditioning.ClassEmbedding(self.num_classes, self.hidden, name="label_emb")(
                label
            )
        return c

    @nn.compact
    def __call__(
        self,
        x: Array,
        noise_level: Array,
        label: Array | None = None,
        context: Array | None = None,
        context_mask: Array | None = None,
        train: bool = False,
    ) -> Array:
        """Runs the DiT.

        Args:
          x: (B, H, W, C) noisy images or latents.
          noise_level: (B,) the network's noise input.
          label: optional (B,) ints in [0, num_classes] (num_classes = null class, also used
            when label is None on a class-conditional net).
          context: optional (B, L, context_dim) tokens for cross-attention.
          context_mask: optional (B, L) bool, True for real tokens.
          train: unused (DiT has no dropout); kept for the shared signature.

        Returns:
          (B, H, W, C_out) float32, C_out = (out_channels or C) * (2 if learn_sigma else 1).

        Raises:
          ValueError: naming the preset, for a wrong rank, a spatial size not divisible by
            the patch size, or bad conditioning.
        """
        del train
        self._validate(x, noise_level)
        conditioning.check_conditioning(
            self.preset,
            x.shape[0],
            self.num_classes,
            self.context_dim,
            label,
            context,
            context_mask,
        )
        b, h, w, ch = x.shape
        p, gh, gw = self.patch_size, h // self.patch_size, w // self.patch_size
        embed = nn.Conv(
            self.hidden,
            (p, p),
            strides=(p, p),
            dtype=self.dtype,
            kernel_init=xavier,
            name="patch_embed",
        )
        tokens = embed(x.astype(self.dtype)).reshape(b, gh * gw, self.hidden)
        tokens = tokens + jnp.asarray(sincos_pos_embed(self.hidden, gh, gw), self.dtype)[None]
        c = self._condition(noise_level, label)
        block_cls = RematDiTBlock if self.remat else DiTBlock
        for i in range(self.depth):
            block = block_cls(
                self.hidden, self.num_heads, self.mlp_ratio, self.dtype, name=f"block{i}"
            )
            tokens = block(tokens, c, context, context_mask)
        shift, scale = jnp.split(
            nn.Dense(2 * self.hidden, kernel_init=zeros_init, name="final_adaLN")(nn.silu(c)), 2, -1
        )
        y = modulate(layer_norm("final_norm")(tokens), shift, scale).astype(self.dtype)
        out_ch = (self.out_channels or ch) * (2 if self.learn_sigma else 1)
        y = nn.Dense(p * p * out_ch, dtype=self.dtype, kernel_init=zeros_init, name="final")(y)
        y = y.reshape(b, gh, gw, p, p, out_ch).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h, w, out_ch).astype(jnp.float32)
