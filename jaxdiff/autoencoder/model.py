"""A KL-regularised convolutional autoencoder (Rombach et al. 2022, "KL-f" models), NHWC.

The encoder maps an image (B, H, W, C) to the mean and log-variance of a diagonal Gaussian
posterior q(z | x) over latents (B, H / f, W / f, c), f = 2 ** (len(ch_mult) - 1); the
decoder maps a latent back to an image. Both are stacks of GroupNorm-SiLU-conv residual
blocks with stride-2 convolutions down and nearest-neighbour upsampling + conv up; no
attention (28x28 digits do not need it).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff.autoencoder import model
  >>> ae = model.Autoencoder(ch=8, ch_mult=(1, 2, 2), latent_channels=4, num_groups=4)
  >>> x = jnp.zeros((2, 28, 28, 1))
  >>> variables = ae.init(jax.random.key(0), x)
  >>> mean, logvar = ae.apply(variables, x, method=ae.encode)
  >>> mean.shape
  (2, 7, 7, 4)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff._types import Array, PRNGKey
from jaxdiff.models import resample
from jaxdiff.models.layers import group_norm

# log-variances are clipped to this range (as the LDM code) so exp() stays finite.
LOGVAR_RANGE = (-30.0, 20.0)


class ResidualBlock(nn.Module):
    """x + Conv(SiLU(GN(Conv(SiLU(GN(x)))))), with a 1x1 shortcut when channels change.

    Attributes:
      features: output channels.
      num_groups: GroupNorm groups.
    """

    features: int
    num_groups: int = 8

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, H, W, C) -> (B, H, W, features)."""
        h = nn.silu(group_norm(self.num_groups, name="norm1")(x))
        h = nn.Conv(self.features, (3, 3), name="conv1")(h)
        h = nn.silu(group_norm(self.num_groups, name="norm2")(h))
        h = nn.Conv(self.features, (3, 3), name="conv2")(h)
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), name="shortcut")(x)
        return x + h


class Encoder(nn.Module):
    """Image (B, H, W, C) -> (mean, logvar), each (B, H / f, W / f, latent_channels)."""

    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_channels: int = 4
    num_groups: int = 8

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = nn.Conv(self.ch, (3, 3), name="conv_in")(x)
        for i, mult in enumerate(self.ch_mult):
            for j in range(self.num_res_blocks):
                h = ResidualBlock(self.ch * mult, self.num_groups, name=f"down{i}_res{j}")(h)
            if i != len(self.ch_mult) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), name=f"down{i}_sample")(h)
        h = ResidualBlock(h.shape[-1], self.num_groups, name="mid_res")(h)
        h = nn.silu(group_norm(self.num_groups, name="norm_out")(h))
        moments = nn.Conv(2 * self.latent_channels, (3, 3), name="conv_out")(h)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)


class Decoder(nn.Module):
    """Latent (B, h, w, latent_channels) -> image (B, f h, f w, out_channels)."""

    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    out_channels: int = 1
    num_groups: int = 8

    @nn.compact
    def __call__(self, z: Array) -> Array:
        h = nn.Conv(self.ch * self.ch_mult[-1], (3, 3), name="conv_in")(z)
        h = ResidualBlock(h.shape[-1], self.num_groups, name="mid_res")(h)
        for i in reversed(range(len(self.ch_mult))):
            for j in range(self.num_res_blocks + 1):
                h = ResidualBlock(self.ch * self.ch_mult[i], self.num_groups, name=f"up{i}_res{j}")(
                    h
                )
            if i != 0:
                h = resample.upsample(h)  # 2x nearest as jnp.repeat (exports to ONNX)
                h = nn.Conv(h.shape[-1], (3, 3), name=f"up{i}_sample")(h)
        h = nn.silu(group_norm(self.num_groups, name="norm_out")(h))
        return nn.Conv(self.out_channels, (3, 3), name="conv_out")(h)


class Autoencoder(nn.Module):
    """Encoder + decoder; ``__call__`` reconstructs through a posterior sample.

    Attributes:
      ch: base channels (a multiple of ``num_groups``).
      ch_mult: channel multiplier per level; len(ch_mult) - 1 stride-2 downsamplings.
      num_res_blocks: residual blocks per level (the decoder has one more).
      latent_channels: c of the latents.
      out_channels: image channels C.
      num_groups: GroupNorm groups.
    """

    ch: int = 32
    ch_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_channels: int = 4
    out_channels: int = 1
    num_groups: int = 8

    def setup(self):
        common = dict(ch=self.ch, ch_mult=self.ch_mult, num_res_blocks=self.num_res_blocks)
        common["num_groups"] = self.num_groups
        self.encoder = Encoder(latent_channels=self.latent_channels, **common)
        self.decoder = Decoder(out_channels=self.out_channels, **common)

    @property
    def factor(self) -> int:
        """f: image size / latent size."""
        return 2 ** (len(self.ch_mult) - 1)

    def encode(self, x: Array) -> tuple[Array, Array]:
        """(B, H, W, C) in [-1, 1] -> posterior (mean, logvar), each (B, H/f, W/f, c)."""
        if x.ndim != 4 or x.shape[1] % self.factor or x.shape[2] % self.factor:
            raise ValueError(
                f"autoencoder: x must be (B, H, W, C) with H, W divisible by {self.factor} "
                f"(2 ** (len(ch_mult) - 1)); got shape {x.shape}."
            )
        return self.encoder(x)

    def decode(self, z: Array) -> Array:
        """(B, h, w, c) latents -> (B, f h, f w, C) images (unclipped)."""
        return self.decoder(z)

    def __call__(self, x: Array, key: PRNGKey | None = None):
        """Returns ``(reconstruction, mean, logvar)``; ``key`` None decodes the mean."""
        mean, logvar = self.encode(x)
        z = mean if key is None else sample_posterior(key, mean, logvar)
        return self.decode(z), mean, logvar


def sample_posterior(key: PRNGKey, mean: Array, logvar: Array) -> Array:
    """z = mean + exp(logvar / 2) n, n ~ N(0, I) (the reparameterisation trick)."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
