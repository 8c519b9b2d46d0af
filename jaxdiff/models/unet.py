"""U-Net for diffusion (DDPM, DDPM++ / NCSN++ style), Flax Linen, NHWC.

The network is ``F(x, noise_level, label, context)``: it embeds the noise level (sinusoidal or
random Fourier features, then a 2-layer MLP), adds a class embedding, and runs a
down path of ResNet blocks (self-attention at chosen resolutions), a middle block
(ResNet, attention, ResNet) and an up path that concatenates the skips. With a context
(B, L, D) every attention block also cross-attends to it, honouring the padding mask.
The residual branches' last layers and the output conv are zero-initialised.

Two styles:
- DDPM (Ho et al. 2020): separate stride-2 conv down / nearest+conv up sampling.
- BigGAN (``biggan=True``, Song et al. 2021's DDPM++/NCSN++): resampling inside residual
  blocks (nearest/average or FIR), residual sums divided by sqrt(2) (``skip_rescale``).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> net = models.create("unet_8x8")
  >>> x, s = jnp.zeros((2, 8, 8, 1)), jnp.ones((2,))
  >>> variables = net.init({"params": jax.random.key(0)}, x, s)
  >>> net.apply(variables, x, s).shape
  (2, 8, 8, 1)
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff._types import Array
from jaxdiff.models import conditioning
from jaxdiff.models.layers import (
    AttnBlock,
    FourierEmbedding,
    ResBlock,
    group_norm,
    sinusoidal_embedding,
    zeros_init,
)
from jaxdiff.models.resample import Downsample, Upsample

EMBEDDINGS = ("positional", "fourier")
# Recomputes the block's activations in the backward pass; `train` (arg 3 after self) static.
RematResBlock = nn.remat(ResBlock, static_argnums=(3,))


class Cond(NamedTuple):
    """What every block of one call sees besides its input.

    Attributes:
      emb: (B, 4 ch) float32 noise-level (+ label) embedding.
      train: dropout on.
      context: optional (B, L, D) cross-attention tokens.
      mask: optional (B, L) bool padding mask of the context.
      frames: frames folded into the batch axis (1 for images; see ``models.video``).
    """

    emb: Array
    train: bool
    context: Array | None
    mask: Array | None
    frames: int = 1


class UNet(nn.Module):
    """Diffusion U-Net.

    Attributes:
      ch: base channels (multiple of ``num_groups``).
      ch_mult: channel multiplier per level; len(ch_mult) - 1 downsamplings.
      num_res_blocks: ResNet blocks per level on the way down (one more on the way up).
      attn_resolutions: spatial sizes (H) at which attention blocks are inserted.
      dropout: dropout rate inside ResNet blocks (active with ``train=True``).
      num_groups: GroupNorm groups.
      norm_eps: GroupNorm epsilon.
      head_dim: attention head width; None = one head over all channels (DDPM).
      biggan: BigGAN-style resampling residual blocks (DDPM++/NCSN++).
      fir: FIR resampling (with ``biggan``; also in the DDPM-style resamplers).
      fir_kernel: FIR taps.
      skip_rescale: divide residual sums by sqrt(2).
      embedding: "positional" (sinusoidal) or "fourier" (random Fourier features).
      fourier_scale: std of the Fourier frequencies.
      flip_sin_to_cos, freq_shift: sinusoidal-embedding convention (see ``layers``).
      down_padding: "SAME" or "SYMMETRIC" padding of the stride-2 downsampling conv.
      num_classes: classes for label conditioning (0 = unconditional).
      context_dim: width D of a cross-attention context (0 = none).
      learn_sigma: output twice the channels (prediction and variance interpolation).
      out_channels: output channels before doubling (None = input channels).
      dtype: compute dtype (parameters stay float32; output is float32).
      remat: rematerialise each ResNet block in the backward pass.
      preset: name quoted in error messages.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    num_groups: int = 32
    norm_eps: float = 1e-6
    head_dim: int | None = None
    biggan: bool = False
    fir: bool = False
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    skip_rescale: bool = False
    embedding: str = "positional"
    fourier_scale: float = 16.0
    flip_sin_to_cos: bool = False
    freq_shift: float = 1.0
    down_padding: str = "SAME"
    num_classes: int = 0
    context_dim: int = 0
    learn_sigma: bool = False
    out_channels: int | None = None
    dtype: Any = jnp.float32
    remat: bool = False
    preset: str = "unet"

    def _validate(self, x: Array, noise_level: Array) -> None:
        p = self.preset
        if x.ndim != 4:
            raise ValueError(f"{p}: x must be (B, H, W, C), rank 4; got shape {x.shape}.")
        factor = 2 ** (len(self.ch_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"{p}: spatial size {x.shape[1:3]} must be divisible by {factor} "
                f"(2 ** (len(ch_mult) - 1) with ch_mult={self.ch_mult})."
            )
        if noise_level.shape != (x.shape[0],):
            raise ValueError(f"{p}: noise_level must be ({x.shape[0]},); got {noise_level.shape}.")
        for c in {self.ch * m for m in self.ch_mult} | {self.ch}:
            if c % self.num_groups:
                raise ValueError(
                    f"{p}: GroupNorm can't split {c} channels into num_groups={self.num_groups}."
                )
            if self.head_dim and c % self.head_dim:
                raise ValueError(f"{p}: {c} channels not divisible by head_dim={self.head_dim}.")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"{p}: unknown embedding {self.embedding!r}; valid: {EMBEDDINGS}.")
        if self.down_padding not in ("SAME", "SYMMETRIC"):
            raise ValueError(
                f"{p}: down_padding must be SAME or SYMMETRIC; got {self.down_padding}."
            )

    def _embed(self, noise_level: Array, label: Array | None, extra: Array | None) -> Array:
        """(B,) noise level (+ label, + extra (B, 4 ch)) -> (B, 4 ch) float32 embedding."""
        if self.embedding == "fourier":
            e = FourierEmbedding(2 * self.ch, self.fourier_scale, name="fourier")(noise_level)
        else:
            e = sinusoidal_embedding(
                noise_level,
                self.ch,
                flip_sin_to_cos=self.flip_sin_to_cos,
                freq_shift=self.freq_shift,
            )
        dim = 4 * self.ch
        e = nn.Dense(dim, dtype=self.dtype, name="emb_dense1")(e)
        e = nn.Dense(dim, dtype=self.dtype, name="emb_dense2")(nn.silu(e))
        e = e.astype(jnp.float32)
        if self.num_classes:
            if label is None:  # unconditional call of a conditional net: the null class
                label = jnp.full((noise_level.shape[0],), self.num_classes, jnp.int32)
            e = e + conditioning.ClassEmbedding(self.num_classes, dim, 1.0, name="label_emb")(label)
        if extra is not None:
            if extra.shape != e.shape:
                raise ValueError(
                    f"{self.preset}: extra_embedding must be {e.shape}; got {extra.shape}."
                )
            e = e + extra.astype(jnp.float32)
        return e

    def _block_kwargs(self) -> dict:
        return dict(
            groups=self.num_groups,
            eps=self.norm_eps,
            dropout=self.dropout,
            fir=self.fir,
            fir_kernel=self.fir_kernel,
            skip_rescale=self.skip_rescale,
            dtype=self.dtype,
        )

    def _attn(self, h: Array, name: str, context, mask) -> Array:
        heads = h.shape[-1] // self.head_dim if self.head_dim else 1
        block = AttnBlock(
            heads, self.num_groups, self.norm_eps, self.skip_rescale, self.dtype, name=name
        )
        return block(h, context, mask)

    def _res(self, h: Array, ch: int, name: str, cond: Cond, resample: str | None = None) -> Array:
        block_cls = RematResBlock if self.remat else ResBlock
        block = block_cls(ch, resample=resample, name=name, **self._block_kwargs())
        return block(h, cond.emb, cond.train)

    def _resample(self, h: Array, name: str, cond, direction: str) -> Array:
        """2x down- or up-sampling: a BigGAN block or a (FIR +) conv resampler."""
        if self.biggan:
            return self._res(h, h.shape[-1], name, cond, direction)
        fir_kernel = self.fir_kernel if self.fir else None
        if direction == "down":
            return Downsample(fir_kernel, self.down_padding, self.dtype, name=name)(h)
        return Upsample(fir_kernel, self.dtype, name=name)(h)

    def _down(self, h: Array, cond) -> tuple[Array, list[Array]]:
        """Down path; returns the lowest-resolution features and the skips."""
        context, mask = cond.context, cond.mask
        hs = [h]
        for i, mult in enumerate(self.ch_mult):
            for j in range(self.num_res_blocks):
                h = self._res(h, self.ch * mult, f"down{i}_res{j}", cond)
                if h.shape[1] in self.attn_resolutions:
                    h = self._attn(h, f"down{i}_attn{j}", context, mask)
                hs.append(h)
            if i != len(self.ch_mult) - 1:
                h = self._resample(h, f"down{i}_sample", cond, "down")
                hs.append(h)
        return h, hs

    def _up(self, h: Array, hs: list[Array], cond) -> Array:
        """Up path, concatenating the skips (consumed from the end of ``hs``)."""
        context, mask = cond.context, cond.mask
        for i in reversed(range(len(self.ch_mult))):
            for j in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop()], -1)
                h = self._res(h, self.ch * self.ch_mult[i], f"up{i}_res{j}", cond)
                if h.shape[1] in self.attn_resolutions:
                    h = self._attn(h, f"up{i}_attn{j}", context, mask)
            if i != 0:
                h = self._resample(h, f"up{i}_sample", cond, "up")
        return h

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
        """Runs the U-Net.

        Args:
          x: (B, H, W, C) noisy images.
          noise_level: (B,) the network's noise input (e.g. DDPM step index, c_noise).
          label: optional (B,) ints in [0, num_classes]; num_classes is the null class
            (also used when label is None on a class-conditional net).
          context: optional (B, L, context_dim) token embeddings for cross-attention.
          context_mask: optional (B, L) bool, True for real tokens.
          train: enables dropout (needs ``rngs={"dropout": key}``).
          extra_embedding: optional (B, 4 ch) added to the noise-level (+ label)
            embedding, e.g. a super-resolution model's augmentation level
            (``models.super_res``); None adds nothing (and no parameters).

        Returns:
          (B, H, W, C_out) float32, C_out = (out_channels or C) * (2 if learn_sigma else 1).

        Raises:
          ValueError: naming the preset, for a wrong rank, a spatial size not divisible by
            the downsampling factor, channels GroupNorm can't split, bad conditioning.
        """
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
        emb = self._embed(noise_level, label, extra_embedding)
        return self._body(x, Cond(emb, train, context, context_mask))

    def _body(self, x: Array, cond: Cond) -> Array:
        """conv_in, down path, middle, up path, output conv: (N, H, W, C) -> (N, H, W, C_out)."""
        context, context_mask = cond.context, cond.mask
        h = nn.Conv(self.ch, (3, 3), padding="SAME", dtype=self.dtype, name="conv_in")(
            x.astype(self.dtype)
        )
        h, hs = self._down(h, cond)
        h = self._res(h, h.shape[-1], "mid_res0", cond)
        h = self._attn(h, "mid_attn", context, context_mask)
        h = self._res(h, h.shape[-1], "mid_res1", cond)
        h = self._up(h, hs, cond)
        h = nn.silu(group_norm(self.num_groups, self.norm_eps, "norm_out")(h)).astype(self.dtype)
        out_ch = (self.out_channels or x.shape[-1]) * (2 if self.learn_sigma else 1)
        out = nn.Conv(
            out_ch,
            (3, 3),
            padding="SAME",
            dtype=self.dtype,
            kernel_init=zeros_init,
            name="conv_out",
        )(h)
        return out.astype(jnp.float32)
