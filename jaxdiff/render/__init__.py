"""A differentiable volume renderer in JAX: turntable cameras, a voxel radiance field, and
alpha compositing with Lambertian shading (for score distillation, ``jaxdiff.sds``).

Example::

  from jaxdiff.render import camera, field, volume
  params = field.init_params(32)
  grid = field.activate(params, field.density_prior(32))
  pose = camera.orbit(azimuth, elevation, radius=3.2)
  out = volume.render(grid, pose, height=32, width=32, fov=40.0, radius=3.2)
  out["rgb"]        # (32, 32, 3) in [0, 1]; also "opacity", "depth", "orientation"
"""

from jaxdiff.render import camera as camera
from jaxdiff.render import field as field
from jaxdiff.render import volume as volume
