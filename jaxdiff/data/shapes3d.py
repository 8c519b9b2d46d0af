"""Seeded renders of procedural 3D shapes that look different from every side.

Four classes, each defined analytically (occupancy and colour of a point) in a canonical
frame (z up; azimuth 0 looks at the +x side, azimuth 90 degrees at the +y side):

- ``torus``: an upright ring facing +-x, red on its +x half and blue on its -x half;
- ``mug``: a hollow teal cylinder with an orange handle on its +y side;
- ``die``: a rounded cube with six differently coloured faces;
- ``lblock``: an L of a purple upright and a green foot pointing to +x, its tip orange.

An instance jitters the size (x0.85..1.05) and the colours (+-0.06 per channel); it is
voxelised on a grid (density 40 inside, 0 outside) and rendered with ``jaxdiff.render``
(the renderer that score distillation differentiates) from random azimuths (uniform over
a turn), elevations (uniform in :data:`CAMERA`'s range) and lights near the camera, on a
white background. Everything follows from the split's seed: the same call gives the same
bytes.

A view-conditioned model is an ordinary class-conditional model on the label
``class * VIEW_BINS + view_bin(azimuth)`` (:func:`view_label`): 4 classes x 8 bins of 45
degrees = 32 labels, so the U-Net, classifier-free guidance and samplers work unchanged.

Example::

  renders = shapes3d.generate("shapes3d", "train")
  renders.images.shape      # (4096, 32, 32, 3) uint8
  source = shapes3d.source("shapes3d", "train")   # a data source of view labels 0..31
"""

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jaxdiff.data.sources import ArraySource

VERSION = 1  # bump when the renders change (names the cache files)
CLASSES = ("torus", "mug", "die", "lblock")
VIEW_BINS = 8
DENSITY = 40.0  # extinction per unit length inside a shape


@dataclasses.dataclass(frozen=True)
class Camera:
    """The cameras of the renders (score distillation samples the same ones).

    Attributes:
      radius: distance from the origin (the shapes fit in [-1, 1]^3).
      fov: horizontal field of view, degrees.
      elevation: (low, high) range of elevations, degrees.
      image_size: rendered images are image_size x image_size RGB.
      num_samples: samples per ray.
    """

    radius: float = 3.2
    fov: float = 40.0
    elevation: tuple[float, float] = (0.0, 40.0)
    image_size: int = 32
    num_samples: int = 64


CAMERA = Camera()


@dataclasses.dataclass(frozen=True)
class Spec:
    """A dataset: instances per class and views per instance of each split.

    Attributes:
      instances: {split: instances per class}.
      views: views rendered of each instance.
      resolution: voxel grid resolution of the shapes.
    """

    instances: dict
    views: int = 16
    resolution: int = 48


DATASETS = {
    "shapes3d": Spec(instances={"train": 64, "test": 8}),  # 4,096 train / 512 test images
    "shapes3d_tiny": Spec(instances={"train": 1, "test": 1}, views=4, resolution=24),  # tests
}
SPLIT_SEEDS = {"train": 0, "test": 1}


class Renders(NamedTuple):
    """Rendered views and what they show.

    Attributes:
      images: (N, H, W, 3) uint8.
      classes: (N,) int32 index into :data:`CLASSES`.
      azimuth: (N,) float32 radians in [0, 2 pi).
      elevation: (N,) float32 radians.
      labels: (N,) int32 view labels ``class * VIEW_BINS + view_bin(azimuth)``.
    """

    images: np.ndarray
    classes: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    labels: np.ndarray


def class_index(name: str) -> int:
    """The index of a shape class name.

    Raises:
      ValueError: an unknown name (the message lists the valid ones).
    """
    if name not in CLASSES:
        raise ValueError(f"unknown shape {name!r}; valid shapes: {', '.join(CLASSES)}.")
    return CLASSES.index(name)


def view_bin(azimuth, bins: int = VIEW_BINS):
    """The azimuth bin (0..bins-1) of azimuths in radians; bin 0 is centred on azimuth 0.

    Works on NumPy and JAX arrays (returns int32 of the same kind).
    """
    width = 2.0 * np.pi / bins
    xp = np if isinstance(azimuth, (float, int, np.ndarray, np.number)) else _jnp()
    k = xp.floor(xp.mod(xp.asarray(azimuth) + 0.5 * width, 2.0 * np.pi) / width)
    return xp.mod(k, bins).astype(xp.int32)


def view_label(class_id, azimuth, bins: int = VIEW_BINS):
    """``class * bins + view_bin(azimuth)``: the label of a view-conditioned model."""
    return class_id * bins + view_bin(azimuth, bins)


def _jnp():
    import jax.numpy as jnp

    return jnp


# --- the shapes: (points (N, 3), colours {part: (3,)}) -> (occupancy (N,), colour (N, 3)) ---


def _torus(p, colours):
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ring = np.hypot(np.hypot(y, z) - 0.55, x) <= 0.22
    colour = np.where((x >= 0)[:, None], colours["front"], colours["back"])
    return ring, colour


def _mug(p, colours):
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    r = np.hypot(x, y)
    cup = (r <= 0.5) & (z >= -0.6) & (z <= 0.5)
    hollow = (r < 0.4) & (z > -0.5)
    ring = np.hypot(np.hypot(y - 0.5, z + 0.05) - 0.27, x) <= 0.08
    handle = ring & (y > 0.45)
    colour = np.where((r < 0.45)[:, None], colours["inside"], colours["body"])
    colour = np.where(handle[:, None], colours["handle"], colour)
    return (cup & ~hollow) | handle, colour


def _die(p, colours):
    occupied = np.sum(p**4, axis=1) ** 0.25 <= 0.62
    axis = np.argmax(np.abs(p), axis=1)
    sign = np.take_along_axis(p, axis[:, None], axis=1)[:, 0] >= 0
    faces = np.stack([colours[f"face{i}"] for i in range(6)])  # +x, -x, +y, -y, +z, -z
    return occupied, faces[2 * axis + (~sign).astype(int)]


def _lblock(p, colours):
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    depth = np.abs(y) <= 0.3
    upright = depth & (x >= -0.6) & (x <= -0.15) & (np.abs(z) <= 0.7)
    foot = depth & (x >= -0.6) & (x <= 0.65) & (z >= -0.7) & (z <= -0.25)
    colour = np.where(upright[:, None], colours["upright"], colours["foot"])
    colour = np.where((foot & (x > 0.4))[:, None], colours["tip"], colour)
    return upright | foot, colour


SHAPES: dict[str, tuple[Callable, dict]] = {
    "torus": (_torus, {"front": (0.85, 0.2, 0.15), "back": (0.2, 0.35, 0.85)}),
    "mug": (
        _mug,
        {"body": (0.15, 0.65, 0.6), "handle": (0.95, 0.55, 0.1), "inside": (0.92, 0.92, 0.85)},
    ),
    "die": (
        _die,
        {
            "face0": (0.85, 0.15, 0.15),
            "face1": (0.1, 0.75, 0.8),
            "face2": (0.2, 0.7, 0.2),
            "face3": (0.8, 0.2, 0.75),
            "face4": (0.95, 0.85, 0.15),
            "face5": (0.15, 0.25, 0.85),
        },
    ),
    "lblock": (
        _lblock,
        {"upright": (0.55, 0.3, 0.8), "foot": (0.3, 0.75, 0.3), "tip": (0.95, 0.5, 0.1)},
    ),
}


def voxelize(shape: str, resolution: int, rng: np.random.Generator | None = None):
    """A shape instance on a voxel grid over [-1, 1]^3.

    Args:
      shape: a name in :data:`CLASSES`.
      resolution: R grid points per axis.
      rng: jitters size and colours when given (None: the canonical instance).

    Returns:
      ``jaxdiff.render.field.Grid`` with density (R, R, R) (:data:`DENSITY` inside) and
      albedo (R, R, R, 3).
    """
    import jax.numpy as jnp

    from jaxdiff.render import field

    fn, colours = SHAPES[CLASSES[class_index(shape)]]
    scale = 1.0 if rng is None else rng.uniform(0.85, 1.05)
    if rng is not None:
        colours = {
            k: np.clip(np.add(v, rng.uniform(-0.06, 0.06, 3)), 0, 1) for k, v in colours.items()
        }
    points = np.asarray(field.coordinates(resolution)).reshape(-1, 3) / scale
    occupied, colour = fn(points, {k: np.asarray(v, np.float32) for k, v in colours.items()})
    occupied = occupied.reshape((resolution,) * 3)
    density = _smooth(DENSITY * occupied.astype(np.float32))
    albedo = _spread(colour.reshape((resolution,) * 3 + (3,)).astype(np.float32), occupied)
    return field.Grid(jnp.asarray(density), jnp.asarray(albedo))


def _spread(albedo: np.ndarray, occupied: np.ndarray, steps: int = 2) -> np.ndarray:
    """Gives empty voxels next to a shape the mean colour of their occupied neighbours.

    Trilinear interpolation near a surface mixes in the albedo of empty voxels; this keeps
    surface colours from blending with whatever the colour function says outside.
    """
    albedo, known = albedo.copy(), occupied.copy()
    for _ in range(steps):
        total, count = np.zeros_like(albedo), np.zeros(known.shape, np.float32)
        for axis in range(3):
            for shift in (-1, 1):
                k = np.roll(known, shift, axis)
                total += np.roll(albedo * known[..., None], shift, axis)
                count += k
        fill = ~known & (count > 0)
        albedo[fill] = total[fill] / count[fill][:, None]
        known = known | fill
    return albedo


def _smooth(grid: np.ndarray) -> np.ndarray:
    """A [1, 2, 1] / 4 filter along each axis (softer surfaces, smoother normals)."""
    for axis in range(3):
        padded = np.pad(grid, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="edge")
        lo, mid, hi = (np.take(padded, range(i, i + grid.shape[axis]), axis) for i in range(3))
        grid = 0.25 * lo + 0.5 * mid + 0.25 * hi
    return grid.astype(np.float32)


@functools.cache
def _view_renderer(camera: Camera):
    """A jitted ``(grid, azimuth (V,), elevation (V,), light (V, 3), ambient (V,)) -> rgb``."""
    import jax

    from jaxdiff.render import camera as camera_lib
    from jaxdiff.render import volume

    def one(grid, azimuth, elevation, light, ambient):
        pose = camera_lib.orbit(azimuth, elevation, camera.radius)
        size = camera.image_size
        shading = volume.Shading(light, ambient, jax.numpy.float32(0.0))
        out = volume.render(
            grid, pose, height=size, width=size, fov=camera.fov, radius=camera.radius,
            num_samples=camera.num_samples, shading=shading,
        )  # fmt: skip
        return out["rgb"]

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0)))


def random_views(rng: np.random.Generator, n: int, camera: Camera = CAMERA):
    """(azimuth, elevation, light (n, 3), ambient) of ``n`` random views, float32 arrays.

    The light points from the object towards the camera, raised and turned by up to ~35
    degrees at random; ambient is uniform in [0.3, 0.5].
    """
    azimuth = rng.uniform(0.0, 2.0 * np.pi, n)
    elevation = np.deg2rad(rng.uniform(*camera.elevation, n))
    light_az = azimuth + rng.uniform(-0.6, 0.6, n)
    light_el = np.clip(elevation + rng.uniform(0.1, 0.6, n), -1.4, 1.4)
    light = np.stack(
        [
            np.cos(light_el) * np.cos(light_az),
            np.cos(light_el) * np.sin(light_az),
            np.sin(light_el),
        ],
        axis=-1,
    )
    ambient = rng.uniform(0.3, 0.5, n)
    f32 = lambda a: np.asarray(a, np.float32)
    return f32(azimuth), f32(elevation), f32(light), f32(ambient)


@functools.lru_cache(maxsize=4)
def generate(name: str = "shapes3d", split: str = "train", cache_dir: str | None = None) -> Renders:
    """Renders a dataset split (the same arguments give the same arrays).

    Kept per process; with ``cache_dir``, also in ``cache_dir/NAME-SPLIT-vVERSION.npz``
    (written on the first call, read afterwards: rendering 4,096 views takes minutes).

    Args:
      name: a key of :data:`DATASETS`.
      split: "train" or "test" (different instances, seeds 0 and 1).
      cache_dir: a directory for the rendered arrays (created), or None.

    Returns:
      :class:`Renders`, ordered by class, then instance, then view.

    Raises:
      ValueError: an unknown dataset or split (the message lists the valid ones).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown shapes3d dataset {name!r}; valid: {sorted(DATASETS)}.")
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown shapes3d split {split!r}; valid: {sorted(SPLIT_SEEDS)}.")
    if not cache_dir:
        return _render_split(name, split)
    path = os.path.join(cache_dir, f"{name}-{split}-v{VERSION}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return Renders(*(f[k] for k in Renders._fields))
    renders = _render_split(name, split)
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path + ".tmp.npz", **renders._asdict())
    os.replace(path + ".tmp.npz", path)  # never a half-written cache file
    return renders


def _render_split(name: str, split: str) -> Renders:
    spec, render = DATASETS[name], _view_renderer(CAMERA)
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    parts: list[tuple] = []
    for c, shape in enumerate(CLASSES):
        for _ in range(spec.instances[split]):
            grid = voxelize(shape, spec.resolution, rng)
            az, el, light, ambient = random_views(rng, spec.views)
            rgb = np.asarray(render(grid, az, el, light, ambient))
            parts.append((rgb, np.full(spec.views, c), az, el))
    rgb, classes, azimuth, elevation = (np.concatenate(a) for a in zip(*parts, strict=True))
    images = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    classes = classes.astype(np.int32)
    labels = view_label(classes, azimuth).astype(np.int32)
    return Renders(images, classes, azimuth, elevation, labels)


def source(
    name: str = "shapes3d", split: str = "train", data_dir: str | None = None, **unused
) -> ArraySource:
    """A data source of the renders with view labels (``sources.build("shapes3d")``).

    ``data_dir`` (``--config.data.data_dir``) caches the renders (see :func:`generate`).
    """
    renders = generate(name, split, data_dir or None)
    return ArraySource(renders.images, renders.labels)
