"""The same network on both sides: a PyTorch ``diffusers`` model and its jaxdiff twin.

U-Nets are literally the same network: a randomly initialised diffusers ``UNet2DModel``
(seeded) whose weights are imported with :func:`jaxdiff.models.convert.from_diffusers`,
so parameter counts (checked) and outputs agree. DiTs are not weight-compatible: diffusers'
``DiTTransformer2DModel`` embeds t and y in every block (749.8M parameters at XL/2 vs the
paper's 675M), so the DiT benchmarks compare per FLOP.

Configs:
- ``ddpm_cifar10``: google/ddpm-cifar10-32's config (Ho et al. 2020, 35.7M parameters).
- ``mnist_small``: a CPU-sized MNIST U-Net, 28x28x1 (28 -> 14 -> 7), channels (32, 64, 64),
  2 res blocks per level, attention at 7x7 and in the middle (jaxdiff's ``unet_28x28``
  preset's structure).
- ``tiny``: the smallest config, for tests (16x16x1, channels (8, 16)).
"""

import functools

import jax
import jax.numpy as jnp

from jaxdiff import models
from jaxdiff.models import convert

UNET_CONFIGS = {"ddpm_cifar10": dict(convert.DDPM_CIFAR10_CONFIG, dropout=0.1)}  # Ho et al.
UNET_CONFIGS["mnist_small"] = dict(
    UNET_CONFIGS["ddpm_cifar10"],
    sample_size=28,
    in_channels=1,
    out_channels=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
)
UNET_CONFIGS["tiny"] = dict(
    UNET_CONFIGS["mnist_small"],
    sample_size=16,
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=4,
)

# jaxdiff preset -> diffusers DiTTransformer2DModel fields (DiT paper Table 1 sizes).
DIT_CONFIGS = {
    "dit_b_2": dict(num_attention_heads=12, attention_head_dim=64, num_layers=12),
    "dit_xl_2": dict(num_attention_heads=16, attention_head_dim=72, num_layers=28),
    "dit_s_2": dict(num_attention_heads=6, attention_head_dim=64, num_layers=12),
}
DIT_INPUT = (32, 32, 4)  # 256x256 images as SD-VAE latents


def _check_name(name: str, registry: dict, what: str) -> None:
    if name not in registry:
        raise ValueError(f"Unknown {what} {name!r}; valid names: {sorted(registry)}.")


def count_torch(model) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())


def count_jax(variables) -> int:
    """Number of parameters in a Flax variables tree."""
    return sum(x.size for x in jax.tree.leaves(variables))


def unet_pair(name: str, seed: int = 0, dtype=jnp.float32):
    """A diffusers UNet2DModel and its imported jaxdiff twin (same weights).

    Args:
      name: a key of ``UNET_CONFIGS``.
      seed: torch seed of the random initialisation.
      dtype: jaxdiff compute dtype (parameters stay float32).

    Returns:
      ``(torch_model, net, variables, input_shape)``; input_shape is (H, W, C).

    Raises:
      ValueError: unknown name, or the two sides' parameter counts differ.
    """
    import diffusers
    import torch

    _check_name(name, UNET_CONFIGS, "U-Net config")
    torch.manual_seed(seed)
    model = diffusers.UNet2DModel(**UNET_CONFIGS[name])
    net, variables = convert.from_diffusers(model.state_dict(), dict(model.config), dtype=dtype)
    if count_jax(variables) != count_torch(model):
        raise ValueError(
            f"{name}: parameter counts differ: jaxdiff {count_jax(variables)}, "
            f"diffusers {count_torch(model)}."
        )
    cfg = UNET_CONFIGS[name]
    shape = (cfg["sample_size"], cfg["sample_size"], cfg["in_channels"])
    return model, net, variables, shape


def dit_pair(name: str, seed: int = 0, dtype=jnp.float32):
    """A diffusers DiTTransformer2DModel and the jaxdiff DiT of the same size (not same weights).

    Both take 32x32x4 latents, 1000 classes and learn sigma (8 output channels).

    Args:
      name: a key of ``DIT_CONFIGS`` (a jaxdiff preset name).
      seed: seed of both random initialisations.
      dtype: jaxdiff compute dtype.

    Returns:
      ``(torch_model, net, variables, input_shape)``.
    """
    import diffusers
    import torch

    _check_name(name, DIT_CONFIGS, "DiT config")
    torch.manual_seed(seed)
    h, w, c = DIT_INPUT
    model = diffusers.DiTTransformer2DModel(
        in_channels=c, out_channels=2 * c, sample_size=h, patch_size=2, **DIT_CONFIGS[name]
    )
    net = models.create(name, dtype=dtype)
    x, s = jnp.zeros((1, h, w, c)), jnp.zeros((1,))
    init = jax.jit(functools.partial(net.init, label=jnp.zeros((1,), jnp.int32)))
    variables = init({"params": jax.random.key(seed)}, x, s)
    return model, net, variables, DIT_INPUT
