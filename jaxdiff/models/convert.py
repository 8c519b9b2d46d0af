"""Weight import from PyTorch ``diffusers`` ``UNet2DModel`` checkpoints (DDPM-style configs).

``from_diffusers(weights, config)`` builds the matching jaxdiff ``UNet`` and its variables,
so the same network runs on both sides (e.g. google/ddpm-cifar10-32). Tensors only: a state
dict of numpy arrays / torch tensors, a ``.safetensors`` file (read by ``safetensors.numpy``)
or a ``.bin``/``.pt`` file read with ``torch.load(weights_only=True)`` (a restricted
unpickler that builds tensors and never runs code from the file).

The converted network takes NHWC inputs and the same noise input as diffusers (the
timestep); the output equals diffusers' ``.sample`` transposed to NHWC.

Example:
  >>> from jaxdiff.models import convert
  >>> net, variables = convert.from_diffusers("unet/diffusion_pytorch_model.safetensors",
  ...                                         "unet/config.json")  # doctest: +SKIP
"""

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.models.unet import UNet

# google/ddpm-cifar10-32's config.json: Ho et al. (2020)'s CIFAR-10 network, 35.7M params.
DDPM_CIFAR10_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 256, 256),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=32,
    act_fn="silu",
    center_input_sample=False,
    mid_block_scale_factor=1,
    time_embedding_type="positional",
)

_SUPPORTED_BLOCKS = {"DownBlock2D", "AttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D"}
# Config values jaxdiff's U-Net implements (other values raise).
_REQUIRED = {
    "act_fn": "silu",
    "time_embedding_type": "positional",
    "center_input_sample": False,
    "mid_block_scale_factor": 1,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "time_embedding_dim": None,
    "attn_norm_num_groups": None,
    "upsample_type": "conv",
    "downsample_type": "conv",
}
# diffusers submodule names -> jaxdiff's; older checkpoints use query/key/value/proj_attn.
_LEAF_NAMES = {
    "time_emb_proj": "emb_proj",
    "conv_shortcut": "shortcut",
    "group_norm": "norm",
    "to_q": "attn/q",
    "to_k": "attn/k",
    "to_v": "attn/v",
    "to_out.0": "attn/out",
    "query": "attn/q",
    "key": "attn/k",
    "value": "attn/v",
    "proj_attn": "attn/out",
}
_TOP_NAMES = {
    "conv_in": "conv_in",
    "conv_out": "conv_out",
    "conv_norm_out": "norm_out",
    "time_embedding.linear_1": "emb_dense1",
    "time_embedding.linear_2": "emb_dense2",
}


def load_state_dict(weights) -> dict[str, np.ndarray]:
    """Reads tensors from a mapping or a file, executing no code from the file.

    Args:
      weights: a mapping name -> numpy array / torch tensor, or a path to a
        ``.safetensors`` file or a torch ``.bin``/``.pt``/``.pth`` file.

    Returns:
      name -> float32 numpy array.

    Raises:
      ValueError: unknown file type.
    """
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            weights = load_file(path)
        elif path.endswith((".bin", ".pt", ".pth")):
            import torch

            weights = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"weights file must be .safetensors, .bin, .pt or .pth; got {path!r}.")
    out = {}
    for name, value in weights.items():
        if hasattr(value, "detach"):  # torch tensor, possibly bf16
            value = value.detach().float().cpu().numpy()
        out[name] = np.asarray(value, dtype=np.float32)
    return out


def _read_config(config: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """A diffusers config as a mapping (read from a JSON file when given a path)."""
    if isinstance(config, (str, os.PathLike)):
        with open(config, encoding="utf-8") as f:
            return json.load(f)
    return config


def unet_from_config(config: Mapping[str, Any] | str, dtype=jnp.float32) -> UNet:
    """The jaxdiff ``UNet`` equivalent to a diffusers ``UNet2DModel`` config.

    Args:
      config: the config dict (``model.config``) or a path to its ``config.json``.
      dtype: compute dtype of the returned network.

    Raises:
      ValueError: a config feature the jaxdiff U-Net does not implement.
    """
    config = _read_config(config)
    for key, want in _REQUIRED.items():
        if config.get(key, want) != want:
            raise ValueError(f"from_diffusers: unsupported {key}={config[key]!r}; need {want!r}.")
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    if set(down + up) - _SUPPORTED_BLOCKS or len(up) != len(down):
        raise ValueError(f"from_diffusers: unsupported blocks {down} / {up}.")
    if [b.startswith("Attn") for b in down] != [b.startswith("Attn") for b in reversed(up)]:
        raise ValueError(f"from_diffusers: up blocks {up} do not mirror down blocks {down}.")
    channels = list(config["block_out_channels"])
    if any(c % channels[0] for c in channels):
        raise ValueError(
            f"from_diffusers: block_out_channels {channels} not multiples of the first."
        )
    size = config["sample_size"]
    size = size[0] if isinstance(size, (list, tuple)) else size
    attn = tuple(size // 2**i for i, b in enumerate(down) if b.startswith("Attn"))
    return UNet(
        ch=channels[0],
        ch_mult=tuple(c // channels[0] for c in channels),
        num_res_blocks=config.get("layers_per_block", 2),
        attn_resolutions=attn,
        dropout=config.get("dropout", 0.0),
        num_groups=config.get("norm_num_groups", 32),
        norm_eps=config.get("norm_eps", 1e-5),
        head_dim=config.get("attention_head_dim", 8),
        flip_sin_to_cos=config.get("flip_sin_to_cos", True),
        freq_shift=config.get("freq_shift", 0),
        down_padding="SAME" if config.get("downsample_padding", 1) == 0 else "SYMMETRIC",
        out_channels=config.get("out_channels", 3),
        dtype=dtype,
        preset="diffusers_unet2d",
    )


def _jax_path(name: str, num_levels: int) -> tuple[str, ...]:
    """Maps a diffusers parameter name to a path in the jaxdiff param tree."""
    module, leaf = name.rsplit(".", 1)
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", module)
    s = re.fullmatch(r"(down|up)_blocks\.(\d+)\.((?:down|up)samplers\.0\.conv)", module)
    mid = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", module)
    if m:
        side, i, kind, j, rest = m.groups()
        level = int(i) if side == "down" else num_levels - 1 - int(i)
        block = f"{side}{level}_{'res' if kind == 'resnets' else 'attn'}{j}"
    elif s:
        side, i, rest = s.groups()
        level = int(i) if side == "down" else num_levels - 1 - int(i)
        block, rest = f"{side}{level}_sample", "conv"
    elif mid:
        kind, j, rest = mid.groups()
        block = f"mid_res{j}" if kind == "resnets" else "mid_attn"
    elif module in _TOP_NAMES:
        block, rest = _TOP_NAMES[module], ""
    else:
        raise ValueError(f"from_diffusers: unexpected tensor {name!r}.")
    rest = _LEAF_NAMES.get(rest, rest)
    is_norm = "norm" in (rest or block)
    leaf = {"weight": "scale" if is_norm else "kernel", "bias": "bias"}[leaf]
    return tuple(p for p in (block, *rest.split("/"), leaf) if p)


def _to_flax(value: np.ndarray) -> np.ndarray:
    """Torch layouts -> Flax: conv OIHW -> HWIO, linear (out, in) -> (in, out)."""
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if value.ndim == 2:
        return value.T
    return value


def from_diffusers(weights, config: Mapping[str, Any] | str, dtype=jnp.float32):
    """Imports a diffusers ``UNet2DModel`` into a jaxdiff ``UNet``.

    Args:
      weights: state dict (numpy arrays or torch tensors) or a ``.safetensors`` /
        ``.bin`` path (see ``load_state_dict``).
      config: the ``UNet2DModel`` config dict or a path to its ``config.json``.
      dtype: compute dtype of the returned network (parameters stay float32).

    Returns:
      ``(net, variables)``: ``net.apply(variables, x_nhwc, timesteps)`` equals diffusers'
      ``model(x_nchw, timesteps).sample`` transposed to NHWC.

    Raises:
      ValueError: unsupported config, unexpected or missing tensors, or shape mismatches
        (each listed).
    """
    config = _read_config(config)
    net = unet_from_config(config, dtype)
    size = config["sample_size"]
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    x = jax.ShapeDtypeStruct((1, *size, config.get("in_channels", 3)), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    expected = jax.eval_shape(net.init, {"params": jax.random.key(0)}, x, t)["params"]
    flat_expected = {
        tuple(k.key for k in path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]
    }
    params, problems = {}, []
    num_levels = len(config["block_out_channels"])
    for name, value in load_state_dict(weights).items():
        path, value = _jax_path(name, num_levels), _to_flax(value)
        if path not in flat_expected:
            problems.append(f"unexpected tensor {name} -> {'/'.join(path)}")
        elif flat_expected[path] != value.shape:
            problems.append(f"{name}: shape {value.shape}, expected {flat_expected[path]}")
        params[path] = value
    problems += [f"missing {'/'.join(p)}" for p in sorted(set(flat_expected) - set(params))]
    if problems:
        raise ValueError(
            "from_diffusers: weights do not fit the config:\n  " + "\n  ".join(problems)
        )
    tree: dict = {}
    for path, value in params.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = jnp.asarray(value)
    return net, {"params": tree}
