"""Conditioning: class labels with a null class, label dropout, and text-like contexts.

- Labels are ints of shape (B,) in [0, num_classes]; index ``num_classes`` is the null
  ("unconditional") class used by classifier-free guidance, so the embedding table has
  ``num_classes + 1`` rows.
- A context is a sequence of token embeddings (B, L, D) with a padding mask (B, L) bool,
  True for real tokens; networks feed it to cross-attention, and masked tokens are never
  attended to.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff.models import conditioning
  >>> y = jnp.array([3, 1, 4, 1])
  >>> y_train = conditioning.drop_labels(jax.random.key(0), y, rate=0.1, num_classes=10)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._types import Array, PRNGKey


class ClassEmbedding(nn.Module):
    """Embedding table of ``num_classes + 1`` rows; row ``num_classes`` is the null class.

    Attributes:
      num_classes: number of real classes (> 0).
      features: embedding width.
      init_std: standard deviation of the initial rows (DiT uses 0.02).
    """

    num_classes: int
    features: int
    init_std: float = 0.02

    @nn.compact
    def __call__(self, label: Array) -> Array:
        """(B,) int -> (B, features) float32."""
        table = nn.Embed(
            self.num_classes + 1,
            self.features,
            embedding_init=nn.initializers.normal(self.init_std),
            name="table",
        )
        return table(label)


def drop_labels(key: PRNGKey, label: Array, rate: float, num_classes: int) -> Array:
    """Replaces each label by the null class ``num_classes`` with probability ``rate``.

    Args:
      key: PRNG key.
      label: (B,) int labels.
      rate: drop probability in [0, 1].
      num_classes: number of real classes (the null index).

    Returns:
      (B,) int labels, some replaced by ``num_classes``.

    Raises:
      ValueError: rate outside [0, 1] or num_classes < 1.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"label dropout rate must be in [0, 1]; got {rate=}.")
    if num_classes < 1:
        raise ValueError(f"label dropout needs num_classes >= 1; got {num_classes=}.")
    drop = jax.random.bernoulli(key, rate, label.shape)
    return jnp.where(drop, num_classes, label)


def check_conditioning(
    preset: str,
    batch: int,
    num_classes: int,
    context_dim: int,
    label: Array | None,
    context: Array | None,
    context_mask: Array | None,
) -> None:
    """Raises a ValueError naming ``preset`` when the conditioning inputs do not fit the net.

    Args:
      preset: the network's preset name, quoted in messages.
      batch: B of the image batch.
      num_classes: the net's classes (0 = unconditional).
      context_dim: the net's context width D (0 = no cross-attention).
      label: (B,) ints or None.
      context: (B, L, D) or None.
      context_mask: (B, L) bool or None.
    """
    if label is not None:
        if num_classes == 0:
            raise ValueError(f"{preset}: got label= but num_classes=0 (unconditional net).")
        if label.shape != (batch,) or not jnp.issubdtype(label.dtype, jnp.integer):
            raise ValueError(
                f"{preset}: label must be ints of shape ({batch},); "
                f"got {label.shape} {label.dtype}."
            )
    if context is None:
        if context_dim:
            raise ValueError(f"{preset}: context_dim={context_dim} needs context= (B, L, D).")
        if context_mask is not None:
            raise ValueError(f"{preset}: got context_mask= without context=.")
        return
    if not context_dim:
        raise ValueError(f"{preset}: got context= but context_dim=0; create with context_dim=D.")
    if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != context_dim:
        raise ValueError(
            f"{preset}: context must be ({batch}, L, {context_dim}); got {context.shape}."
        )
    if context_mask is not None and context_mask.shape != context.shape[:2]:
        raise ValueError(
            f"{preset}: context_mask must be {context.shape[:2]}; got {context_mask.shape}."
        )
