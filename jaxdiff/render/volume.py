"""Volume rendering of a voxel field along rays: alpha compositing with Lambertian shading.

Along each ray, S samples at s_i = near + (i + 1/2) delta (delta = (far - near) / S; with a
key, a random offset in [0, delta) replaces the 1/2) give

    alpha_i = 1 - exp(-sigma_i delta),    T_i = exp(-sum_{j<i} sigma_j delta),
    w_i = T_i alpha_i,                    opacity = sum_i w_i,
    rgb = sum_i w_i c_i + (1 - opacity) background,

with c_i = shade(albedo_i, n_i) and the normal n = -grad sigma / |grad sigma| from central
differences of the density grid. Shading is Lambertian, ``base (ambient + (1 - ambient)
max(0, n . l))``, where ``base`` is the albedo or, "textureless", a uniform grey (so only
geometry can explain the image; DreamFusion, Sec. 3.1). Ambient 1 gives the plain albedo.
The orientation term of Ref-NeRF, ``sum_i w_i max(0, n_i . d)^2``, penalises visible
normals that face away from the camera.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff.render import camera, field, volume
  >>> grid = field.Grid(jnp.zeros((8, 8, 8)), jnp.zeros((8, 8, 8, 3)))
  >>> pose = camera.orbit(jnp.float32(0.3), jnp.float32(0.2), radius=3.0)
  >>> out = volume.render(grid, pose, height=4, width=4, fov=40.0, radius=3.0)
  >>> float(out["opacity"].max()), out["rgb"].shape
  (0.0, (4, 4, 3))
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._types import Array, PRNGKey
from jaxdiff.render import camera, field

GREY = 0.7  # the base colour of textureless shading


class Shading(NamedTuple):
    """How samples are lit (all arrays, so a jitted renderer takes any shading).

    Attributes:
      light: (3,) unit direction from the object towards a distant light.
      ambient: () ambient fraction in [0, 1]; 1 renders the plain albedo.
      textureless: () in [0, 1]; 1 replaces the albedo by a uniform grey.
    """

    light: Array
    ambient: Array
    textureless: Array


def unlit() -> Shading:
    """Plain albedo: every sample shows its base colour."""
    return Shading(jnp.array([0.0, 0.0, 1.0]), jnp.float32(1.0), jnp.float32(0.0))


def lambertian(light: Array, ambient: float = 0.3, textureless: bool = False) -> Shading:
    """Diffuse shading by a distant light in direction ``light`` (normalised here).

    Raises:
      ValueError: ``ambient`` outside [0, 1].
    """
    if isinstance(ambient, (int, float)) and not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must be in [0, 1]; got {ambient}.")
    light = jnp.asarray(light, jnp.float32)
    light = light / jnp.linalg.norm(light)
    return Shading(light, jnp.float32(ambient), jnp.float32(textureless))


def ray_bounds(radius: float, bound: float = 1.0) -> tuple[float, float]:
    """(near, far) covering the cube [-bound, bound]^3 from a camera at ``radius``.

    Raises:
      ValueError: a camera inside the cube's bounding sphere.
    """
    reach = float(np.sqrt(3.0)) * bound
    if radius <= reach:
        raise ValueError(
            f"camera radius {radius} must exceed the cube's half-diagonal {reach:.3f} "
            f"(bound {bound})."
        )
    return radius - reach, radius + reach


def render_rays(
    grid: field.Grid,
    rays: camera.Rays,
    *,
    near: float,
    far: float,
    num_samples: int = 64,
    bound: float = 1.0,
    background: Array | None = None,
    shading: Shading | None = None,
    key: PRNGKey | None = None,
) -> dict[str, Array]:
    """Composites the field along rays.

    Args:
      grid: the voxel field (see :mod:`field`).
      rays: origins and unit directions, (..., 3) each.
      near, far: the sampled segment of every ray, 0 <= near < far.
      num_samples: S samples per ray.
      bound: the grid spans [-bound, bound]^3.
      background: colour behind the field, (3,) or (..., 3) (default white).
      shading: lighting (default :func:`unlit`).
      key: if given, jitter the samples within their intervals (stratified sampling).

    Returns:
      {"rgb": (..., 3), "opacity": (...), "depth": (...) (expected distance of the
      visible surface, 0 where nothing is hit), "orientation": (...)}.

    Raises:
      ValueError: bad ray shapes, sample count or segment.
    """
    _check_rays(rays, near, far, num_samples)
    field.check_grid(grid)
    shading = unlit() if shading is None else shading
    delta = (far - near) / num_samples
    offset = 0.5 if key is None else jax.random.uniform(key, rays.origins.shape[:-1] + (1,))
    s = near + (jnp.arange(num_samples, dtype=jnp.float32) + offset) * delta  # (..., S)
    points = rays.origins[..., None, :] + s[..., None] * rays.directions[..., None, :]
    grad = field.density_gradient(grid.density, bound)
    stacked = jnp.concatenate([grid.density[..., None], grid.albedo, grad], axis=-1)
    values = field.trilinear(stacked, points, bound)  # (..., S, 7)
    sigma, albedo, g = values[..., 0], values[..., 1:4], values[..., 4:7]
    normal = -g / (jnp.linalg.norm(g, axis=-1, keepdims=True) + 1e-6)
    optical = jnp.maximum(sigma, 0.0) * delta
    alpha = -jnp.expm1(-optical)
    transmittance = jnp.exp(-(jnp.cumsum(optical, axis=-1) - optical))
    weights = alpha * transmittance  # (..., S)
    colour = shade(albedo, normal, shading)
    opacity = jnp.sum(weights, axis=-1)
    bg = jnp.ones(3, jnp.float32) if background is None else background
    rgb = jnp.sum(weights[..., None] * colour, axis=-2) + (1.0 - opacity[..., None]) * bg
    facing = jnp.sum(normal * rays.directions[..., None, :], axis=-1)
    return {
        "rgb": rgb,
        "opacity": opacity,
        "depth": jnp.sum(weights * s, axis=-1) / jnp.maximum(opacity, 1e-6),
        "orientation": jnp.sum(weights * jnp.square(jnp.maximum(facing, 0.0)), axis=-1),
    }


def shade(albedo: Array, normal: Array, shading: Shading) -> Array:
    """Lambertian colour of samples: albedo (..., 3) and unit normals (..., 3) -> (..., 3)."""
    base = albedo + shading.textureless * (GREY - albedo)
    diffuse = jnp.maximum(jnp.sum(normal * shading.light, axis=-1, keepdims=True), 0.0)
    return base * (shading.ambient + (1.0 - shading.ambient) * diffuse)


def render(
    grid: field.Grid,
    pose: camera.Pose,
    *,
    height: int,
    width: int,
    fov: float,
    radius: float,
    bound: float = 1.0,
    **ray_options,
) -> dict[str, Array]:
    """Renders an image from ``pose`` (a camera at distance ``radius`` from the origin).

    Args:
      grid, bound: as in :func:`render_rays`.
      pose: the camera (see :mod:`camera`); height, width, fov: its image.
      radius: the camera's distance from the origin (sets the ray segment).
      **ray_options: :func:`render_rays`'s ``num_samples``, ``background``, ``shading``
        and ``key``; ``background`` may be a colour (3,) or, e.g. from
        :func:`field.background`, an image (H, W, 3).

    Returns:
      :func:`render_rays`'s outputs with leading shape (H, W).
    """
    rays = camera.pixel_rays(pose, height, width, fov)
    near, far = ray_bounds(radius, bound)
    return render_rays(grid, rays, near=near, far=far, bound=bound, **ray_options)


def _check_rays(rays: camera.Rays, near: float, far: float, num_samples: int) -> None:
    if rays.origins.shape != rays.directions.shape or rays.origins.shape[-1:] != (3,):
        raise ValueError(
            "ray origins and directions must share a shape (..., 3); got "
            f"{rays.origins.shape} and {rays.directions.shape}."
        )
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}.")
    if not 0.0 <= near < far:
        raise ValueError(f"need 0 <= near < far; got near={near}, far={far}.")
