"""Cameras on a turntable: look-at poses around the origin and one ray per pixel.

World frame: z is up; a camera at azimuth a and elevation e sits at
``radius * (cos e cos a, cos e sin a, sin e)`` and looks at the origin, so azimuth 0 views
the object's +x side and azimuth pi/2 its +y side. Camera frame as OpenGL: x right, y up,
the camera looks along -z; image row 0 is the top, column 0 the left.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxdiff.render import camera
  >>> pose = camera.orbit(jnp.float32(0.0), jnp.float32(0.0), radius=3.0)
  >>> rays = camera.pixel_rays(pose, height=4, width=4, fov=40.0)
  >>> rays.origins.shape, rays.directions.shape
  ((4, 4, 3), (4, 4, 3))
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdiff._types import Array

MAX_ELEVATION = 89.0  # degrees; the look-at frame is undefined straight above the object


class Pose(NamedTuple):
    """A camera pose.

    Attributes:
      origin: (3,) camera centre in world coordinates.
      rotation: (3, 3) camera-to-world rotation; columns are the camera's right, up and
        backward (-viewing direction) axes in world coordinates.
    """

    origin: Array
    rotation: Array


class Rays(NamedTuple):
    """Rays ``origin + s * direction`` (s >= 0).

    Attributes:
      origins: (..., 3).
      directions: (..., 3), unit length.
    """

    origins: Array
    directions: Array


def look_at(eye: Array, target: Array | None = None, up: Array | None = None) -> Pose:
    """The pose of a camera at ``eye`` looking at ``target`` with ``up`` roughly up.

    Args:
      eye: (3,) camera centre.
      target: (3,) point looked at (default: the origin).
      up: (3,) world up (default: +z); must not be parallel to ``target - eye``.

    Returns:
      A :class:`Pose` whose rotation maps camera axes (right, up, backward) to world.
    """
    eye = jnp.asarray(eye, jnp.float32)
    target = jnp.zeros(3, jnp.float32) if target is None else jnp.asarray(target, jnp.float32)
    up = jnp.array([0.0, 0.0, 1.0]) if up is None else jnp.asarray(up, jnp.float32)
    backward = _normalize(eye - target)
    right = _normalize(jnp.cross(up, backward))
    true_up = jnp.cross(backward, right)
    return Pose(eye, jnp.stack([right, true_up, backward], axis=-1))


def orbit(azimuth: Array, elevation: Array, radius: float) -> Pose:
    """The pose at ``azimuth`` and ``elevation`` (radians) on a sphere around the origin.

    Args:
      azimuth: scalar, radians (0 looks at the object's +x side).
      elevation: scalar, radians above the xy plane, |elevation| < 89 degrees.
      radius: distance from the origin.

    Returns:
      A :class:`Pose` looking at the origin with +z up.
    """
    return look_at(orbit_position(azimuth, elevation, radius))


def orbit_position(azimuth: ArrayLike, elevation: ArrayLike, radius: float) -> Array:
    """``radius * (cos e cos a, cos e sin a, sin e)``: (..., 3) for azimuth/elevation (...)."""
    azimuth, elevation = jnp.asarray(azimuth), jnp.asarray(elevation)
    cos_e = jnp.cos(elevation)
    unit = jnp.stack([cos_e * jnp.cos(azimuth), cos_e * jnp.sin(azimuth), jnp.sin(elevation)], -1)
    return radius * unit


def pixel_rays(pose: Pose, height: int, width: int, fov: float) -> Rays:
    """One ray through the centre of every pixel of a pinhole camera.

    Args:
      pose: the camera pose.
      height: image rows H.
      width: image columns W.
      fov: horizontal field of view, degrees in (0, 180).

    Returns:
      :class:`Rays` with origins and unit directions of shape (H, W, 3).

    Raises:
      ValueError: a non-positive image size or a field of view outside (0, 180).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive; got height={height}, width={width}.")
    if not 0.0 < fov < 180.0:
        raise ValueError(f"fov must be in (0, 180) degrees; got {fov}.")
    focal = 0.5 * width / np.tan(0.5 * np.deg2rad(fov))
    cols = (jnp.arange(width, dtype=jnp.float32) + 0.5 - 0.5 * width) / focal
    rows = -(jnp.arange(height, dtype=jnp.float32) + 0.5 - 0.5 * height) / focal
    x, y = jnp.meshgrid(cols, rows)  # (H, W) each
    camera_dirs = jnp.stack([x, y, -jnp.ones_like(x)], axis=-1)
    directions = _normalize(camera_dirs @ pose.rotation.T)
    return Rays(jnp.broadcast_to(pose.origin, directions.shape), directions)


def turntable(num_views: int, start: float = 0.0) -> np.ndarray:
    """``num_views`` azimuths (radians) evenly spaced over a full turn from ``start``.

    Raises:
      ValueError: ``num_views`` < 1.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1; got {num_views}.")
    return (start + 2.0 * np.pi * np.arange(num_views) / num_views).astype(np.float32)


def check_elevation(elevation_deg: float) -> None:
    """Raises ValueError unless |elevation| < :data:`MAX_ELEVATION` degrees."""
    if not abs(elevation_deg) < MAX_ELEVATION:
        raise ValueError(
            f"elevation must be within +-{MAX_ELEVATION} degrees (the look-at frame is "
            f"undefined straight above or below); got {elevation_deg}."
        )


def _normalize(v: Array) -> Array:
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)
