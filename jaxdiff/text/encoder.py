"""A small transformer text encoder, trained jointly with the diffusion model.

Token embedding + learned absolute positions, ``depth`` pre-LayerNorm blocks (self-attention
over the real tokens only, then an MLP), a final LayerNorm; the outputs at padding
positions are set to zero. Padding is masked as keys and positions are absolute, so a
prompt's embeddings do not change when more padding is appended (tests check it), and the
U-Net's cross-attention (``context_mask``) never looks at padding either.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff.text.encoder import TextEncoder
  >>> enc = TextEncoder(max_len=16, width=32, depth=1, num_heads=2)
  >>> tokens = jnp.zeros((2, 16), jnp.int32).at[:, :3].set(5)
  >>> variables = enc.init(jax.random.key(0), tokens)
  >>> enc.apply(variables, tokens).shape
  (2, 16, 32)
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff._types import Array
from jaxdiff.models.layers import MultiHeadAttention
from jaxdiff.text import tokenizer


class TextEncoder(nn.Module):
    """(B, L) token ids -> (B, L, width) embeddings, zero at padding (id 0).

    Attributes:
      max_len: the longest token sequence (positions embedded).
      width: D, the embedding width (the U-Net's ``context_dim``).
      depth: transformer blocks.
      num_heads: attention heads (divides ``width``).
      vocab_size: ids (the byte-level tokenizer's 259).
    """

    max_len: int = 64
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    vocab_size: int = tokenizer.VOCAB_SIZE

    @nn.compact
    def __call__(self, tokens: Array) -> Array:
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"tokens must be (B, L) ints; got {tokens.shape} {tokens.dtype}.")
        if tokens.shape[1] > self.max_len:
            raise ValueError(
                f"tokens have length {tokens.shape[1]}; this encoder takes at most "
                f"max_len={self.max_len}."
            )
        mask = tokens != tokenizer.PAD
        embed = nn.Embed(self.vocab_size, self.width, name="token_embedding")
        positions = self.param(
            "position_embedding", nn.initializers.normal(0.02), (self.max_len, self.width)
        )
        h = embed(tokens) + positions[None, : tokens.shape[1]]
        for i in range(self.depth):
            y = nn.LayerNorm(name=f"block{i}_norm1")(h)
            h = h + MultiHeadAttention(self.num_heads, name=f"block{i}_attn")(y, None, mask)
            y = nn.LayerNorm(name=f"block{i}_norm2")(h)
            y = nn.Dense(4 * self.width, name=f"block{i}_mlp1")(y)
            h = h + nn.Dense(self.width, name=f"block{i}_mlp2")(nn.gelu(y))
        h = nn.LayerNorm(name="norm_out")(h)
        return jnp.where(mask[..., None], h, 0.0)
