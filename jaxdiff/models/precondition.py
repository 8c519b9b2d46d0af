"""EDM preconditioning: turn any backbone F into a denoiser D(x, sigma) -> x0.

.. math::
  D(x, \\sigma) = c_\\text{skip}(\\sigma)\\, x + c_\\text{out}(\\sigma)\\,
  F\\big(c_\\text{in}(\\sigma)\\, x,\\ c_\\text{noise}(\\sigma)\\big)

for x = y + sigma n (EDM's unscaled noisy data, y of std sigma_data), written as Karras et
al.'s Table 1 with r = sqrt(sigma^2 + sigma_data^2):

==========  ====================  =====================  ========  ===============
F predicts  c_skip                c_out                  c_in      c_noise
==========  ====================  =====================  ========  ===============
"edm"       sigma_data^2 / r^2    sigma sigma_data / r   1 / r     log(sigma) / 4
"v"         sigma_data^2 / r^2    -sigma sigma_data / r  1 / r     log(sigma) / 4
"eps"       1                     -sigma                 1 / r     log(sigma) / 4
"x0"        0                     sigma_data             1 / r     log(sigma) / 4
"score"     1                     sigma^2 / r            1 / r     log(sigma) / 4
==========  ====================  =====================  ========  ===============

The scaled input c_in x = a (y / sigma_data) + b n, a = sigma_data / r, b = sigma / r, is a
variance-preserving marginal of unit-std data, and each row solves the conversion of
:mod:`jaxdiff.parametrization` in that frame for y: x0 (= y / sigma_data) = a x_in - b v,
= (x_in - b eps) / a, = (x_in + b^2 score) / a. "edm" is EDM's own F = -v (the EDM column);
"eps" with sigma_data = 1 is the VP/VE columns (c_skip = 1, c_out = -sigma).
tests/test_models_layers.py checks every row against an exact Gaussian oracle.

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
from jaxdiff._types import Array

KINDS = ("edm",) + parametrization.KINDS


def coefficients(sigma: Array, kind: str = "edm", sigma_data: float = 0.5):
    """EDM's preconditioning coefficients for a backbone predicting ``kind`` (Table 1).

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
    sd, one = sigma_data, jnp.ones_like(sigma)
    r = jnp.sqrt(jnp.square(sigma) + sd**2)
    c_skip, c_out = {
        "edm": (sd**2 / jnp.square(r), sigma * sd / r),
        "v": (sd**2 / jnp.square(r), -sigma * sd / r),
        "eps": (one, -sigma),
        "x0": (0.0 * one, sd * one),
        "score": (one, jnp.square(sigma) / r),
    }[kind]
    return c_skip, c_out, 1.0 / r, jnp.log(sigma) / 4.0


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
