"""A radiance field on a voxel grid (trilinear interpolation) and a background model.

The grid holds density (per unit length, >= 0) and albedo (RGB in [0, 1]) at R^3 points
spanning the cube [-bound, bound]^3, corners included: index i on an axis sits at
``-bound + 2 bound i / (R - 1)``; axes are (x, y, z). Outside the cube the field is empty.
A grid is cheaper than a NeRF MLP on a CPU (one gather of 8 corners per sample) and its
gradient is sparse and exact.

For optimisation (score distillation) the field is kept as unconstrained parameters
``{"density": (R, R, R), "albedo": (R, R, R, 3), "background": (4, 3)}`` and
:func:`activate` maps them to a :class:`Grid`: density = softplus(raw + prior) with a
Gaussian density blob as prior (DreamFusion's initialisation, kept during optimisation),
albedo = sigmoid(raw). The background is a function of the ray direction only,
``sigmoid(c_0 + d . (c_1, c_2, c_3))``, too smooth to paint the object on it.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff.render import field
  >>> params = field.init_params(16)
  >>> grid = field.activate(params, field.density_prior(16))
  >>> grid.density.shape, grid.albedo.shape
  ((16, 16, 16), (16, 16, 16, 3))
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdiff._types import Array


class Grid(NamedTuple):
    """A voxel radiance field (physical values).

    Attributes:
      density: (R, R, R) extinction per unit length, >= 0.
      albedo: (R, R, R, 3) base colour in [0, 1].
    """

    density: Array
    albedo: Array


def check_grid(grid: Grid) -> int:
    """The resolution R of a well-formed grid.

    Raises:
      ValueError: shapes that are not (R, R, R) and (R, R, R, 3) with R >= 2.
    """
    shape = jnp.shape(grid.density)
    if len(shape) != 3 or len(set(shape)) != 1 or shape[0] < 2:
        raise ValueError(f"density must have shape (R, R, R) with R >= 2; got {shape}.")
    if jnp.shape(grid.albedo) != (*shape, 3):
        raise ValueError(f"albedo must have shape {(*shape, 3)}; got {jnp.shape(grid.albedo)}.")
    return shape[0]


def coordinates(resolution: int, bound: float = 1.0) -> Array:
    """World coordinates of the grid points: (R, R, R, 3)."""
    axis = jnp.linspace(-bound, bound, resolution, dtype=jnp.float32)
    return jnp.stack(jnp.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def trilinear(values: Array, points: Array, bound: float = 1.0) -> Array:
    """Trilinear interpolation of grid values at points; zero outside the cube.

    Args:
      values: (R, R, R, C) values at the grid points.
      points: (..., 3) world coordinates.
      bound: the grid spans [-bound, bound]^3.

    Returns:
      (..., C) interpolated values (0 outside [-bound, bound]^3).
    """
    res, channels = values.shape[0], values.shape[-1]
    u = (points + bound) * (0.5 * (res - 1) / bound)  # continuous index, (..., 3)
    inside = jnp.all((u >= 0.0) & (u <= res - 1), axis=-1)
    base = jnp.clip(jnp.floor(u), 0, res - 2).astype(jnp.int32)
    frac = jnp.clip(u - base, 0.0, 1.0)
    flat = values.reshape(-1, channels)
    out = jnp.zeros(points.shape[:-1] + (channels,), values.dtype)
    for corner in range(8):
        offset = jnp.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = base + offset
        weight = jnp.prod(jnp.where(offset == 1, frac, 1.0 - frac), axis=-1)
        linear = (idx[..., 0] * res + idx[..., 1]) * res + idx[..., 2]
        out = out + weight[..., None] * jnp.take(flat, linear, axis=0)
    return jnp.where(inside[..., None], out, 0.0)


def density_gradient(density: Array, bound: float = 1.0) -> Array:
    """Spatial gradient of the density grid by central differences: (R, R, R, 3)."""
    spacing = 2.0 * bound / (density.shape[0] - 1)
    return jnp.stack(jnp.gradient(density, spacing), axis=-1)


def density_prior(
    resolution: int,
    bound: float = 1.0,
    amplitude: float = 10.0,
    radius: float = 0.5,
    offset: float = 5.0,
) -> Array:
    """The pre-activation density blob ``amplitude exp(-|p|^2 / (2 radius^2)) - offset``.

    With zero raw parameters, :func:`activate` gives a soft ball (density softplus(5) ~ 5
    at the centre) in a nearly empty cube (softplus(-5) ~ 0.007): SDS starts from an
    object in the middle instead of fog everywhere (DreamFusion, Sec. 3.1 and A.2).

    Returns:
      (R, R, R) float32.

    Raises:
      ValueError: a non-positive radius.
    """
    if radius <= 0:
        raise ValueError(f"blob radius must be > 0; got {radius}.")
    sq = jnp.sum(jnp.square(coordinates(resolution, bound)), axis=-1)
    return amplitude * jnp.exp(-sq / (2.0 * radius**2)) - offset


def init_params(resolution: int) -> dict:
    """Zero raw parameters of a field of resolution R (grey albedo, grey background).

    Raises:
      ValueError: ``resolution`` < 2.
    """
    if resolution < 2:
        raise ValueError(f"grid resolution must be >= 2; got {resolution}.")
    return {
        "density": jnp.zeros((resolution,) * 3, jnp.float32),
        "albedo": jnp.zeros((resolution,) * 3 + (3,), jnp.float32),
        "background": jnp.zeros((4, 3), jnp.float32),
    }


def activate(params: dict, prior: Array) -> Grid:
    """Raw parameters -> :class:`Grid`: softplus(raw density + prior), sigmoid(raw albedo)."""
    if params["density"].shape != prior.shape:
        raise ValueError(
            f"density prior {prior.shape} must match the grid {params['density'].shape}."
        )
    return Grid(jax.nn.softplus(params["density"] + prior), jax.nn.sigmoid(params["albedo"]))


def background(coeffs: Array, directions: Array) -> Array:
    """Background colour seen along unit ``directions`` (..., 3): (..., 3) in (0, 1).

    Args:
      coeffs: (4, 3): a constant and a linear term in the direction, per colour channel.
      directions: (..., 3) unit ray directions.
    """
    if coeffs.shape != (4, 3):
        raise ValueError(f"background coefficients must have shape (4, 3); got {coeffs.shape}.")
    return jax.nn.sigmoid(coeffs[0] + directions @ coeffs[1:])
