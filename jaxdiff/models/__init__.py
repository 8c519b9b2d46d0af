"""jaxdiff.models: U-Net and DiT backbones, conditioning, EDM preconditioning, presets.

Every network is ``F(x, noise_level, label=None, context=None, context_mask=None,
train=False)`` with x (B, H, W, C) (a video network's: (B, T, H, W, C)) and noise_level (B,)
its own noise input (the adapter mapping a process time t to it lives outside
``models/``). Presets are data: a name maps to a class and its constructor fields,
overridable by keyword.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> net = models.create("dit_s_2", num_classes=10)
  >>> shapes = jax.eval_shape(
  ...     net.init, {"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 4)), jnp.ones((1,))
  ... )
"""

import dataclasses

import flax.linen as nn

from jaxdiff.models import conditioning as conditioning
from jaxdiff.models import convert as convert
from jaxdiff.models import super_res as super_res
from jaxdiff.models.dit import DiT as DiT
from jaxdiff.models.precondition import Precondition as Precondition
from jaxdiff.models.unet import UNet as UNet
from jaxdiff.models.video import VideoUNet as VideoUNet

_DDPMPP = dict(
    ch=128,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=4,
    attn_resolutions=(16,),
    dropout=0.1,
    biggan=True,
    skip_rescale=True,
)
# DiT Table 1 (Peebles & Xie 2023): depth, hidden width, heads.
_DIT_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}

PRESETS: dict[str, tuple[type[nn.Module], dict]] = {
    # Ho et al. 2020, CIFAR-10: 35.7M parameters.
    "ddpm_cifar10": (
        UNet,
        dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1),
    ),
    # Song et al. 2021 (score_sde configs/vp/cifar10_ddpmpp_continuous.py).
    "ddpmpp": (UNet, _DDPMPP),
    # Song et al. 2021 (configs/ve/cifar10_ncsnpp_continuous.py), without progressive input.
    "ncsnpp": (UNet, dict(_DDPMPP, fir=True, embedding="fourier", fourier_scale=16.0)),
    # 8x8x1 digits (scikit-learn): tiny, trains in minutes on a CPU.
    "unet_8x8": (
        UNet,
        dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=8),
    ),
    # MNIST / Fashion-MNIST 28x28x1 (28 -> 14 -> 7).
    "unet_28x28": (
        UNet,
        dict(
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=2,
            attn_resolutions=(7,),
            dropout=0.1,
            num_groups=8,
        ),
    ),
    # Moving MNIST clips (B, T, 32, 32, 1): 32 -> 16 -> 8, temporal attention everywhere.
    "video_unet_32": (
        VideoUNet,
        dict(
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            attn_resolutions=(8,),
            num_groups=8,
            head_dim=32,
            max_frames=16,
        ),
    ),
    "dit_28x28": (DiT, dict(patch_size=2, hidden=128, depth=6, num_heads=4)),
}
for _size, (_depth, _hidden, _heads) in _DIT_SIZES.items():
    for _patch in (2, 4, 8):
        PRESETS[f"dit_{_size}_{_patch}"] = (
            DiT,
            dict(
                patch_size=_patch,
                hidden=_hidden,
                depth=_depth,
                num_heads=_heads,
                num_classes=1000,
                learn_sigma=True,
            ),
        )


def create(name: str, **overrides) -> nn.Module:
    """Builds a network preset by name.

    Args:
      name: a key of ``PRESETS``.
      **overrides: constructor fields replacing the preset's (e.g. ``num_classes=10``,
        ``dtype=jnp.bfloat16``, ``learn_sigma=True``, ``context_dim=512``, ``remat=True``).

    Returns:
      An unbound Flax module; ``init``/``apply`` it with (x, noise_level, ...).

    Raises:
      ValueError: unknown name (lists the presets) or unknown field (lists the fields).
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown model preset {name!r}; valid presets: {sorted(PRESETS)}.")
    cls, fields = PRESETS[name]
    valid = {f.name for f in dataclasses.fields(cls)} - {"parent", "name", "preset"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"{name}: unknown fields {unknown}; valid fields: {sorted(valid)}.")
    return cls(**{**fields, **overrides, "preset": name})
