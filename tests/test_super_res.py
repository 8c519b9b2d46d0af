"""Super-resolution models: resamplers, conditioning augmentation, the SR loss and network,
and an exact check: an SR model with the exact score of a Gaussian conditional samples
the conditional mean and covariance."""

import functools
import importlib.util

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdiff import losses, models, schedules, sdes, super_res
from jaxdiff.models import super_res as sr_net
from jaxdiff.training import components, loop
from jaxdiff.training import config as base_config

pytestmark = pytest.mark.usefixtures("fast_compiles")


def _images(key, shape):
    return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


def test_nearest_upsampling_repeats_and_mean_pooling_undoes_it(key):
    low = _images(key, (2, 3, 4, 2))
    up = sr_net.upsample_nearest(low, 2)
    assert up.shape == (2, 6, 8, 2)
    np.testing.assert_array_equal(up[:, 4:6, 2:4], jnp.broadcast_to(low[:, 2:3, 1:2], (2, 2, 2, 2)))
    np.testing.assert_allclose(sr_net.downsample_mean(up, 2), low, atol=1e-7)


@pytest.mark.parametrize("factor", [2, 3])
def test_bilinear_upsampling_equals_jax_image_resize(key, factor):
    low = _images(key, (2, 5, 4, 3))
    up = sr_net.upsample_bilinear(low, factor)
    ref = jax.image.resize(low, (2, 5 * factor, 4 * factor, 3), "bilinear", antialias=False)
    np.testing.assert_allclose(up, ref, atol=1e-6)


@pytest.mark.skipif(
    importlib.util.find_spec("jax2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="needs jax2onnx and onnxruntime (docs/export.md)",
)
@pytest.mark.parametrize("method", sorted(sr_net.UPSAMPLERS))
def test_upsamplers_export_to_onnx_with_a_symbolic_batch(key, method):
    import onnxruntime
    from jax2onnx import to_onnx

    proto = to_onnx(lambda x: sr_net.upsample(x, 2, method), [("B", 5, 4, 1)])
    session = onnxruntime.InferenceSession(proto.SerializeToString())
    for batch in (1, 3):
        x = np.asarray(_images(key, (batch, 5, 4, 1)))
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(got, sr_net.upsample(x, 2, method), atol=1e-6)


def test_resampler_errors_say_what_is_allowed():
    x = jnp.zeros((1, 6, 6, 1))
    with pytest.raises(ValueError, match=r"Unknown upsampling 'bicubic'; valid: \['bilinear'"):
        sr_net.upsample(x, 2, "bicubic")
    with pytest.raises(ValueError, match="6x6 is not divisible by the factor 4"):
        sr_net.downsample_mean(x, 4)
    with pytest.raises(ValueError, match="integer >= 1; got 0"):
        sr_net.upsample_nearest(x, 0)
    with pytest.raises(ValueError, match=r"rank 4; got shape \(6, 6\)"):
        sr_net.upsample_nearest(x[0, ..., 0], 2)


PROCESSES = {
    "vp": sdes.VPSDE(),
    "ve": sdes.VESDE(),
    "cosine": schedules.DiscreteSchedule.from_name("cosine", num_steps=1024),
}


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_augmentation_at_level_zero_is_no_augmentation(key, name):
    """Level 0 returns the input bit for bit, also per example and for VE (sigma(0) > 0)."""
    low = _images(key, (4, 7, 7, 1))
    process = PROCESSES[name]
    np.testing.assert_array_equal(super_res.augment(key, low, 0.0, process), low)
    mixed = super_res.augment(key, low, jnp.array([0.0, 0.3, 0.0, 0.5]), process)
    np.testing.assert_array_equal(mixed[::2], low[::2])
    assert not np.allclose(mixed[1::2], low[1::2])


def test_augmentation_noises_with_the_process_marginal(key):
    process = PROCESSES["cosine"]
    low = jnp.full((4000, 2, 2, 1), 0.5)
    z = super_res.augment(key, low, 0.4, process)
    scale, sigma = (float(v) for v in process.marginal(0.4))
    se = sigma / np.sqrt(z.size)  # standard error of the mean over all pixels
    assert abs(float(z.mean()) - 0.5 * scale) < 5 * se
    assert abs(float(z.std()) - sigma) < 5 * sigma * np.sqrt(0.5 / z.size)


def _recording_model(calls):
    def model_fn(x, t, low_res, aug_level, label=None):
        calls.append((low_res, aug_level))
        up = sr_net.upsample_nearest(low_res, 2)
        return x * 0.5 + up * (1.0 + aug_level[:, None, None, None])

    return model_fn


def test_sr_loss_at_aug_max_zero_equals_the_loss_on_clean_low_res(key):
    process = PROCESSES["cosine"]
    inner = losses.make_loss("v", process)
    x0 = _images(key, (8, 6, 6, 1))
    wrapped = super_res.make_loss(inner, process, factor=2, aug_max=0.0)
    got, _ = wrapped(_recording_model([]), key, x0, label=jnp.arange(8))
    clean = dict(low_res=sr_net.downsample_mean(x0, 2), aug_level=jnp.zeros(8))
    want, _ = inner(_recording_model([]), key, x0, label=jnp.arange(8), **clean)
    assert float(got) == float(want)


def test_sr_loss_draws_levels_in_range_and_noises_the_low_res(key):
    process = PROCESSES["cosine"]
    calls = []
    wrapped = super_res.make_loss(losses.make_loss("v", process), process, factor=2, aug_max=0.5)
    x0 = _images(key, (64, 4, 4, 1))
    wrapped(_recording_model(calls), key, x0)
    ((low_res, level),) = calls
    assert low_res.shape == (64, 2, 2, 1) and level.shape == (64,)
    assert 0.0 <= float(level.min()) and float(level.max()) <= 0.5 and float(level.std()) > 0.05
    assert not np.allclose(low_res, sr_net.downsample_mean(x0, 2))


def test_sr_settings_are_checked():
    config = base_config.release("fashion_mnist")
    config.sr = ml_collections.ConfigDict(dict(factor=2, aug_max=0.5, aug_level=0.1))
    assert super_res.settings(config) == super_res.Settings(2, "nearest", 0.5, 0.1)
    bad = [
        (dict(factor=3), "image_size=28 is not divisible by sr.factor=3"),
        (dict(factor=1), "sr.factor=1: must be an integer >= 2"),
        (dict(aug_level=0.7), r"aug_level=0.7: must be in \[0, aug_max\] = \[0, 0.5\]"),
        (dict(upsample="bicubic"), "sr.upsample='bicubic': valid: \\['bilinear', 'nearest'\\]"),
    ]
    for change, message in bad:
        c = ml_collections.ConfigDict(config.to_dict())
        c.sr.update(change)
        with pytest.raises(ValueError, match=message):
            super_res.settings(c)
    c = ml_collections.ConfigDict(config.to_dict())
    c.loss.noise_level = "log_snr"
    with pytest.raises(ValueError, match="must be finite at 0; use one of"):
        super_res.settings(c)
    c = ml_collections.ConfigDict(config.to_dict())
    c.train.sample_every = 100
    with pytest.raises(ValueError, match="sample_every=100: a super-resolution run draws no"):
        loop.check_config(c)


@pytest.fixture(scope="module")
def sr_net_and_params():
    """A smoke-sized SR network of a release config with an sr section, initialised."""
    config = base_config.smoke(base_config.release("fashion_mnist"), **base_config.SMOKE_UNET)
    config.sr = ml_collections.ConfigDict(dict(factor=2, aug_max=0.5, aug_level=0.1))
    net = components.build_model(config)
    init = jax.jit(lambda k: components.init_params(config, net, k))
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)  # module fixtures come first
    try:
        return net, init(jax.random.key(0))
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)


def test_sr_network_conditions_on_the_low_res_and_its_level(sr_net_and_params):
    net, params = sr_net_and_params
    assert set(params) == {"backbone", "aug_dense1", "aug_dense2"}
    assert params["backbone"]["conv_in"]["kernel"].shape[2] == 2  # x_t and the low-res image
    x, low = _images(jax.random.key(0), (2, 28, 28, 1)), _images(jax.random.key(1), (2, 14, 14, 1))
    label = jnp.arange(2)
    apply = jax.jit(lambda p, low, s: net.apply({"params": p}, x, jnp.ones(2), low, s, label))
    assert apply(params, low, jnp.zeros(2)).shape == x.shape
    moved = jax.tree.map(lambda p: p + 0.01, params)  # the output conv starts at zero
    apply = functools.partial(apply, moved)
    assert not np.allclose(apply(low, jnp.zeros(2)), apply(-low, jnp.zeros(2)))
    assert not np.allclose(apply(low, jnp.zeros(2)), apply(low, jnp.full(2, 500.0)))


def test_sr_network_errors_name_the_missing_or_misshaped_input(key, sr_net_and_params):
    net, params = sr_net_and_params
    x = jnp.zeros((2, 28, 28, 1))
    with pytest.raises(ValueError, match=r"needs low_res= \(B, H/2, W/2, C\) and aug_level="):
        net.apply({"params": params}, x, jnp.ones(2))
    with pytest.raises(ValueError, match=r"low_res must be \(2, 14, 14, 1\) .* got \(2, 7, 7, 1\)"):
        net.apply({"params": params}, x, jnp.ones(2), jnp.zeros((2, 7, 7, 1)), jnp.zeros(2))
    with pytest.raises(ValueError, match="needs a U-Net backbone; got DiT"):
        dit = models.create("dit_28x28", hidden=32, depth=1, num_heads=2)
        low = jnp.zeros((2, 14, 14, 1))
        sr_net.SuperResolution(dit).init(key, x, jnp.ones(2), low, jnp.ones(2))


# --- The exact check -------------------------------------------------------------------------
# Joint Gaussian: z ~ N(0, I) at 4x4, x = up(z) + tau r (nearest upsampling, r ~ N(0, I)).
# Given the augmented z_s = a z + b n (a, b: the process's marginal at s) the exact
# conditional is x | z_s ~ N(up(m), tau^2 I + v J) with m = a z_s / (a^2 + b^2),
# v = b^2 / (a^2 + b^2) and J the all-ones matrix of each 2x2 block (J = 4 P, P d =
# up(mean over blocks of d)). At noise time t (x_t = alpha x + sigma e) the covariance is
# c I + 4 k P with c = alpha^2 tau^2 + sigma^2, k = alpha^2 v, whose inverse is
# (I - 4 k / (c + 4 k) P) / c: the model below returns that exact score.
TAU = 0.3


def _exact_score_model(process):
    def model_fn(x, t, low_res, aug_level):
        col = lambda a: a[:, None, None, None]
        a, b = (col(m) for m in process.marginal(aug_level))
        m = a * low_res / (a**2 + b**2)
        v = b**2 / (a**2 + b**2)
        alpha, sigma = (col(m) for m in process.marginal(t))
        d = x - alpha * sr_net.upsample_nearest(m, 2)
        c, k = alpha**2 * TAU**2 + sigma**2, alpha**2 * v
        block = sr_net.upsample_nearest(sr_net.downsample_mean(d, 2), 2)
        return -(d - 4.0 * k / (c + 4.0 * k) * block) / c

    return model_fn


# method -> (process, steps, samples, allowance for the sampler's discretisation). The
# allowances bound the bias measured with 20,000 samples: Heun 40 steps <= 0.005 on
# variances, 0.002 on covariances; DDPM 100 steps (ancestral) <= 0.031 and 0.011.
SAMPLERS = {
    "ode_heun": (sdes.VPSDE(), 40, 4000, 0.01),
    "ddpm": (schedules.DiscreteSchedule.from_name("cosine", num_steps=1000), 100, 2000, 0.04),
}


@pytest.mark.parametrize("method, level", [("ode_heun", 0.0), ("ode_heun", 0.3), ("ddpm", 0.3)])
def test_exact_gaussian_conditional_is_reproduced(key, method, level):
    """Samples of x given a fixed z (augmented to ``level`` per example) have the exact
    mean up(E m) and covariance tau^2 I + (v + Var m) J (the augmentation noise averaged
    out: Var m = a^2 b^2 / (a^2 + b^2)^2).

    Tolerances: with n samples a pixel mean has standard error sqrt(var / n), a variance
    sqrt(2 / n) var and a covariance sqrt((var^2 + cov^2) / n); each check allows 5 of
    them (max over 64 pixels of a normal: 5 sd has probability ~4e-5) plus the sampler's
    measured discretisation bias.
    """
    process, steps, n, bias = SAMPLERS[method]
    z = jnp.linspace(-0.9, 0.9, 16).reshape(1, 4, 4, 1)
    low = jnp.broadcast_to(z, (n, 4, 4, 1))
    x, _ = super_res.upscale(
        key, _exact_score_model(process), process, low, factor=2, aug_level=level,
        method=method, num_steps=steps, kind="score",
    )  # fmt: skip
    a, b = (float(m) for m in process.marginal(level))
    mean = sr_net.upsample_nearest(a**2 * z / (a**2 + b**2), 2)[0]
    shared = b**2 / (a**2 + b**2) + a**2 * b**2 / (a**2 + b**2) ** 2  # v + Var m
    var = TAU**2 + shared
    x = np.asarray(x, np.float64).reshape(n, -1)
    np.testing.assert_array_less(
        np.abs(x.mean(0) - np.asarray(mean).ravel()), 5 * np.sqrt(var / n) + bias
    )
    cov = np.cov(x, rowvar=False).reshape(8, 8, 8, 8)
    np.testing.assert_array_less(
        np.abs(np.diag(cov.reshape(64, 64)) - var), 5 * np.sqrt(2 / n) * var + bias
    )
    tol = 5 * np.sqrt((var**2 + shared**2) / n) + bias
    for c in (cov[0, 0, 0, 1], cov[0, 0, 1, 1], cov[4, 6, 5, 7]):  # pixels in one block
        assert abs(c - shared) < tol, (c, shared, tol)
    for c in (cov[0, 0, 2, 2], cov[4, 6, 3, 7]):  # pixels in different blocks
        assert abs(c) < tol, (c, tol)
