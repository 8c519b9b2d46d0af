"""The Process interface shared by continuous SDEs and discrete schedules.

A diffusion process is fixed by two functions of time, ``scale(t)`` and ``sigma(t)``:

.. math::

   p(x_t \\mid x_0) = \\mathcal{N}(\\mathrm{scale}(t)\\, x_0,\\ \\sigma(t)^2 I),

and everything else (the forward SDE's drift and diffusion, SNR, the prior) follows from
them here, once, for every process. Time ``t`` is a float in [0, 1]; arrays of times have
shape (B,) and a scalar broadcasts.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._types import Array, PRNGKey


def is_concrete_number(*values) -> bool:
    """True when every value is a plain Python/NumPy number (not a tracer or placeholder).

    Constructors validate their parameters only then, so that pytree unflattening inside
    ``jit`` (which rebuilds processes from tracers) never trips a Python comparison.
    """
    return all(isinstance(v, (int, float, np.number, np.ndarray)) for v in values)


def batch_time(t, x: Array) -> Array:
    """Returns ``t`` as a float32 array of shape (B,) for data ``x`` of shape (B, ...).

    Raises:
      ValueError: if ``t`` is neither a scalar nor of shape (B,).
    """
    t = jnp.asarray(t, dtype=jnp.float32)
    batch = x.shape[0]
    if t.ndim == 0:
        return jnp.full((batch,), t)
    if t.shape != (batch,):
        raise ValueError(
            f"t must be a scalar or have shape (B,) = ({batch},) to match x of shape "
            f"{x.shape}; got t of shape {t.shape}."
        )
    return t


def expand_like(a: Array, x: Array) -> Array:
    """Reshapes per-example values ``a`` of shape (B,) to (B, 1, ..., 1) to broadcast with x."""
    a = jnp.asarray(a)
    if a.ndim == 0:
        return a
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def edm_frame(process, t) -> tuple[Array, Array]:
    """(sigma~(t), scale(t)) with sigma~ = sigma / scale: the marginal in EDM's frame.

    Args:
      process: a :class:`Process`.
      t: times, any shape.

    Returns:
      ``(sigma_hat, scale)``, each shaped like ``t``.
    """
    scale, sigma = process.marginal(t)
    return sigma / scale, scale


class Process:
    """Base class: subclasses define ``scale(t)``, ``sigma(t)`` and ``prior_std``.

    Subclasses are ``flax.struct.dataclass`` pytrees, so a process passes through
    ``jax.jit`` as an ordinary argument.
    """

    def scale(self, t: Array) -> Array:
        """The signal scale alpha(t) of the marginal; same shape as ``t``."""
        raise NotImplementedError

    def sigma(self, t: Array) -> Array:
        """The noise standard deviation sigma(t) of the marginal; same shape as ``t``."""
        raise NotImplementedError

    def variance(self, t: Array) -> Array:
        """sigma(t)^2. Subclasses override it where a direct form avoids d sqrt(0) = inf."""
        return jnp.square(self.sigma(t))

    @property
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior p_1 = N(0, prior_std^2 I)."""
        raise NotImplementedError

    def marginal(self, t: Array) -> tuple[Array, Array]:
        """Returns (scale(t), sigma(t)) of p(x_t | x_0) = N(scale x_0, sigma^2 I).

        Args:
          t: times in [0, 1], shape (B,) or scalar.

        Returns:
          ``(scale, sigma)``, each of the shape of ``t``.
        """
        t = jnp.asarray(t, dtype=jnp.float32)
        return self.scale(t), self.sigma(t)

    def log_snr(self, t: Array) -> Array:
        """log(scale^2 / sigma^2) at time t; same shape as ``t``."""
        scale, sigma = self.marginal(t)
        return 2.0 * (jnp.log(scale) - jnp.log(sigma))

    def snr(self, t: Array) -> Array:
        """Signal-to-noise ratio scale^2 / sigma^2 at time t; same shape as ``t``."""
        scale, sigma = self.marginal(t)
        return jnp.square(scale) / jnp.square(sigma)

    def sample_marginal(self, key: PRNGKey, x0: Array, t: Array) -> tuple[Array, Array]:
        """Draws x_t ~ p(x_t | x_0).

        Args:
          key: a PRNG key.
          x0: clean data, shape (B, ...).
          t: times, shape (B,) or scalar.

        Returns:
          ``(x_t, noise)``, both shaped like ``x0``, with x_t = scale x0 + sigma noise.
        """
        t = batch_time(t, x0)
        noise = jax.random.normal(key, x0.shape, x0.dtype)
        scale, sigma = self.marginal(t)
        return expand_like(scale, x0) * x0 + expand_like(sigma, x0) * noise, noise

    def rates(self, t: Array) -> tuple[Array, Array]:
        """Returns (d log scale / dt, d sigma^2 / dt), each shaped like ``t``.

        Computed by forward-mode autodiff of ``scale`` and ``variance``, so a new process
        only has to define its marginal. Differentiating sigma^2 directly (not sigma) keeps
        the rates finite where sigma = 0 (t = 0 for VP-type processes).
        """
        t = jnp.asarray(t, dtype=jnp.float32)
        ones = jnp.ones_like(t)
        _, dlog_scale = jax.jvp(lambda s: jnp.log(self.scale(s)), (t,), (ones,))
        _, dvar = jax.jvp(self.variance, (t,), (ones,))
        return dlog_scale, dvar

    def coefficients(self, x: Array, t: Array) -> tuple[Array, Array]:
        """Drift and diffusion of the forward SDE dx = f(x, t) dt + g(t) dw.

        With a(t) = d log scale / dt, the marginal fixes f = a x and
        g^2 = d sigma^2 / dt - 2 a sigma^2.

        Args:
          x: state, shape (B, ...).
          t: times, shape (B,) or scalar.

        Returns:
          ``(f, g)``: f shaped like ``x``; g of shape (B,).
        """
        t = batch_time(t, x)
        dlog_scale, dvar = self.rates(t)
        g2 = dvar - 2.0 * dlog_scale * self.variance(t)
        chex.assert_shape(g2, t.shape)
        return expand_like(dlog_scale, x) * x, jnp.sqrt(jnp.maximum(g2, 0.0))

    def prior_sample(self, key: PRNGKey, shape: tuple[int, ...]) -> Array:
        """Draws from the prior N(0, prior_std^2 I); ``shape`` is (B, ...)."""
        return self.prior_std * jax.random.normal(key, shape, jnp.float32)

    def prior_logp(self, z: Array) -> Array:
        """Log-density of the prior at z of shape (B, ...), summed over non-batch axes: (B,)."""
        chex.assert_rank(z, {1, 2, 3, 4, 5, 6})
        dim = math.prod(z.shape[1:])
        var = jnp.square(self.prior_std)
        sq = jnp.sum(jnp.square(z).reshape(z.shape[0], -1), axis=-1)
        return -0.5 * dim * jnp.log(2.0 * jnp.pi * var) - 0.5 * sq / var
