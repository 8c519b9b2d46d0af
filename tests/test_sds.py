"""Score distillation: the gradient equals w(t)(eps_hat - eps) dx/dtheta with nothing flowing
into the denoiser; annealing, guidance, the exact denoiser of a finite set, the loop, files,
and the command line."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxdiff import schedules
from jaxdiff.data import shapes3d
from jaxdiff.render import camera, field, volume
from jaxdiff.sds import __main__ as cli
from jaxdiff.sds import empirical, io, optimize, prior, score

pytestmark = pytest.mark.usefixtures("fast_compiles")

PROCESS = schedules.DiscreteSchedule.from_name("cosine", num_steps=1000)
TINY_CAMERA = shapes3d.Camera(image_size=8, num_samples=16)


def render_fn(params):
    """Two 8x8 views of an 8^3 field in [-1, 1]: (2, 8, 8, 3)."""
    grid = field.activate(params, field.density_prior(8))

    def view(azimuth):
        pose = camera.orbit(azimuth, jnp.float32(0.2), radius=3.0)
        return volume.render(grid, pose, height=8, width=8, fov=40.0, radius=3.0)["rgb"]

    return 2.0 * jax.vmap(view)(jnp.array([0.3, 2.0])) - 1.0


def random_params(key):
    params = field.init_params(8)
    k1, k2 = jax.random.split(key)
    params["density"] = jax.random.normal(k1, params["density"].shape)
    params["albedo"] = jax.random.normal(k2, params["albedo"].shape)
    return params


def test_sds_gradient_is_the_formula_and_skips_the_denoiser_jacobian():
    """An analytic denoiser eps_hat = a x_t + b with trainable a, b: the SDS gradient equals
    w(t)(eps_hat - eps) pulled back through the renderer by jax.vjp, and a, b get none."""
    params, key = random_params(jax.random.key(0)), jax.random.key(1)
    t = jnp.array([0.3, 0.8])
    den = {"a": jnp.float32(0.7), "b": jnp.float32(0.1)}

    def surrogate(params, den):
        x = render_fn(params)
        eps_fn = lambda x_t, t: den["a"] * x_t + den["b"]
        return score.sds_loss(x, score.sds_gradient(key, x, t, eps_fn, PROCESS))

    got, got_den = jax.jit(jax.grad(surrogate, argnums=(0, 1)))(params, den)
    # The explicit computation: same noise, x_t, eps_hat and w(t) = sigma(t)^2.
    x, pullback = jax.vjp(jax.jit(render_fn), params)
    eps = jax.random.normal(key, x.shape)
    scale, sigma = (a[:, None, None, None] for a in PROCESS.marginal(t))
    eps_hat = den["a"] * (scale * x + sigma * eps) + den["b"]
    g = sigma**2 * (eps_hat - eps)
    (expected,) = pullback(g / x.shape[0])
    for name in params:
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-4, atol=1e-6)
    assert float(got_den["a"]) == 0.0 and float(got_den["b"]) == 0.0
    # Back-propagating through the denoiser instead (the loss |eps_hat - eps|^2 / 2) adds
    # the Jacobian a * scale: a different gradient, which the test above would catch.
    (naive,) = pullback(g * den["a"] * scale / x.shape[0])
    assert not np.allclose(naive["albedo"], expected["albedo"], rtol=1e-2)


def test_uniform_weighting_and_bad_input():
    x, t = jnp.zeros((2, 4, 4, 3)), jnp.array([0.5, 0.9])
    eps_fn = lambda x_t, t: jnp.zeros_like(x_t)
    g = score.sds_gradient(jax.random.key(0), x, t, eps_fn, PROCESS, weighting="uniform")
    np.testing.assert_allclose(g, -jax.random.normal(jax.random.key(0), x.shape), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown weighting 'snr'; valid: sigma2, uniform"):
        score.sds_gradient(jax.random.key(0), x, t, eps_fn, PROCESS, weighting="snr")
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(2,\)"):
        score.sds_gradient(jax.random.key(0), x, t[:1], eps_fn, PROCESS)
    with pytest.raises(ValueError, match="x and grad must have one shape"):
        score.sds_loss(x, g[:1])


def test_guided_eps_is_cfg_of_the_converted_prediction():
    """A model predicting v under guidance w: eps_hat = (1 + w) eps(x|y) - w eps(x|null)."""
    model = lambda x, t, label: x * (label[:, None, None, None] + 1.0) * 0.1
    x, t = jax.random.normal(jax.random.key(0), (2, 4, 4, 3)), jnp.array([0.2, 0.7])
    label = jnp.array([3, 5])
    eps_fn = score.guided_eps_fn(model, "v", PROCESS, guidance=2.0, null_label=9)
    scale, sigma = (a[:, None, None, None] for a in PROCESS.marginal(t))
    to_eps = lambda v: sigma * x + scale * v  # eps from v (scale^2 + sigma^2 = 1)
    cond, null = to_eps(model(x, t, label)), to_eps(model(x, t, jnp.full(2, 9)))
    np.testing.assert_allclose(eps_fn(x, t, label=label), 3 * cond - 2 * null, rtol=1e-5)
    with pytest.raises(ValueError, match="guidance > 0 needs null_label"):
        score.guided_eps_fn(model, "v", PROCESS, guidance=1.0)


def test_t_annealing_schedules():
    lo, hi = score.t_range(0, 101, t_min=0.02, t_max=0.98, t_end=0.5, schedule="linear")
    assert (float(lo), float(hi)) == pytest.approx((0.02, 0.98))
    _, hi = score.t_range(50, 101, t_min=0.02, t_max=0.98, t_end=0.5, schedule="linear")
    assert float(hi) == pytest.approx(0.74)
    _, hi = score.t_range(25, 101, t_min=0.02, t_max=0.98, t_end=0.5, schedule="sqrt")
    assert float(hi) == pytest.approx(0.98 - 0.48 * 0.5)
    _, hi = score.t_range(100, 101, t_min=0.02, t_max=0.98, t_end=0.5, schedule="none")
    assert float(hi) == pytest.approx(0.98)
    t = score.sample_t(jax.random.key(0), 1000, jnp.float32(0.2), jnp.float32(0.4), PROCESS)
    assert float(t.min()) >= 0.2 - 1e-3 and float(t.max()) <= 0.4 + 1e-3
    np.testing.assert_allclose(t * 1000, jnp.round(t * 1000), atol=1e-3)  # trained levels
    with pytest.raises(ValueError, match="unknown t annealing 'cos'; valid: linear, none, sqrt"):
        score.t_range(0, 10, schedule="cos")
    with pytest.raises(ValueError, match="need 0 <= t_min <= t_end <= t_max <= 1"):
        score.t_range(0, 10, t_min=0.5, t_end=0.2)


def test_empirical_denoiser_is_the_posterior_mean_of_the_set():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (6, 4, 4, 3)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 1, 2])
    fn = empirical.model_fn(images, labels, PROCESS, num_labels=3)
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    t = np.array([0.6, 0.9], np.float32)
    got = np.asarray(fn(jnp.asarray(x), jnp.asarray(t), label=jnp.array([1, 3])))
    scale, sigma = (np.asarray(a, np.float64) for a in PROCESS.marginal(jnp.asarray(t)))
    for b, allowed in enumerate([labels == 1, np.ones(6, bool)]):
        d = np.sum((x[b] - scale[b] * images) ** 2, axis=(1, 2, 3)) / (2 * sigma[b] ** 2)
        w = np.where(allowed, np.exp(-(d - d[allowed].min())), 0.0)
        mean = np.tensordot(w / w.sum(), images, axes=1)
        np.testing.assert_allclose(got[b], mean, rtol=1e-4, atol=1e-5)
    # Nearly clean input: the nearest image of the label.
    near = fn(jnp.asarray(images[3:4] + 0.01), jnp.array([0.001]), label=jnp.array([1]))
    np.testing.assert_allclose(near[0], images[3], atol=1e-5)


def test_optimisation_pulls_renders_towards_the_prior():
    """The prior knows one image, solid red: SDS turns the (tiny) object red."""
    red = np.broadcast_to(np.array([1.0, -1.0, -1.0], np.float32), (1, 8, 8, 3))
    model_fn = empirical.model_fn(red, np.zeros(1), PROCESS, num_labels=1)
    eps_fn = score.guided_eps_fn(model_fn, "x0", PROCESS)
    settings = optimize.Settings(
        num_steps=30, views_per_step=2, resolution=8, num_samples=16, learning_rate=0.1,
        camera=TINY_CAMERA, t_max=0.6, t_end=0.3,
    )  # fmt: skip
    # Turntables show the object on white, so only the object's colour counts.
    redness = lambda p: float(np.mean(optimize.turntable(p, settings, 4) @ [1.0, -0.5, -0.5]))
    before = redness(field.init_params(8))
    params, history = optimize.optimize(eps_fn, PROCESS, lambda az: np.zeros_like(az), settings)
    assert len(history) == 30 and all(np.isfinite(h["sds_grad"]) for h in history)
    assert before == pytest.approx(0.0, abs=1e-3) and redness(params) > 0.02
    albedo = np.asarray(params["albedo"])  # raw logits, from 0: red up, green and blue down
    assert np.mean(albedo[..., 0]) > 0.3 and np.mean(albedo[..., 1:]) < -0.3


def test_settings_are_checked():
    with pytest.raises(ValueError, match="views_per_step must be >= 1; got 0"):
        optimize.Settings(views_per_step=0).check()
    with pytest.raises(ValueError, match="p_unlit and p_textureless must be >= 0 with a sum"):
        optimize.Settings(p_unlit=0.7, p_textureless=0.5).check()
    with pytest.raises(ValueError, match="unknown t annealing"):
        optimize.Settings(anneal="cosine").check()
    views = optimize.draw_views(np.random.default_rng(0), 1000, optimize.Settings())
    unlit = np.mean(views["ambient"] == 1.0)
    assert 0.15 < unlit < 0.25 and 0.06 < np.mean(views["textureless"]) < 0.14


def test_gif_and_field_files_round_trip(tmp_path):
    frames = np.random.default_rng(0).uniform(size=(5, 8, 8, 3))
    io.save_gif(frames, str(tmp_path / "t.gif"), upscale=2)
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (16, 16)
    params = field.init_params(4)
    io.save_field(str(tmp_path / "f"), params, {"prompt": "die"})
    loaded, meta = io.load_field(str(tmp_path / "f"))
    assert meta == {"prompt": "die"} and set(loaded) == set(params)
    np.testing.assert_array_equal(loaded["albedo"], params["albedo"])
    with pytest.raises(ValueError, match="frames must have shape"):
        io.save_gif(frames[..., :2], str(tmp_path / "x.gif"))
    with pytest.raises(ValueError, match="missing"):
        io.load_field(str(tmp_path / "nothing"))


def test_gif_frames_read_back_and_tile_into_a_sheet(tmp_path):
    from jaxdiff.sds import sheet

    rng = np.random.default_rng(1)  # few colours: a GIF's palette holds them exactly
    objects = [rng.integers(0, 3, size=(4, 6, 6, 3)) / 2.0 for _ in range(2)]
    for name, frames in zip(("a", "b"), objects, strict=True):
        os.makedirs(tmp_path / name)
        io.save_gif(frames, str(tmp_path / name / "turntable.gif"), upscale=4)
    read = io.load_gif(str(tmp_path / "a" / "turntable.gif"))
    np.testing.assert_allclose(read, objects[0], atol=0.5 / 255)  # 8-bit pixels
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    grid = sheet.turntable_sheet(dirs, str(tmp_path / "s.png"), upscale=1)
    assert grid.shape == (1 + 2 * 7, 1 + 4 * 7, 3)  # 2 rows x 4 views of 6 + 1 padding
    np.testing.assert_array_equal(grid[8:14, 1:7], np.round(objects[1][0] * 255))
    with pytest.raises(ValueError, match="no turntable.gif"):
        sheet.turntable_sheet([str(tmp_path)], str(tmp_path / "x.png"))


def test_view_agreement_finds_the_side_each_render_shows():
    from jaxdiff.sds import views

    rng = np.random.default_rng(0)
    azimuth = np.arange(8) * 2 * np.pi / 8 + 0.1  # one render per bin, classes 0 and 1
    renders = shapes3d.Renders(
        images=rng.integers(0, 256, size=(16, 4, 4, 3), dtype=np.uint8),
        classes=np.repeat([0, 1], 8),
        azimuth=np.tile(azimuth, 2),
        elevation=np.zeros(16),
        labels=shapes3d.view_label(np.repeat([0, 1], 8), np.tile(azimuth, 2)),
    )
    frames = renders.images[8:] / 255.0  # class 1's renders, each shown from its own side
    np.testing.assert_array_equal(views.nearest_view_bins(frames, renders, 1), np.arange(8))
    assert views.view_agreement(frames, azimuth, renders, 1) == 1.0
    assert views.view_agreement(frames, azimuth + np.pi, renders, 1) == 0.0  # the far side
    assert views.view_agreement(frames, azimuth + np.pi / 4, renders, 1) == 1.0  # one bin off
    assert views.view_agreement(frames, azimuth + np.pi / 4, renders, 1, tolerance=0) == 0.0
    with pytest.raises(ValueError, match="frames must have shape"):
        views.view_agreement(frames[..., :2], azimuth, renders, 1)
    with pytest.raises(ValueError, match="no renders of class 3"):
        views.view_agreement(frames, azimuth, renders, 3)


def test_the_shipped_prior_loads_by_name():
    from jaxdiff import pretrained

    model = prior.load("shapes3d_views", "mug", guidance=20.0)
    assert model.description["model"] == "shapes3d_views" and model.description["step"] > 0
    assert model.description["dataset"] == "shapes3d"
    np.testing.assert_array_equal(model.label_fn(np.array([0.0, np.pi])), [8, 12])
    x = jnp.zeros((2, 32, 32, 3))
    eps = model.eps_fn(x, jnp.full((2,), 0.5), label=jnp.array([8, 12]))
    assert eps.shape == x.shape and bool(jnp.all(jnp.isfinite(eps)))
    with pytest.raises(ValueError, match="only its EMA weights ship"):
        pretrained.load_run("shapes3d_views", "raw")


def test_command_line_errors_list_the_valid_prompts(tmp_path, capsys):
    assert cli.PROMPTS == shapes3d.CLASSES
    with pytest.raises(SystemExit) as e:
        cli.main(["--prompt=teapot", "--model=empirical", f"--out={tmp_path}"])
    assert e.value.code == 2
    assert "valid prompts: torus, mug, die, lblock" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--prompt=mug", f"--model={tmp_path}/none", f"--out={tmp_path}/o"])
    assert e.value.code == 1 and "no training run there" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown shape 'cube'; valid shapes"):
        prior.load("empirical:shapes3d_tiny", "cube", 1.0)


def test_command_writes_turntable_weights_and_record(tmp_path):
    out = tmp_path / "torus"
    cli.main(
        [
            "--prompt=torus",
            "--model=empirical:shapes3d_tiny",
            f"--out={out}",
            "--num_steps=2",
            "--views_per_step=1",
            "--resolution=8",
            "--turntable_views=4",
            f"--data_dir={tmp_path / 'cache'}",
        ]
    )
    with Image.open(out / "turntable.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (128, 128)
    params, record = io.load_field(str(out))
    assert params["density"].shape == (8, 8, 8) and record["prompt"] == "torus"
    assert record["settings"]["num_steps"] == 2 and record["optimisation_seconds"] > 0
    assert record["prior"]["model"] == "empirical"
    assert 0.0 <= record["view_agreement"] <= 1.0  # the nearest-render check ran
    assert json.loads(json.dumps(record)) == record and os.path.exists(out / io.WEIGHTS)
    assert dataclasses.asdict(optimize.Settings())["camera"]["image_size"] == 32


def test_more_bad_input_is_refused(capsys):
    with pytest.raises(ValueError, match=r"need images \(N, H, W, C\) and labels \(N,\)"):
        empirical.model_fn(np.zeros((3, 4, 4)), np.zeros(3), PROCESS, num_labels=2)
    with pytest.raises(ValueError, match="Unknown prediction kind .noise.; valid kinds"):
        score.guided_eps_fn(lambda x, t: x, "noise", PROCESS)
    with pytest.raises(ValueError, match="resolution must be >= 2; got 1"):
        optimize.Settings(resolution=1).check()
    with pytest.raises(ValueError, match="guidance must be >= 0; got -1"):
        optimize.Settings(guidance=-1.0).check()
    for flag, message in [
        ("--lr=0", "--lr=0.0: must be > 0."),
        ("--num_steps=0", "--num_steps=0: must be >= 1."),
        ("--elevation=90", "--elevation=90.0: must be in (-89, 89)."),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.main(["--prompt=die", "--model=empirical", "--out=/tmp/x", flag])
        assert e.value.code == 2 and message in capsys.readouterr().err
