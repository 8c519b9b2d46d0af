"""EDM preconditioning: turn any backbone F into a denoiser D(x, sigma) -> x0.

.. math::
  D(x, \\sigma) = c_\\text{skip}(\\sigma)\\, x + c_\\text{out}(\\sigma)\\,
  F\\big(c_\\text{in}(\\sigma)\\, x,\\ c_\\text{noise}(\\sigma)\\big)

for x = y + sigma n (EDM's unscaled noisy data, y of std sigma_data). Here
c_in = 1 / sqrt(sigma^2 + sigma_data^2) and c_noise = log(sigma) / 4 (EDM Table 1), and
(c_skip, c_out) follow from what F predicts. The scaled input c_in x equals
a (y / sigma_data) + b n with a^2 + b^2 = 1, i.e. a variance-preserving process on unit-std
data, so ``jaxdiff.parametrization.convert`` maps F's prediction of kind "eps", "x0", "v" or
"score" to x0 in that frame; c_skip and c_out are read off that affine map. Kind "edm" is
EDM's own F, which equals -v, giving Table 1's EDM column:
c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(...).
Kind "eps" with sigma_data = 1 gives the VP/VE columns (c_skip = 1, c_out = -sigma).

References:
  Karras et al. 2022, https://arxiv.org/abs/2206.00364 (Table 1).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxdiff import models
  >>> denoiser = models.Precondition(models.create("unet_8x8"), kind="edm", sigma_data=0.5)
  >>> x, sigma = jnp.zeros((2, 8, 8, 1)), jnp.array([0.1, 10.0])
  >>> variables = denoiser.init({"params": jax.random.key(0)}, x, sigma)
  >>> denoiser.apply(variables, x, sigma).shape
  (2, 8, 8, 1)
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff import parametrization
from jaxdiff._process import Process
from jaxdiff._types import Array

KINDS = ("edm",) + parametrization.KINDS


class _UnitVarianceFrame(Process):
    """c_in x seen as a VP marginal on y / sigma_data; its "time" argument is EDM's sigma."""

    def __init__(self, sigma_data: float):
        self.sigma_data = sigma_data

    def scale(self, t: Array) -> Array:
        return self.sigma_data / jnp.sqrt(jnp.square(t) + self.sigma_data**2)

    def sigma(self, t: Array) -> Array:
        return t / jnp.sqrt(jnp.square(t) + self.sigma_data**2)


def coefficients(sigma: Array, kind: str = "edm", sigma_data: float = 0.5):
    """EDM's preconditioning coefficients for a backbone predicting ``kind``.

    Args:
      sigma: (B,) noise levels (> 0).
      kind: what the backbone predicts: "edm" (EDM's F = -v), "eps", "x0", "v", "score".
      sigma_data: standard deviation of the data.

    Returns:
      ``(c_skip, c_out, c_in, c_noise)``, each (B,) float32.

    Raises:
      ValueError: unknown kind or sigma_data <= 0.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown preconditioning kind {kind!r}; valid kinds: {list(KINDS)}.")
    if not sigma_data > 0:
        raise ValueError(f"sigma_data must be > 0; got {sigma_data=}.")
    sigma = jnp.asarray(sigma, jnp.float32).reshape(-1)
    c_in = 1.0 / jnp.sqrt(jnp.square(sigma) + sigma_data**2)
    c_noise = jnp.log(sigma) / 4.0
    frame, pred_kind = _UnitVarianceFrame(sigma_data), "v" if kind == "edm" else kind
    ones, zeros = jnp.ones((sigma.shape[0], 1)), jnp.zeros((sigma.shape[0], 1))
    # x0 / sigma_data = a * (c_in x) + b * F in the unit frame (conversions are affine).
    a = parametrization.convert(zeros, pred_kind, "x0", ones, sigma, frame)[:, 0]
    b = parametrization.convert(ones, pred_kind, "x0", zeros, sigma, frame)[:, 0]
    c_skip = sigma_data * a * c_in
    c_out = sigma_data * b * (-1.0 if kind == "edm" else 1.0)
    return c_skip, c_out, c_in, c_noise


class Precondition(nn.Module):
    """Wraps a backbone ``F(x, noise_level, ...)`` into an EDM denoiser ``D(x, sigma) -> x0``.

    Parameters live under ``params["backbone"]``.

    Attributes:
      backbone: a network with the models' signature (UNet, DiT, ...), whose output has the
        input's channels (use learn_sigma=False).
      kind: what the backbone predicts (see ``coefficients``).
      sigma_data: standard deviation of the data.
    """

    backbone: nn.Module
    kind: str = "edm"
    sigma_data: float = 0.5

    @nn.compact
    def __call__(
        self,
        x: Array,
        sigma: Array,
        label: Array | None = None,
        context: Array | None = None,
        context_mask: Array | None = None,
        train: bool = False,
    ) -> Array:
        """Denoises x (B, H, W, C) at noise levels sigma (B,) or scalar; returns x0 estimate.

        Raises:
          ValueError: sigma of the wrong shape, or a backbone output of the wrong shape.
        """
        sigma = jnp.asarray(sigma, jnp.float32)
        if sigma.ndim == 0:
            sigma = jnp.full((x.shape[0],), sigma)
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must be a scalar or ({x.shape[0]},); got {sigma.shape}.")
        c_skip, c_out, c_in, c_noise = coefficients(sigma, self.kind, self.sigma_data)
        expand = lambda c: c.reshape((-1,) + (1,) * (x.ndim - 1))
        f = self.backbone(
            expand(c_in) * x,
            c_noise,
            label=label,
            context=context,
            context_mask=context_mask,
            train=train,
        )
        if f.shape != x.shape:
            raise ValueError(
                f"backbone output {f.shape} must match x {x.shape} "
                "(create the backbone with learn_sigma=False)."
            )
        return expand(c_skip) * x + expand(c_out) * f.astype(jnp.float32)
