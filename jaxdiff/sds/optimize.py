"""Score distillation of a voxel radiance field from a view-conditioned image diffusion model.

Each step renders a few random views (azimuth uniform over a turn, elevation in the
renders' range, a light near the camera, sometimes unlit albedo or textureless grey as in
DreamFusion), conditions the model on each view's label (e.g. shape class and azimuth bin),
and follows the SDS gradient (:mod:`jaxdiff.sds.score`) plus regularisers with Adam:

- opacity: mean sqrt(opacity^2 + 0.01) (DreamFusion's penalty on accumulated alpha);
- entropy: mean binary entropy of the opacity (solid objects, no haze);
- orientation: Ref-NeRF's penalty on visible normals that face away from the camera.

The field starts as a density blob (``field.density_prior``), and the background is a
smooth function of the ray direction that is learnt with the object.

Example::

  eps_fn = score.guided_eps_fn(model_fn, "v", process, guidance=20.0, null_label=32)
  label_fn = functools.partial(shapes3d.view_label, shapes3d.class_index("torus"))
  params, history = optimize.optimize(eps_fn, process, label_fn, optimize.Settings())
  frames = optimize.turntable(params, optimize.Settings())   # (16, 32, 32, 3) in [0, 1]
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdiff._process import Process
from jaxdiff.data import shapes3d
from jaxdiff.render import camera as camera_lib
from jaxdiff.render import field, volume
from jaxdiff.sds import score


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything one optimisation reads (defaults: a 32^3 field, 600 steps of 4 views).

    Attributes:
      num_steps: optimisation steps.
      views_per_step: views rendered (and scored) per step.
      resolution: voxel grid resolution R.
      num_samples: samples per ray.
      learning_rate: Adam step size on the raw field parameters.
      guidance: classifier-free guidance weight w (DreamFusion uses large w).
      weighting: w(t), a key of ``score.WEIGHTINGS``.
      t_min, t_max, t_end, anneal: the t range and its annealing (``score.t_range``).
      blob_amplitude, blob_radius, blob_offset: the density blob (``field.density_prior``).
      opacity, entropy, orientation: regulariser weights.
      p_unlit: probability that a view shows plain albedo (no lighting).
      p_textureless: probability that a view is shaded without albedo (grey).
      jitter: stratified (random) sample positions along the rays.
      camera: cameras and image size (those of the renders the model learnt).
      seed: seeds the views, t, noise and ray jitter.
    """

    num_steps: int = 600
    views_per_step: int = 4
    resolution: int = 32
    num_samples: int = 64
    learning_rate: float = 0.05
    guidance: float = 20.0
    weighting: str = "sigma2"
    t_min: float = 0.02
    t_max: float = 0.98
    t_end: float = 0.5
    anneal: str = "linear"
    blob_amplitude: float = 10.0
    blob_radius: float = 0.5
    blob_offset: float = 5.0
    opacity: float = 0.0
    entropy: float = 1e-3
    orientation: float = 1e-2
    p_unlit: float = 0.2
    p_textureless: float = 0.1
    jitter: bool = True
    camera: shapes3d.Camera = shapes3d.CAMERA
    seed: int = 0

    def check(self) -> None:
        """Raises ValueError naming the first field out of range."""
        counts = ("num_steps", "views_per_step", "num_samples")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.resolution < 2:
            raise ValueError(f"resolution must be >= 2; got {self.resolution}.")
        for name in ("learning_rate", "blob_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}.")
        for name in ("guidance", "opacity", "entropy", "orientation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}.")
        p_unlit, p_textureless = self.p_unlit, self.p_textureless
        if not (p_unlit >= 0 and p_textureless >= 0 and p_unlit + p_textureless <= 1):
            raise ValueError(
                f"p_unlit and p_textureless must be >= 0 with a sum <= 1; got {self.p_unlit} "
                f"and {self.p_textureless}."
            )
        score.check_name(self.weighting, score.WEIGHTINGS, "weighting")
        score.t_range(0, self.num_steps, t_min=self.t_min, t_max=self.t_max, t_end=self.t_end,
                      schedule=self.anneal)  # fmt: skip
        camera_lib.check_elevation(max(map(abs, self.camera.elevation)))

    def prior(self) -> jax.Array:
        """The density blob of this field (R, R, R)."""
        return field.density_prior(
            self.resolution,
            amplitude=self.blob_amplitude,
            radius=self.blob_radius,
            offset=self.blob_offset,
        )


def draw_views(rng: np.random.Generator, n: int, settings: Settings) -> dict[str, np.ndarray]:
    """``n`` random views: azimuth, elevation, light, ambient, textureless (float32 arrays).

    Cameras and lights are drawn as the renders' (``shapes3d.random_views``); then a view is
    unlit (ambient 1) with probability ``p_unlit`` or textureless with ``p_textureless``.
    """
    azimuth, elevation, light, ambient = shapes3d.random_views(rng, n, settings.camera)
    mode = rng.uniform(size=n)
    unlit = mode < settings.p_unlit
    textureless = (mode >= settings.p_unlit) & (mode < settings.p_unlit + settings.p_textureless)
    ambient = np.where(unlit, 1.0, ambient).astype(np.float32)
    return dict(
        azimuth=azimuth,
        elevation=elevation,
        light=light,
        ambient=ambient,
        textureless=textureless.astype(np.float32),
    )


def render_views(params, prior, views: dict, settings: Settings, key=None, background=None):
    """Renders the field from each view: ``volume.render_rays`` outputs with a batch axis.

    Args:
      params: raw field parameters (``field.init_params``).
      prior: the density blob (``Settings.prior``).
      views: arrays of shape (B,) / (B, 3) as :func:`draw_views` returns.
      settings: camera and samples per ray.
      key: jitters the ray samples when given.
      background: a fixed colour (3,); None uses the learnt background.

    Returns:
      {"rgb": (B, H, W, 3), "opacity", "depth", "orientation": (B, H, W)}.
    """
    grid, cam = field.activate(params, prior), settings.camera
    near, far = volume.ray_bounds(cam.radius)
    batch = views["azimuth"].shape[0]
    keys = None if key is None else jax.random.split(key, batch)

    def one(az, el, light, ambient, textureless, k=None):
        pose = camera_lib.orbit(az, el, cam.radius)
        rays = camera_lib.pixel_rays(pose, cam.image_size, cam.image_size, cam.fov)
        bg = background
        if bg is None:
            bg = field.background(params["background"], rays.directions)
        shading = volume.Shading(light, ambient, textureless)
        return volume.render_rays(
            grid, rays, near=near, far=far, num_samples=settings.num_samples,
            background=bg, shading=shading, key=k,
        )  # fmt: skip

    names = ("azimuth", "elevation", "light", "ambient", "textureless")
    az, el, light, ambient, textureless = (jnp.asarray(views[n]) for n in names)
    if keys is None:
        return jax.vmap(one)(az, el, light, ambient, textureless)
    return jax.vmap(one)(az, el, light, ambient, textureless, keys)


def regularizers(out: dict, settings: Settings) -> tuple[jax.Array, dict]:
    """(weighted sum, metrics) of the opacity, entropy and orientation penalties."""
    o = jnp.clip(out["opacity"], 1e-5, 1.0 - 1e-5)
    terms = {
        "opacity": jnp.mean(jnp.sqrt(jnp.square(o) + 0.01)),
        "entropy": jnp.mean(-(o * jnp.log(o) + (1.0 - o) * jnp.log1p(-o))),
        "orientation": jnp.mean(out["orientation"]),
    }
    total = sum(getattr(settings, name) * value for name, value in terms.items())
    return jnp.asarray(total), terms


def make_step(eps_fn: Callable, process: Process, settings: Settings, tx):
    """The jitted step ``(params, opt_state, key, views, labels, lo, hi) -> (params, opt_state,
    metrics)``: one Adam step on the SDS surrogate plus regularisers, t ~ U[lo, hi]."""
    prior = settings.prior()

    def loss_fn(params, key, views, labels, lo, hi):
        k_t, k_eps, k_ray = jax.random.split(key, 3)
        out = render_views(params, prior, views, settings, k_ray if settings.jitter else None)
        x = 2.0 * out["rgb"] - 1.0
        t = score.sample_t(k_t, x.shape[0], lo, hi, process)
        g = score.sds_gradient(k_eps, x, t, eps_fn, process, weighting=settings.weighting,
                               label=labels)  # fmt: skip
        reg, metrics = regularizers(out, settings)
        metrics.update(sds_grad=jnp.sqrt(jnp.mean(jnp.square(g))), t=jnp.mean(t))
        metrics["mean_opacity"] = jnp.mean(out["opacity"])
        return score.sds_loss(x, g) + reg, metrics

    @jax.jit
    def step(params, opt_state, key, views, labels, lo, hi):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, key, views, labels, lo, hi)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    return step


def optimize(
    eps_fn: Callable,
    process: Process,
    label_fn: Callable[[np.ndarray], np.ndarray],
    settings: Settings,
    *,
    callback: Callable[[int, dict], None] | None = None,
) -> tuple[dict, list[dict]]:
    """Optimises a field by score distillation.

    Args:
      eps_fn: ``(x_t, t, label=) -> eps_hat`` (``score.guided_eps_fn``), frozen.
      process: the model's diffusion process.
      label_fn: azimuths (B,) in radians -> the model's labels (B,) for those views.
      settings: the optimisation's settings.
      callback: called as ``callback(step, metrics)`` after every step (host floats).

    Returns:
      (raw field parameters, one metrics dict per step).
    """
    settings.check()
    params = field.init_params(settings.resolution)
    tx = optax.adam(settings.learning_rate)
    opt_state, step = tx.init(params), make_step(eps_fn, process, settings, tx)
    root, rng = jax.random.key(settings.seed), np.random.default_rng(settings.seed)
    history = []
    for i in range(settings.num_steps):
        views = draw_views(rng, settings.views_per_step, settings)
        labels = np.asarray(label_fn(views["azimuth"]), np.int32)
        lo, hi = score.t_range(i, settings.num_steps, t_min=settings.t_min,
                               t_max=settings.t_max, t_end=settings.t_end,
                               schedule=settings.anneal)  # fmt: skip
        key = jax.random.fold_in(root, i)
        params, opt_state, metrics = step(params, opt_state, key, views, labels, lo, hi)
        history.append({k: float(v) for k, v in metrics.items()})
        if callback is not None:
            callback(i, history[-1])
    return params, history


def turntable_views(num_views: int, elevation_deg: float) -> dict[str, np.ndarray]:
    """Evenly spaced azimuths at one elevation, lit from above the camera (ambient 0.4)."""
    camera_lib.check_elevation(elevation_deg)
    azimuth = camera_lib.turntable(num_views)
    elevation = np.full(num_views, np.deg2rad(elevation_deg), np.float32)
    light = camera_lib.orbit_position(azimuth, elevation + 0.35, 1.0)
    return dict(
        azimuth=azimuth,
        elevation=elevation,
        light=np.asarray(light, np.float32),
        ambient=np.full(num_views, 0.4, np.float32),
        textureless=np.zeros(num_views, np.float32),
    )


def turntable(
    params: dict, settings: Settings, num_views: int = 16, elevation_deg: float = 20.0
) -> np.ndarray:
    """Renders ``num_views`` views around the object on white: (V, H, W, 3) in [0, 1]."""
    views = turntable_views(num_views, elevation_deg)
    out = jax.jit(lambda p: render_views(p, settings.prior(), views, settings,
                                         background=jnp.ones(3)))(params)  # fmt: skip
    return np.clip(np.asarray(out["rgb"]), 0.0, 1.0)
