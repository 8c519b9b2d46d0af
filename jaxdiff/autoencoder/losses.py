"""The autoencoder's loss: reconstruction (L1 + SSIM) + a KL term, and image metrics.

LPIPS, the perceptual loss of latent diffusion, needs weights that cannot be fetched here;
the substitute is L1 + (1 - SSIM) (structural similarity, Wang et al. 2004, Gaussian window
of 7 pixels, sigma 1.5, "valid" windows), which rewards sharp strokes where L1 alone blurs.
The patch discriminator of the LDM recipe is left out.

Per example (images in [-1, 1], so SSIM's dynamic range L = 2):

  rec = mean |x - x_hat| + ssim_weight (1 - SSIM(x, x_hat))
  kl  = KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar)
  loss = rec + kl_weight kl

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff.autoencoder import losses
  >>> losses.kl_to_standard_normal(jnp.ones((1, 2, 2, 1)), jnp.zeros((1, 2, 2, 1))).tolist()
  [2.0]
"""

import jax
import jax.numpy as jnp

from jaxdiff._types import Array

DATA_RANGE = 2.0  # images in [-1, 1]
SSIM_WINDOW = 7
SSIM_SIGMA = 1.5


def _sum_over_example(x: Array) -> Array:
    return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def kl_to_standard_normal(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per example, summed over the latent axes.

    Args:
      mean: (B, ...) posterior means.
      logvar: (B, ...) posterior log-variances.

    Returns:
      (B,) nats.
    """
    return 0.5 * _sum_over_example(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def l1(x: Array, x_hat: Array) -> Array:
    """Mean absolute error per example: (B, H, W, C) x2 -> (B,)."""
    return jnp.mean(jnp.abs(x - x_hat), axis=tuple(range(1, x.ndim)))


def _gaussian_window(size: int, sigma: float) -> Array:
    r = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-0.5 * jnp.square(r / sigma))
    return g / jnp.sum(g)


def _local_mean(x: Array, window: Array) -> Array:
    """Separable Gaussian filter of every channel, "valid" windows: (B, H, W, C) ->
    (B, H - k + 1, W - k + 1, C)."""
    c = x.shape[-1]
    k = window.shape[0]
    rows = jnp.tile(window.reshape(k, 1, 1, 1), (1, 1, 1, c))
    cols = jnp.tile(window.reshape(1, k, 1, 1), (1, 1, 1, c))
    dims = ("NHWC", "HWIO", "NHWC")
    conv = lambda a, w: jax.lax.conv_general_dilated(a, w, (1, 1), "VALID", None, None, dims, c)
    return conv(conv(x, rows), cols)


def ssim(x: Array, y: Array, data_range: float = DATA_RANGE) -> Array:
    """Mean structural similarity per example (Wang et al. 2004; K1 = 0.01, K2 = 0.03).

    Args:
      x, y: (B, H, W, C) images, H and W >= the 7-pixel window.
      data_range: L, max - min of the pixel range (2 for [-1, 1]).

    Returns:
      (B,) SSIM in [-1, 1]; 1 for identical images.
    """
    if x.shape != y.shape or x.ndim != 4 or min(x.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(
            f"ssim needs two (B, H, W, C) images of one shape with H, W >= {SSIM_WINDOW}; "
            f"got {x.shape} and {y.shape}."
        )
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _local_mean(x, window), _local_mean(y, window)
    var_x = _local_mean(x * x, window) - mu_x**2
    var_y = _local_mean(y * y, window) - mu_y**2
    cov = _local_mean(x * y, window) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return jnp.mean(num / den, axis=(1, 2, 3))


def reconstruction(x: Array, x_hat: Array, ssim_weight: float) -> Array:
    """mean |x - x_hat| + ssim_weight (1 - SSIM(x, x_hat)) per example: (B,)."""
    rec = l1(x, x_hat)
    if ssim_weight:
        rec = rec + ssim_weight * (1.0 - ssim(x, x_hat))
    return rec


def autoencoder_loss(x, x_hat, mean, logvar, *, kl_weight: float, ssim_weight: float):
    """(mean loss, metrics) of a batch: reconstruction + kl_weight KL.

    Args:
      x: (B, H, W, C) images in [-1, 1].
      x_hat: (B, H, W, C) reconstructions.
      mean, logvar: (B, h, w, c) the posterior.
      kl_weight: weight of the KL nats per example (e.g. 1e-5: a weak prior, as LDM).
      ssim_weight: weight of 1 - SSIM (0: plain L1).

    Returns:
      ``(loss, {"loss", "rec", "kl", "psnr"})``, each a scalar mean over the batch.
    """
    rec = reconstruction(x, x_hat, ssim_weight)
    kl = kl_to_standard_normal(mean, logvar)
    loss = jnp.mean(rec + kl_weight * kl)
    metrics = {"loss": loss, "rec": jnp.mean(rec), "kl": jnp.mean(kl)}
    metrics["psnr"] = jnp.mean(psnr(x, jnp.clip(x_hat, -1.0, 1.0)))
    return loss, metrics


def psnr(x: Array, y: Array, data_range: float = DATA_RANGE) -> Array:
    """Peak signal-to-noise ratio per example, 10 log10(L^2 / MSE) in dB: (B,)."""
    mse = jnp.mean(jnp.square(x - y), axis=tuple(range(1, x.ndim)))
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, 1e-12))
