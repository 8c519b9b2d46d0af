"""The volume renderer against analytic answers: empty fields, slabs, single voxels, cameras."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.render import camera, field, volume

pytestmark = pytest.mark.usefixtures("fast_compiles")

RES = 9  # grid points at -1, -0.75, ..., 1: spacing h = 0.25, the centre point at the origin
H = 0.25
# near = 1, far = 5, 64 samples: delta = 1/16 and every kink of the trilinear field (z on the
# grid's 0.25 spacing) falls on an interval boundary, so the midpoint rule is exact.
SEGMENT = dict(near=1.0, far=5.0, num_samples=64)
STATIC = ("near", "far", "num_samples", "bound")


@functools.partial(jax.jit, static_argnames=STATIC)
def render_rays(grid, rays, background=None, shading=None, **segment):
    """The renderer, compiled once per shape (the tests share shapes: 5 rays, 9^3 grids)."""
    shading = volume.unlit() if shading is None else shading
    background = jnp.ones(3) if background is None else background
    return volume.render_rays(grid, rays, background=background, shading=shading, **segment)


def constant_grid(sigma, res=RES, colour=(0.9, 0.1, 0.2)):
    return field.Grid(
        jnp.full((res,) * 3, sigma, jnp.float32),
        jnp.broadcast_to(jnp.asarray(colour, jnp.float32), (res,) * 3 + (3,)),
    )


def axis_rays(xy):
    """Rays from z = -3 along +z through the points (x, y)."""
    xy = jnp.asarray(xy, jnp.float32)
    origins = jnp.concatenate([xy, jnp.full((len(xy), 1), -3.0)], axis=-1)
    return camera.Rays(origins, jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0]), origins.shape))


def test_empty_field_renders_the_background_exactly():
    grid = field.Grid(jnp.zeros((RES,) * 3), jnp.full((RES,) * 3 + (3,), 0.5))
    pose = camera.orbit(jnp.float32(0.7), jnp.float32(0.3), radius=3.0)
    rays = camera.pixel_rays(pose, 1, 5, fov=50.0)
    rays = camera.Rays(rays.origins[0], rays.directions[0])  # (5, 3)
    bg = field.background(jnp.arange(12.0).reshape(4, 3) / 10 - 0.5, rays.directions)
    out = render_rays(grid, rays, background=bg, **SEGMENT)
    np.testing.assert_array_equal(out["rgb"], bg)
    np.testing.assert_array_equal(out["opacity"], 0.0)
    np.testing.assert_array_equal(out["depth"], 0.0)
    lit = volume.lambertian(jnp.array([1.0, 0.0, 0.0]), ambient=0.2, textureless=True)
    out = render_rays(grid, rays, shading=lit, **SEGMENT)
    np.testing.assert_array_equal(out["rgb"], 1.0)


@pytest.mark.parametrize("sigma", [0.1, 1.0, 3.0])
def test_constant_slab_opacity_is_one_minus_exp_of_sigma_times_length(sigma):
    """The field fills the cube [-1, 1]^3: every axis-parallel ray inside crosses length 2."""
    colour = jnp.array([0.9, 0.1, 0.2])
    rays = axis_rays([[0.0, 0.0], [0.3, -0.5], [0.95, 0.95], [-0.2, 0.6], [-0.9, -0.1]])
    out = render_rays(constant_grid(sigma), rays, **SEGMENT)
    expected = 1.0 - np.exp(-2.0 * sigma)
    np.testing.assert_allclose(out["opacity"], expected, rtol=1e-5)
    rgb = expected * colour[None] + (1.0 - expected)
    np.testing.assert_allclose(out["rgb"], jnp.broadcast_to(rgb, (5, 3)), rtol=1e-5)
    # Expected depth of the first hit: 2 + 1/sigma - 2 e^{-2 sigma} / (1 - e^{-2 sigma})
    # (camera at distance 3, slab from 2 to 4), up to the midpoint rule's O(delta^2).
    depth = 2.0 + 1.0 / sigma - 2.0 * np.exp(-2 * sigma) / expected
    np.testing.assert_allclose(out["depth"], depth, atol=2e-3)


def test_rays_that_miss_the_cube_see_only_background():
    rays = axis_rays([[1.2, 0.0], [0.0, -1.5], [-1.01, 0.0], [3.0, 3.0], [0.5, 1.05]])
    out = render_rays(constant_grid(5.0), rays, **SEGMENT)
    np.testing.assert_array_equal(out["opacity"], 0.0)
    np.testing.assert_array_equal(out["rgb"], 1.0)


def test_a_single_voxel_renders_its_trilinear_tent():
    """Density sigma0 at the centre grid point only: trilinear interpolation makes the tent
    sigma0 (1 - |x|/h)(1 - |y|/h)(1 - |z|/h), whose integral along z is sigma0 h (...)(...)."""
    sigma0 = 40.0
    density = jnp.zeros((RES,) * 3).at[4, 4, 4].set(sigma0)
    grid = field.Grid(density, jnp.full((RES,) * 3 + (3,), 0.25))
    xy = np.array([[0.0, 0.0], [0.1, 0.0], [0.05, -0.15], [0.2, 0.2], [0.3, 0.0]])
    out = render_rays(grid, axis_rays(xy), background=jnp.zeros(3), **SEGMENT)
    tent = np.prod(np.maximum(1.0 - np.abs(xy) / H, 0.0), axis=-1)
    expected = 1.0 - np.exp(-sigma0 * H * tent)
    np.testing.assert_allclose(out["opacity"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["rgb"], 0.25 * expected[:, None] * np.ones(3), rtol=1e-5)


@jax.jit
def _opacity_image(density, azimuth):
    grid = field.Grid(density, jnp.ones((RES,) * 3 + (3,)))
    pose = camera.orbit(azimuth, jnp.float32(0.0), radius=3.0)
    return volume.render(grid, pose, height=15, width=15, fov=40.0, radius=3.0)["opacity"]


def image_of_voxel_at(index, azimuth):
    density = jnp.zeros((RES,) * 3).at[index].set(50.0)
    return np.asarray(_opacity_image(density, jnp.float32(azimuth)))


def centroid(image):
    rows, cols = np.indices(image.shape)
    return np.sum(rows * image) / image.sum(), np.sum(cols * image) / image.sum()


def test_image_orientation_follows_the_turntable_convention():
    """Azimuth 0 views the +x side: +y appears on the right, +z at the top."""
    row, col = centroid(image_of_voxel_at((4, 4, 4), 0.0))
    assert abs(row - 7) < 1e-3 and abs(col - 7) < 1e-3  # the origin is the image centre
    _, col = centroid(image_of_voxel_at((4, 6, 4), 0.0))  # y = +0.5
    assert col > 9
    row, _ = centroid(image_of_voxel_at((4, 4, 6), 0.0))  # z = +0.5
    assert row < 5
    _, col = centroid(image_of_voxel_at((4, 6, 4), np.pi / 2))  # seen from +y: in front
    assert abs(col - 7) < 1e-3
    _, col = centroid(image_of_voxel_at((6, 4, 4), np.pi / 2))  # x = +0.5 is on the left
    assert col < 5


def test_lambertian_shading_of_a_lit_and_an_unlit_face():
    """A box face with outward normal +x, seen head-on: full albedo when lit along +x,
    only the ambient part when lit from behind."""
    inside = jnp.all(jnp.abs(field.coordinates(RES)) <= 0.5 + 1e-6, axis=-1)
    grid = field.Grid(jnp.where(inside, 400.0, 0.0), jnp.full((RES,) * 3 + (3,), 0.8))
    yz = jnp.array([[0.0, 0.0], [0.1, 0.0], [0.0, -0.2], [0.2, 0.2], [-0.2, 0.1]])
    origins = jnp.concatenate([jnp.full((5, 1), 3.0), yz], axis=-1)
    rays = camera.Rays(origins, jnp.broadcast_to(jnp.array([-1.0, 0.0, 0.0]), (5, 3)))
    kwargs = dict(background=jnp.zeros(3), **SEGMENT)
    front = render_rays(grid, rays, shading=volume.lambertian([1, 0, 0], 0.25), **kwargs)
    back = render_rays(grid, rays, shading=volume.lambertian([-1, 0, 0], 0.25), **kwargs)
    np.testing.assert_allclose(front["opacity"], 1.0, atol=1e-4)
    np.testing.assert_allclose(front["rgb"], 0.8, atol=1e-3)
    np.testing.assert_allclose(back["rgb"], 0.8 * 0.25, atol=1e-3)
    assert float(front["orientation"].max()) < 1e-6  # the visible normals face the camera


@pytest.mark.parametrize("azimuth,elevation", [(0.0, 0.0), (1.0, 0.5), (-2.5, -0.3), (4.0, 1.2)])
def test_camera_poses_look_at_the_origin(azimuth, elevation):
    pose = camera.orbit(jnp.float32(azimuth), jnp.float32(elevation), radius=2.5)
    np.testing.assert_allclose(jnp.linalg.norm(pose.origin), 2.5, rtol=1e-6)
    rot = np.asarray(pose.rotation)
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-6)
    assert rot[2, 1] > 0  # the camera's up axis points upwards
    rays = camera.pixel_rays(pose, 5, 5, fov=30.0)
    centre = -pose.origin / jnp.linalg.norm(pose.origin)
    np.testing.assert_allclose(rays.directions[2, 2], centre, atol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(rays.directions, axis=-1), 1.0, rtol=1e-6)


def test_opacity_gradient_matches_the_analytic_derivative():
    rays = axis_rays([[0.0, 0.0], [0.3, -0.5], [0.95, 0.95], [-0.2, 0.6], [-0.9, -0.1]])
    albedo = jnp.zeros((RES,) * 3 + (3,))
    opacity = lambda s: jnp.sum(render_rays(field.Grid(s, albedo), rays, **SEGMENT)["opacity"])
    sigma = 0.7
    grad = jax.jit(jax.grad(opacity))(jnp.full((RES,) * 3, sigma))
    # d/dsigma (1 - exp(-2 sigma)) = 2 exp(-2 sigma) per ray, spread over the grid points.
    np.testing.assert_allclose(jnp.sum(grad), 5 * 2.0 * np.exp(-2.0 * sigma), rtol=1e-4)


def test_the_renderer_compiles_and_its_gradient_reaches_every_parameter():
    params = field.init_params(8)
    params["albedo"] = jax.random.normal(jax.random.key(0), params["albedo"].shape)
    prior = field.density_prior(8)

    def loss(p):
        grid = field.activate(p, prior)
        pose = camera.orbit(jnp.float32(0.4), jnp.float32(0.2), radius=3.0)
        rays = camera.pixel_rays(pose, 8, 8, 40.0)
        bg = field.background(p["background"], rays.directions)
        return jnp.sum(volume.render_rays(grid, rays, near=1.2, far=4.8, background=bg)["rgb"])

    grads = jax.jit(jax.grad(loss))(params)
    for name, g in grads.items():
        assert jnp.all(jnp.isfinite(g)) and jnp.any(g != 0), name


def test_bad_input_is_refused_with_a_clear_message():
    grid = constant_grid(1.0)
    rays = axis_rays([[0.0, 0.0]])
    with pytest.raises(ValueError, match="need 0 <= near < far"):
        volume.render_rays(grid, rays, near=3.0, far=1.0)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        volume.render_rays(grid, rays, near=1.0, far=3.0, num_samples=0)
    with pytest.raises(ValueError, match=r"albedo must have shape \(9, 9, 9, 3\)"):
        volume.render_rays(field.Grid(grid.density, grid.albedo[..., :2]), rays, near=1, far=3)
    with pytest.raises(ValueError, match="share a shape"):
        volume.render_rays(grid, camera.Rays(rays.origins, rays.directions[:, :2]), near=1, far=3)
    with pytest.raises(ValueError, match=r"fov must be in \(0, 180\)"):
        camera.pixel_rays(camera.orbit(0.0, 0.0, 3.0), 4, 4, fov=180.0)
    with pytest.raises(ValueError, match="must exceed the cube's half-diagonal"):
        volume.ray_bounds(1.5)
    with pytest.raises(ValueError, match="elevation must be within"):
        camera.check_elevation(90.0)
    with pytest.raises(ValueError, match="ambient must be in"):
        volume.lambertian([0, 0, 1], ambient=1.5)


def test_trilinear_interpolation_reproduces_linear_fields_and_grid_values():
    coords = field.coordinates(5, bound=2.0)  # (5, 5, 5, 3), spacing 1
    a, b = jnp.array([0.5, -1.0, 2.0]), 0.25
    values = jnp.stack([coords @ a + b, jnp.ones(coords.shape[:-1])], axis=-1)  # (5,5,5,2)
    points = jax.random.uniform(jax.random.key(0), (50, 3), minval=-2.0, maxval=2.0)
    out = field.trilinear(values, points, bound=2.0)
    np.testing.assert_allclose(out[:, 0], points @ a + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[:, 1], 1.0, rtol=1e-6)
    at_grid = field.trilinear(values, coords.reshape(-1, 3), bound=2.0)
    np.testing.assert_allclose(at_grid, values.reshape(-1, 2), rtol=1e-6, atol=1e-6)
    outside = field.trilinear(values, jnp.array([[2.01, 0.0, 0.0], [0.0, -3.0, 1.0]]), 2.0)
    np.testing.assert_array_equal(outside, 0.0)


def test_density_blob_background_and_turntable_helpers():
    prior = field.density_prior(9, amplitude=10.0, radius=0.5, offset=5.0)
    assert float(prior[4, 4, 4]) == pytest.approx(5.0) and float(prior[0, 0, 0]) < -4.9
    grid = field.activate(field.init_params(9), prior)
    assert float(grid.density[4, 4, 4]) == pytest.approx(np.log1p(np.exp(5.0)), rel=1e-5)
    np.testing.assert_allclose(grid.albedo, 0.5)
    dirs = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    coeffs = jnp.zeros((4, 3)).at[1].set(jnp.array([10.0, 0.0, -10.0]))
    np.testing.assert_allclose(
        field.background(coeffs, dirs), [[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]], atol=1e-4
    )
    np.testing.assert_allclose(camera.turntable(4), [0, np.pi / 2, np.pi, 3 * np.pi / 2])
    with pytest.raises(ValueError, match="num_views must be >= 1"):
        camera.turntable(0)
    with pytest.raises(ValueError, match="blob radius must be > 0"):
        field.density_prior(9, radius=0.0)
    with pytest.raises(ValueError, match="grid resolution must be >= 2"):
        field.init_params(1)
    with pytest.raises(ValueError, match=r"density prior \(8, 8, 8\) must match the grid"):
        field.activate(field.init_params(9), field.density_prior(8))
    with pytest.raises(ValueError, match=r"background coefficients must have shape \(4, 3\)"):
        field.background(jnp.zeros((3, 3)), dirs)
    with pytest.raises(ValueError, match=r"density must have shape \(R, R, R\) with R >= 2"):
        field.check_grid(field.Grid(jnp.zeros((4, 4, 5)), jnp.zeros((4, 4, 5, 3))))
