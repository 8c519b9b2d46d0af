"""Layers against independent references: embeddings, FIR resampling, attention, label dropout,
and the EDM preconditioning against the paper's Table 1 and an exact Gaussian denoiser."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import models
from jaxdiff.models import conditioning, dit, layers, precondition, resample


def test_sinusoidal_embedding_matches_ddpm_and_dit_formulas():
    s = jnp.array([0.0, 1.0, 37.5, 999.0])
    half = 8
    # DDPM (Ho et al. get_timestep_embedding): exp(-log(1e4) i / (half - 1)), [sin, cos].
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
    args = np.asarray(s)[:, None] * freqs[None]
    ddpm = np.concatenate([np.sin(args), np.cos(args)], 1)
    np.testing.assert_allclose(layers.sinusoidal_embedding(s, 16), ddpm, rtol=1e-5, atol=1e-4)
    # DiT timestep_embedding: exp(-log(1e4) i / half), [cos, sin].
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / half)
    args = np.asarray(s)[:, None] * freqs[None]
    dit_ref = np.concatenate([np.cos(args), np.sin(args)], 1)
    out = layers.sinusoidal_embedding(s, 16, flip_sin_to_cos=True, freq_shift=0.0)
    np.testing.assert_allclose(out, dit_ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="must be even; got dim=7"):
        layers.sinusoidal_embedding(s, 7)


def test_fourier_embedding_is_fixed_random_features():
    emb = layers.FourierEmbedding(8, scale=16.0)
    s = jnp.array([0.1, -2.0])
    variables = emb.init(jax.random.key(0), s)
    w = variables["params"]["W"]
    ref = np.concatenate(
        [np.sin(2 * np.pi * np.outer(s, w)), np.cos(2 * np.pi * np.outer(s, w))], 1
    )
    np.testing.assert_allclose(emb.apply(variables, s), ref, rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda p: emb.apply({"params": p}, s).sum())(variables["params"])
    np.testing.assert_array_equal(grad["W"], 0.0)  # never trained


def test_sincos_position_embedding_matches_diffusers():
    embeddings = pytest.importorskip("diffusers.models.embeddings")
    get_2d_sincos_pos_embed = embeddings.get_2d_sincos_pos_embed

    ref = get_2d_sincos_pos_embed(32, 6, base_size=6, output_type="np")
    np.testing.assert_allclose(dit.sincos_pos_embed(32, 6, 6), ref, rtol=1e-6, atol=1e-6)


def upfirdn2d_reference(x, taps, up, down, pad, gain):
    """Plain NumPy upfirdn2d on (H, W): zero-insert, pad, true convolution, decimate."""
    k = np.outer(taps, taps).astype(np.float64)
    k = k / k.sum() * gain
    h, w = x.shape
    z = np.zeros((h * up, w * up))
    z[::up, ::up] = x
    z = np.pad(z, (pad, pad))
    kh = k.shape[0]
    out = np.zeros((z.shape[0] - kh + 1, z.shape[1] - kh + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(z[i : i + kh, j : j + kh] * k[::-1, ::-1])
    return out[::down, ::down]


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 1), (1, 1)])
def test_fir_resampling_matches_upfirdn2d(taps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    p = len(taps) - 2
    for c in range(2):
        up = upfirdn2d_reference(x[0, :, :, c], taps, 2, 1, ((p + 1) // 2 + 1, p // 2), 4.0)
        down = upfirdn2d_reference(x[0, :, :, c], taps, 1, 2, ((p + 1) // 2, p // 2), 1.0)
        np.testing.assert_allclose(resample.upsample(x, taps)[0, :, :, c], up, atol=1e-5)
        np.testing.assert_allclose(resample.downsample(x, taps)[0, :, :, c], down, atol=1e-5)


def test_resampling_shapes_and_constants():
    x = jnp.full((2, 8, 6, 3), 1.7)
    for taps in (None, (1, 3, 3, 1)):
        up, down = resample.upsample(x, taps), resample.downsample(x, taps)
        assert up.shape == (2, 16, 12, 3) and down.shape == (2, 4, 3, 3)
        # FIR filters keep a constant image constant away from the zero-padded border.
        np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1.7, rtol=1e-6)
        np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.7, rtol=1e-6)
    np.testing.assert_allclose(resample.downsample(jnp.arange(4.0).reshape(1, 2, 2, 1)), 1.5)


def test_attention_matches_naive_softmax_with_mask():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, n, 3, 4)).astype(np.float32) for n in (5, 6, 6))
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 1, 1, 1]], bool)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / 2.0
    logits = np.where(mask[:, None, None], logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    ref = np.einsum("bnts,bsnh->btnh", weights, v)
    np.testing.assert_allclose(layers.attention(q, k, v, jnp.asarray(mask)), ref, atol=1e-5)
    empty = mask.copy()
    empty[1] = False  # an empty context contributes nothing
    out = layers.attention(q, k, v, jnp.asarray(empty))
    np.testing.assert_allclose(out[0], ref[0], atol=1e-5)
    np.testing.assert_array_equal(out[1], 0.0)


def test_drop_labels_rate_and_errors():
    y = jnp.arange(20000) % 7
    dropped = conditioning.drop_labels(jax.random.key(0), y, 0.1, 7)
    is_null = np.asarray(dropped == 7)
    assert abs(is_null.mean() - 0.1) < 4 * np.sqrt(0.1 * 0.9 / y.size)
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(y)[~is_null])
    with pytest.raises(ValueError, match="rate must be in \\[0, 1\\]; got rate=1.5"):
        conditioning.drop_labels(jax.random.key(0), y, 1.5, 7)


# ------------------------------------------------------------------ EDM preconditioning

SIGMA = jnp.array([0.002, 0.1, 1.0, 7.0, 80.0])


def test_edm_coefficients_are_table_1():
    sd = 0.5
    c_skip, c_out, c_in, c_noise = precondition.coefficients(SIGMA, "edm", sd)
    s = np.asarray(SIGMA, np.float64)
    np.testing.assert_allclose(c_skip, sd**2 / (s**2 + sd**2), rtol=1e-5)
    np.testing.assert_allclose(c_out, s * sd / np.sqrt(s**2 + sd**2), rtol=1e-5)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + sd**2), rtol=1e-5)
    np.testing.assert_allclose(c_noise, np.log(s) / 4, rtol=1e-5)


def test_eps_and_x0_coefficients():
    # VP/VE columns of Table 1 (eps prediction, sigma_data = 1): c_skip = 1, c_out = -sigma.
    c_skip, c_out, c_in, _ = precondition.coefficients(SIGMA, "eps", 1.0)
    np.testing.assert_allclose(c_skip, 1.0, rtol=1e-5)
    np.testing.assert_allclose(c_out, -SIGMA, rtol=1e-5)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(np.asarray(SIGMA) ** 2 + 1), rtol=1e-5)
    c_skip, c_out, _, _ = precondition.coefficients(SIGMA, "x0", 0.5)
    np.testing.assert_allclose(c_skip, 0.0, atol=1e-6)
    np.testing.assert_allclose(c_out, 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="valid kinds: \\['edm', 'eps', 'x0', 'v', 'score'\\]"):
        precondition.coefficients(SIGMA, "noise")


class GaussianOracle(nn.Module):
    """Backbone predicting ``kind`` exactly for data y ~ N(0, sigma_data^2 I).

    It sees x_in = c_in x = a (y / sd) + b n with a = sd / r, b = sigma / r,
    r = sqrt(sigma^2 + sd^2), so E[y/sd | x_in] = a x_in and E[n | x_in] = b x_in.
    """

    kind: str
    sigma_data: float

    @nn.compact
    def __call__(self, x_in, c_noise, label=None, context=None, context_mask=None, train=False):
        self.param("unused", nn.initializers.zeros, ())
        sigma = jnp.exp(4 * c_noise)[:, None, None, None]
        r = jnp.sqrt(sigma**2 + self.sigma_data**2)
        a, b = self.sigma_data / r, sigma / r
        x0, eps = a * x_in, b * x_in
        preds = {"x0": x0, "eps": eps, "v": a * eps - b * x0, "score": -eps / b}
        preds["edm"] = -preds["v"]
        return preds[self.kind]


@pytest.mark.parametrize("kind", precondition.KINDS)
def test_precondition_turns_exact_predictions_into_the_exact_denoiser(kind):
    sd = 0.5
    x = jax.random.normal(jax.random.key(0), (5, 4, 4, 2)) * 3.0
    net = models.Precondition(GaussianOracle(kind, sd), kind=kind, sigma_data=sd)
    variables = net.init(jax.random.key(1), x, SIGMA)
    denoised = net.apply(variables, x, SIGMA)
    exact = sd**2 / (SIGMA**2 + sd**2)[:, None, None, None] * x  # E[y | y + sigma n = x]
    np.testing.assert_allclose(denoised, exact, rtol=1e-4, atol=1e-5)


def test_precondition_wraps_a_real_backbone():
    net = models.Precondition(models.create("unet_8x8", ch_mult=(1,)), sigma_data=0.5)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(1), x, 1.0))
    assert "backbone" in shapes["params"]
    with pytest.raises(ValueError, match="sigma must be a scalar or \\(2,\\)"):
        jax.eval_shape(lambda: net.init(jax.random.key(1), x, jnp.ones((3,))))
    bad = models.Precondition(models.create("unet_8x8", learn_sigma=True))
    with pytest.raises(ValueError, match="learn_sigma=False"):
        jax.eval_shape(lambda: bad.init(jax.random.key(1), x, 1.0))


def test_v_and_score_coefficients_in_closed_form():
    sd, s = 0.5, np.asarray(SIGMA, np.float64)
    r = np.sqrt(s**2 + sd**2)
    # v = a eps - b x0 (unit frame): x0 = a x_in - b v, so D = sd^2/r^2 x - sd s / r F.
    c_skip, c_out, _, _ = precondition.coefficients(SIGMA, "v", sd)
    np.testing.assert_allclose(c_skip, sd**2 / r**2, rtol=1e-5)
    np.testing.assert_allclose(c_out, -sd * s / r, rtol=1e-5)
    # score = -eps / b: x0 = (x_in + b^2 F) / a, so D = x + s^2 F (Tweedie's formula).
    c_skip, c_out, _, _ = precondition.coefficients(SIGMA, "score", sd)
    np.testing.assert_allclose(c_skip, 1.0, rtol=1e-5)
    np.testing.assert_allclose(c_out, s**2 / r, rtol=1e-5)
    with pytest.raises(ValueError, match="sigma_data must be > 0; got sigma_data=0.0"):
        precondition.coefficients(SIGMA, "v", 0.0)


def test_layer_errors():
    with pytest.raises(ValueError, match="needs dim % 4 == 0; got dim=6"):
        dit.sincos_pos_embed(6, 2, 2)
    mha = layers.MultiHeadAttention(num_heads=3)
    with pytest.raises(ValueError, match="channels 8 not divisible by num_heads=3"):
        jax.eval_shape(lambda: mha.init(jax.random.key(0), jnp.zeros((1, 2, 8))))
    with pytest.raises(ValueError, match="num_classes >= 1; got num_classes=0"):
        conditioning.drop_labels(jax.random.key(0), jnp.zeros((2,), jnp.int32), 0.1, 0)
