"""A denoiser conditioned on a prompt (cross-attention) and/or a semantic map (concatenation).

``ConditionedDenoiser(backbone, text=TextEncoder(...), map_features=F)`` is called as
``F(x, noise_level, tokens=, semantic_map=, train=)``:

- ``tokens`` (B, L) are encoded by the text encoder (trained with the backbone: both sit in
  one parameter tree) and given to the backbone as ``context=`` with
  ``context_mask = tokens != PAD``;
- ``semantic_map`` (B, H_map, W_map, 1) (e.g. a 28x28 mask for 7x7 latents) is brought to
  x's size by stride-2 convolutions (H_map / H of them, a power of two) into ``map_features``
  channels and concatenated to x; an all-zero map is the null map.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> from jaxdiff.text.encoder import TextEncoder
  >>> from jaxdiff.text.network import ConditionedDenoiser
  >>> unet = models.create("unet_8x8", context_dim=16, out_channels=1, ch=8, num_groups=4)
  >>> net = ConditionedDenoiser(unet, TextEncoder(max_len=8, width=16, depth=1, num_heads=2))
  >>> x, tokens = jnp.zeros((2, 8, 8, 1)), jnp.ones((2, 8), jnp.int32)
  >>> variables = net.init(jax.random.key(0), x, jnp.zeros(2), tokens=tokens)
  >>> net.apply(variables, x, jnp.zeros(2), tokens=tokens).shape
  (2, 8, 8, 1)
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff._types import Array
from jaxdiff.text import tokenizer
from jaxdiff.text.encoder import TextEncoder


class MapEncoder(nn.Module):
    """(B, H_map, W_map, 1) -> (B, H_map / 2^k, W_map / 2^k, features), k stride-2 convs."""

    features: int = 16
    steps: int = 2

    @nn.compact
    def __call__(self, semantic_map: Array) -> Array:
        h = nn.Conv(self.features, (3, 3), name="conv_in")(semantic_map.astype(jnp.float32))
        for i in range(self.steps):
            h = nn.Conv(self.features, (3, 3), strides=(2, 2), name=f"down{i}")(nn.silu(h))
        return h


class ConditionedDenoiser(nn.Module):
    """A backbone (U-Net or DiT with ``context_dim``) conditioned on prompts and/or maps.

    Attributes:
      backbone: the denoiser network (its ``out_channels`` set to x's channels when a map
        is concatenated).
      text: the text encoder, or None (no prompt).
      map_features: channels of the encoded semantic map (0: no map).
    """

    backbone: Any
    text: TextEncoder | None = None
    map_features: int = 0

    def _map_channels(self, x: Array, semantic_map: Array | None) -> Array:
        if not self.map_features:
            if semantic_map is not None:
                raise ValueError("got semantic_map= but this model has no map input.")
            return x
        if semantic_map is None or semantic_map.ndim != 4 or semantic_map.shape[0] != x.shape[0]:
            got = None if semantic_map is None else semantic_map.shape
            raise ValueError(f"this model needs semantic_map= ({x.shape[0]}, H, W, 1); got {got}.")
        ratio = semantic_map.shape[1] // x.shape[1]
        steps = ratio.bit_length() - 1
        if semantic_map.shape[1] != x.shape[1] * 2**steps:
            raise ValueError(
                f"semantic_map height {semantic_map.shape[1]} must be x's height "
                f"{x.shape[1]} times a power of two."
            )
        encoded = MapEncoder(self.map_features, steps, name="map_encoder")(semantic_map)
        return jnp.concatenate([x, encoded.astype(x.dtype)], axis=-1)

    @nn.compact
    def __call__(
        self,
        x: Array,
        noise_level: Array,
        label: Array | None = None,
        tokens: Array | None = None,
        semantic_map: Array | None = None,
        train: bool = False,
    ) -> Array:
        """x (B, h, w, c), noise_level (B,), tokens (B, L) ints, semantic_map (B, H, W, 1)
        -> (B, h, w, c_out) float32 (the backbone's output)."""
        context = mask = None
        if self.text is not None:
            if tokens is None:
                raise ValueError("this model needs tokens= (B, L): encode a prompt ('' is null).")
            context, mask = self.text(tokens), tokens != tokenizer.PAD
        elif tokens is not None:
            raise ValueError("got tokens= but this model has no text encoder.")
        h = self._map_channels(x, semantic_map)
        return self.backbone(h, noise_level, label, context=context, context_mask=mask, train=train)
