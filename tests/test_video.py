"""Video diffusion: samplers on clip-shaped arrays (exact scores), the space-time U-Net
(one frame = the image U-Net), reconstruction guidance on a Gaussian with a known
conditional, the Moving MNIST generator, the clip measures (real vs frame-shuffled clips)
and train -> sample (GIF, prediction from given frames) through the commands."""

import importlib.util
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from sampler_targets import errors, exact_score, on_shape

from jaxdiff import _cli, models, sample, samplers, schedules, sdes, train, video
from jaxdiff.data import moving_mnist
from jaxdiff.evaluation import video_metrics
from jaxdiff.models import video as video_models
from jaxdiff.training import restore

pytestmark = pytest.mark.usefixtures("fast_module_compiles")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = (2, 2, 4, 2)  # T, H, W, C: 32 numbers, the exact-score target's 2 DIM


@pytest.mark.parametrize(
    "method, process, num_steps, disc",
    [
        ("ddim", schedules.DiscreteSchedule.from_name("linear", 1000), 250, 0.01),
        ("ode_heun", sdes.VPSDE(beta_min=0.1, beta_max=20.0), 60, 0.01),
    ],
)
def test_samplers_reproduce_exact_statistics_on_clip_shaped_arrays(
    method, process, num_steps, disc
):
    model = on_shape(exact_score(process))
    shape = (10_000, *CLIP)
    x, _ = samplers.sample(
        jax.random.key(0), model, process, shape, method=method, num_steps=num_steps
    )
    assert x.shape == shape
    raw, se = errors(np.asarray(x).reshape(shape[0], -1))
    for k in raw:
        assert raw[k] <= 5 * se[k] + disc, f"{method}: {k} error {raw[k]:.4f} ({raw})"


# --- The space-time U-Net -------------------------------------------------------------------

TINY = dict(
    ch=8,
    ch_mult=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(4,),
    num_groups=4,
    head_dim=None,
    max_frames=4,
)


def _random_params(params, seed=1):
    """Every parameter drawn at random (zero-initialised output layers hide nothing)."""
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    noisy = [jnp.asarray(0.3 * rng.normal(size=p.shape), jnp.float32) for p in leaves]
    return jax.tree.unflatten(tree, noisy)


@pytest.fixture(scope="module")
def video_net():
    net = models.create("video_unet_32", **TINY)
    x = jax.ShapeDtypeStruct((1, 3, 8, 8, 1), jnp.float32)
    shapes = jax.eval_shape(net.init, {"params": jax.random.key(0)}, x, jnp.zeros(1))
    return net, _random_params(shapes["params"])


def test_one_frame_clip_takes_the_image_unet_path(video_net):
    net, params = video_net
    image_net = models.UNet(**{k: v for k, v in TINY.items() if k != "max_frames"})
    image_params = {k: v for k, v in params.items() if not k.endswith("_time")}
    assert len(image_params) < len(params)  # the clip network has temporal blocks
    x = jax.random.normal(jax.random.key(2), (2, 1, 8, 8, 1))
    level = jnp.array([3.0, 700.0])
    clip_out = net.apply({"params": params}, x, level)
    image_out = image_net.apply({"params": image_params}, x[:, 0], level)
    np.testing.assert_allclose(clip_out[:, 0], image_out, rtol=1e-5, atol=1e-5)


def test_frames_see_each_other_only_through_temporal_attention(video_net):
    net, params = video_net
    x = jax.random.normal(jax.random.key(3), (1, 3, 8, 8, 1))
    changed = x.at[:, 2].add(1.0)
    run = jax.jit(lambda p, a: net.apply({"params": p}, a, jnp.array([10.0]))[:, 0])
    assert float(jnp.max(jnp.abs(run(params, x) - run(params, changed)))) > 1e-3
    no_time = {
        k: (jax.tree.map(jnp.zeros_like, v) if k.endswith("_time") else v)
        for k, v in params.items()
    }  # zero output projections: identity blocks
    np.testing.assert_allclose(run(no_time, x), run(no_time, changed), atol=1e-6)


def test_relative_positions_are_clipped_offsets():
    np.testing.assert_array_equal(
        video_models.relative_positions(4, 2),
        [[1, 2, 2, 2], [0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]],
    )


def test_video_unet_rejects_images_and_long_clips(video_net):
    net, params = video_net
    with pytest.raises(ValueError, match=r"x must be a clip \(B, T, H, W, C\), rank 5"):
        net.apply({"params": params}, jnp.zeros((1, 8, 8, 1)), jnp.zeros(1))
    with pytest.raises(ValueError, match="5 frames exceed max_frames=4"):
        net.apply({"params": params}, jnp.zeros((1, 5, 8, 8, 1)), jnp.zeros(1))


# --- Reconstruction guidance ----------------------------------------------------------------

RHO = 0.9  # two frames, each pixel pair (a, b) ~ N(0, [[1, rho], [rho, 1]])


def _pair_score(process, x, t, **cond):
    scale, sigma = process.marginal(t)
    c, d = (v.reshape(-1, 1, 1, 1) for v in (scale**2 + sigma**2, scale**2 * RHO))
    a, b = x[:, 0], x[:, 1]
    det = c**2 - d**2
    return jnp.stack([-(c * a - d * b) / det, -(c * b - d * a) / det], 1)


def _conditional_slope(weight):
    """Regression slope of the predicted frame on the given one (exact: rho)."""
    process = sdes.VPSDE(beta_min=0.1, beta_max=20.0)
    given = jax.random.normal(jax.random.key(1), (2000, 1, 4, 4, 1))
    known = jnp.concatenate([given, jnp.zeros_like(given)], 1)
    model = jax.tree_util.Partial(_pair_score, process)
    guided = video.reconstruction_guidance(
        model, "score", process, known, video.known_mask(2, 1), weight
    )
    x, _ = samplers.sample(
        jax.random.key(0),
        guided,
        process,
        known.shape,
        method="euler_maruyama",
        num_steps=100,
        kind="x0",
    )
    np.testing.assert_array_equal(x[:, :1], given)  # the given frame is kept exactly
    a, b = np.asarray(x[:, 0]).ravel(), np.asarray(x[:, 1]).ravel()
    return float(a @ b / (a @ a))


def test_reconstruction_guidance_recovers_the_gaussian_conditional():
    # Replacement alone (w = 0) under-conditions (slope 0.63, Ho et al. 2022's point);
    # w_r = 2 brings the slope to rho = 0.9 within 0.06 (0.86 measured; its standard
    # error is ~0.003, the rest is the guidance's approximation).
    assert abs(_conditional_slope(2.0) - RHO) < 0.06
    assert abs(_conditional_slope(0.0) - RHO) > 0.2


def test_known_mask_and_weight_checks():
    np.testing.assert_array_equal(video.known_mask(3, 2).ravel(), [1, 1, 0])
    with pytest.raises(ValueError, match=r"known frames 3 must be in \[1, 2\]"):
        video.known_mask(3, 3)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        video.reconstruction_guidance(None, "eps", None, None, None, -1.0)


# --- Moving MNIST ---------------------------------------------------------------------------


def _digit_templates():
    """One real 8x8 scikit-learn digit per class, enlarged to 14x14 (the data's digit size)."""
    from scipy import ndimage
    from sklearn.datasets import load_digits

    data = load_digits()
    first = [int(np.flatnonzero(data.target == k)[0]) for k in range(10)]
    big = [ndimage.zoom(data.images[i] * 255 / 16, 14 / 8, order=1) for i in first]
    return np.clip(np.stack(big), 0, 255).astype(np.float32), np.arange(10, dtype=np.int32)


@pytest.fixture(scope="module")
def synthetic():
    digits, labels = _digit_templates()
    spec = moving_mnist.Spec(frames=8, clips=(("train", 200), ("test", 200)))
    return moving_mnist.MovingMNIST(digits, labels, spec, "train")


def test_clips_are_a_function_of_split_and_index(synthetic):
    again = moving_mnist.MovingMNIST(synthetic.digits, synthetic.labels, synthetic.spec, "train")
    test = moving_mnist.MovingMNIST(synthetic.digits, synthetic.labels, synthetic.spec, "test")
    a, b = synthetic.clip(5), again.clip(5)
    assert a.frames.tobytes() == b.frames.tobytes() and a.frames.shape == (8, 32, 32, 1)
    assert synthetic.clip(6).frames.tobytes() != a.frames.tobytes()
    assert test.clip(5).frames.tobytes() != a.frames.tobytes()
    counts = {len(synthetic.clip(i).labels) for i in range(40)}
    assert counts == {1, 2}


def test_digits_stay_inside_and_move_at_most_max_speed(synthetic):
    for i in range(30):
        pos = synthetic.clip(i).positions
        assert pos.min() >= 0 and pos.max() <= 32 - 14
        steps = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
        assert steps.max() <= synthetic.spec.max_speed + 1e-4 and steps.min() > 0


def test_source_reads_mnist_through_tfds():
    with tfds.testing.mock_data(num_examples=12):
        src = moving_mnist.source("moving_mnist_tiny", "test")
        record = src[3]
    assert len(src) == 8 and record["image"].shape == (4, 32, 32, 1)
    assert record["image"].dtype == np.uint8
    with pytest.raises(ValueError, match="unknown Moving MNIST data set 'moving'"):
        moving_mnist.source("moving", "train")


# --- The measures: real clips vs the same frames shuffled in time ---------------------------


def _nearest_template(templates):
    """An exact classifier of the synthetic digits: the nearest template crop."""
    crops = []
    for d in templates:
        canvas = np.full((32, 32), -1.0, np.float32)
        canvas[9:23, 9:23] = d / 127.5 - 1
        crops.append(video_metrics.find_digits(canvas, 1).crops[0])
    ref = np.stack(crops).reshape(10, -1)
    return lambda c: np.argmin(((c.reshape(len(c), 1, -1) - ref[None]) ** 2).sum(-1), axis=1)


def test_temporal_measures_tell_real_from_shuffled_clips(synthetic):
    clips = np.stack([synthetic[i]["image"] for i in range(60)]) / 127.5 - 1
    classify = _nearest_template(synthetic.digits)
    projection = np.random.default_rng(0).normal(size=(28 * 28, 8))
    features = lambda c: c.reshape(len(c), -1) @ projection
    real = video_metrics.detect_clips(clips, 2)
    shuffled = video_metrics.detect_clips(video_metrics.shuffle_frames(clips), 2)
    other = video_metrics.detect_clips(
        np.stack([synthetic[i]["image"] for i in range(60, 120)]) / 127.5 - 1, 2
    )
    r = video_metrics.temporal_consistency(real, classify)
    s = video_metrics.temporal_consistency(shuffled, classify)
    # Measured: identity 0.80 (overlapping digits merge) vs 0.28, smooth 0.95 vs 0.12,
    # jump 1.6 vs 8.3 pixels.
    assert r["identity"] > 0.7 and s["identity"] < 0.4
    assert r["smooth"] > 0.8 and s["smooth"] < 0.3
    assert r["jump"] < 2.5 and s["jump"] > 5.0
    single = [
        c for c, i in zip(clips, range(60), strict=True) if len(synthetic.clip(i).labels) == 1
    ]
    one = video_metrics.temporal_consistency(
        video_metrics.detect_clips(np.stack(single), 1), classify
    )
    assert one["identity"] == 1.0 and one["smooth"] == 1.0  # separate digits: exact
    # Per frame the shuffled clips are the same frames: frame FD 0; dimmed digits are far
    # from real ones (measured 866 vs 101 for 60 other real clips).
    fd_other = video_metrics.frame_frechet_distance(real, other, features)
    assert abs(video_metrics.frame_frechet_distance(real, shuffled, features)) < 1e-6
    dimmed = video_metrics.detect_clips(clips * 0.5 - 0.5, 2)
    assert video_metrics.frame_frechet_distance(real, dimmed, features) > 4 * fd_other


# --- The commands ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):  # ~17 s: the training command on the smoke config
    workdir = tmp_path_factory.mktemp("video") / "run"
    with tfds.testing.mock_data(num_examples=16):
        train.main(["--config=configs/moving_mnist.py:smoke", f"--workdir={workdir}"])
    return workdir


@pytest.mark.slow  # ~40 s; test_configs smoke-trains the config through loop.train in CI
def test_train_then_sample_a_gif_and_predict_from_given_frames(run, tmp_path):
    gif = tmp_path / "clips.gif"
    sample.main([f"--workdir={run}", "--num_samples=2", f"--out={gif}"])
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.is_animated
    out = tmp_path / "predicted.npz"
    with tfds.testing.mock_data(num_examples=16):
        sample.main(
            [
                f"--workdir={run}",
                "--num_samples=3",
                "--batch_size=2",
                "--condition_frames=2",
                f"--out={out}",
            ]
        )
        given = video.first_clips(restore.load_run(str(run)).config, 3)
    clips = np.load(out)["images"]
    assert clips.shape == (3, 4, 32, 32, 1)
    np.testing.assert_allclose(clips[:, :2], given[:, :2], atol=1e-6)


def _config(name):
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("smoke")


def test_sample_refuses_media_the_run_cannot_make():
    video_config, image_config = _config("moving_mnist"), _config("mnist_release")
    cases = [
        (video_config, "x.wav", None, "WAV output is for spoken-digits (audio) runs"),
        (video_config, "x.gif", 4, "--condition_frames=4: must be in 1..3"),
        (image_config, "x.gif", None, "GIF output is for video runs (clips)"),
        (image_config, "x.png", 2, "--condition_frames: only a video run predicts frames"),
    ]
    for config, out, frames, message in cases:
        with pytest.raises(_cli.UsageError, match=re.escape(message)):
            sample.check_media_flags(config, out, frames, 2.0)
    sample.check_media_flags(video_config, "x.gif", 3, 0.0)  # accepted


def test_training_refuses_frames_that_differ_from_the_clips():
    from jaxdiff.training import components

    config = _config("moving_mnist")
    config.data.frames = 8
    with tfds.testing.mock_data(num_examples=12):
        with pytest.raises(ValueError, match="data.frames=8, but the 'moving_mnist_tiny' clips"):
            components.build_dataset(config)


def test_find_digits_gives_exact_centroids_and_keeps_the_heaviest():
    frame = np.full((32, 32), -1.0, np.float32)
    frame[2:6, 3:9] = 1.0  # 24 pixels, centre (3.5, 5.5)
    frame[20:30, 20:30] = 0.5  # 100 pixels, centre (24.5, 24.5)
    frame[15, 15] = 1.0  # a speck below min_pixels
    found = video_metrics.find_digits(frame, 3)
    np.testing.assert_allclose(found.centroids, [[24.5, 24.5], [3.5, 5.5]], atol=1e-5)
    assert found.crops.shape == (2, 28, 28, 1)
    one = video_metrics.find_digits(frame, 1)
    np.testing.assert_allclose(one.centroids, [[24.5, 24.5]], atol=1e-5)
    # The crop is the 14x14 window around the centroid, each pixel repeated 2x2.
    window = frame[18:32, 18:32]
    np.testing.assert_array_equal(one.crops[0, ::2, ::2, 0], window)
    assert len(video_metrics.find_digits(np.full((32, 32), -1.0), 2).centroids) == 0


def test_render_overlaps_by_the_maximum_and_shuffle_keeps_the_frames():
    digits = np.stack([np.full((14, 14), 100.0), np.full((14, 14), 200.0)])
    positions = np.array([[[0, 0], [7, 7]]], np.float32)
    frame = moving_mnist.render(digits, positions, 32)[0, ..., 0]
    assert frame[3, 3] == 100 and frame[10, 10] == 200 and frame[18, 18] == 200
    assert frame[25, 25] == 0
    clips = np.arange(3 * 4).reshape(3, 4, 1, 1, 1).astype(np.float32)
    shuffled = video_metrics.shuffle_frames(clips)
    for t in range(4):  # each time step holds the same frames, in another clip order
        assert sorted(shuffled[:, t].ravel()) == sorted(clips[:, t].ravel())


def test_clip_pictures_put_frames_in_rows_and_gifs_play_them(tmp_path):
    from jaxdiff.training import summaries

    clips = np.linspace(-1, 1, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8, 1)
    grid = summaries.save_grid(clips, str(tmp_path / "g.png"))
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1, 1)  # 2 clips x 3 frames, 1-pixel borders
    video.write_gif(str(tmp_path / "c.gif"), clips, upscale=2)
    with Image.open(tmp_path / "c.gif") as im:
        assert im.n_frames == 3 and im.size == (2 * (2 * 9 + 1), 2 * (1 * 9 + 1))
    with pytest.raises(ValueError, match=r"clips must be \(N, T, H, W, C\)"):
        video.write_gif(str(tmp_path / "x.gif"), clips[0])
