"""The KL autoencoder: KL, reconstruction, SSIM and PSNR against closed forms; the
posterior; the scale factor's unit variance; a smoke training through ``python -m
jaxdiff.train`` that resumes, stores the scale factor and feeds the encode command."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxdiff import losses as diffusion_losses
from jaxdiff import train
from jaxdiff.autoencoder import __main__ as ae_cli
from jaxdiff.autoencoder import losses, model
from jaxdiff.autoencoder import run as ae_run
from jaxdiff.autoencoder import train as ae_train

pytestmark = pytest.mark.usefixtures("fast_module_compiles")  # module fixtures compile too


def test_kl_matches_the_closed_form_and_the_general_gaussian_kl():
    mean = jnp.full((2, 3, 3, 4), 0.5).at[1].set(-2.0)
    logvar = jnp.full((2, 3, 3, 4), jnp.log(2.0)).at[1].set(0.0)
    kl = losses.kl_to_standard_normal(mean, logvar)
    d = 36
    expected = [0.5 * d * (0.25 + 2.0 - 1.0 - np.log(2.0)), 0.5 * d * 4.0]
    np.testing.assert_allclose(kl, expected, rtol=1e-6)
    general = diffusion_losses.normal_kl(mean, logvar, 0.0, 0.0).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(kl, general, rtol=1e-6)
    assert losses.kl_to_standard_normal(jnp.zeros((1, 2)), jnp.zeros((1, 2))).tolist() == [0.0]


def test_reconstruction_terms_match_closed_forms():
    x = jnp.zeros((2, 8, 8, 1))
    x_hat = x.at[0].set(0.5).at[1].set(-0.25)
    np.testing.assert_allclose(losses.l1(x, x_hat), [0.5, 0.25])
    np.testing.assert_allclose(
        losses.psnr(x, x_hat), 10 * np.log10(4.0 / np.array([0.25, 0.0625])), rtol=1e-6
    )
    # SSIM of constant images c1, c2: (2 c1 c2 + C1) / (c1^2 + c2^2 + C1) (no structure term)
    c1, c2, k1 = 0.3, -0.2, (0.01 * 2) ** 2
    a, b = jnp.full((1, 8, 8, 1), c1), jnp.full((1, 8, 8, 1), c2)
    np.testing.assert_allclose(
        losses.ssim(a, b), [(2 * c1 * c2 + k1) / (c1**2 + c2**2 + k1)], rtol=1e-4
    )
    noise = jax.random.uniform(jax.random.key(0), (1, 9, 9, 1), minval=-1, maxval=1)
    np.testing.assert_allclose(losses.ssim(noise, noise), [1.0], rtol=1e-5)
    assert float(losses.ssim(noise, 0.5 * noise)[0]) < 0.95  # a contrast change costs
    rec = losses.reconstruction(a, b, ssim_weight=0.5)
    np.testing.assert_allclose(rec, 0.5 + 0.5 * (1 - losses.ssim(a, b)), rtol=1e-6)
    with pytest.raises(ValueError, match="H, W >= 7"):
        losses.ssim(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 1)))


def test_total_loss_is_reconstruction_plus_weighted_kl():
    x = jnp.zeros((2, 8, 8, 1))
    mean, logvar = jnp.ones((2, 2, 2, 1)), jnp.zeros((2, 2, 2, 1))
    loss, metrics = losses.autoencoder_loss(
        x, x + 0.5, mean, logvar, kl_weight=0.1, ssim_weight=0.0
    )
    np.testing.assert_allclose(loss, 0.5 + 0.1 * 2.0, rtol=1e-6)  # KL = 4 * 1/2
    np.testing.assert_allclose(metrics["kl"], 2.0)


def test_posterior_samples_have_the_posterior_moments():
    mean, logvar = jnp.full((4000, 2), 1.5), jnp.full((4000, 2), jnp.log(0.25))
    z = model.sample_posterior(jax.random.key(0), mean, logvar)
    # 8000 draws: the sample mean's standard error is 0.5 / sqrt(8000) = 0.0056
    assert abs(float(z.mean()) - 1.5) < 4 * 0.0056
    assert abs(float(z.std()) - 0.5) < 0.02


def test_shapes_and_a_bad_input_size():
    ae = model.Autoencoder(ch=8, ch_mult=(1, 2, 2), latent_channels=3, num_groups=4)
    x = jnp.zeros((2, 28, 28, 1))
    variables = jax.jit(ae.init)(jax.random.key(0), x)
    x_hat, mean, logvar = jax.jit(ae.apply)(variables, x, jax.random.key(1))
    assert mean.shape == logvar.shape == (2, 7, 7, 3) and x_hat.shape == x.shape
    with pytest.raises(ValueError, match=r"divisible by 4 .* got shape \(2, 30, 30, 1\)"):
        ae.apply(variables, jnp.zeros((2, 30, 30, 1)), method=ae.encode)


def test_scale_factor_gives_unit_variance_on_fresh_draws():
    """Measured on 64 images with one key, the factor scales other posterior draws of the
    same images (another key) to unit variance: 64 x 49 x 4 entries, std within 3%."""
    ae = model.Autoencoder(ch=8, ch_mult=(1, 2, 2), latent_channels=4, num_groups=4)
    images = np.asarray(jax.random.uniform(jax.random.key(0), (64, 28, 28, 1), minval=-1, maxval=1))
    params = jax.jit(ae.init)(jax.random.key(1), images[:1])["params"]
    scale = ae_train.measure_scale_factor(ae, params, images, jax.random.key(2))
    mean, logvar = jax.jit(lambda x: ae.apply({"params": params}, x, method=ae.encode))(images)
    raw_std = float(np.std(model.sample_posterior(jax.random.key(3), mean, logvar)))
    assert abs(raw_std - 1.0) > 0.1  # the raw latents are not unit variance already
    assert abs(scale * raw_std - 1.0) < 0.03


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ae")
    with tfds.testing.mock_data(num_examples=16):
        train.main(["--config=configs/mnist_autoencoder.py:smoke", f"--workdir={root / 'ae'}"])
    return root


def test_smoke_training_stores_the_scale_factor(smoke_run):
    ae = ae_run.load(str(smoke_run / "ae"))
    assert ae.step == 1 and np.isfinite(ae.scale_factor) and ae.scale_factor > 0
    x = jnp.zeros((2, 28, 28, 1))
    assert ae.decode(ae.encode(jax.random.key(0), x)).shape == x.shape


@pytest.mark.slow  # a second compile of the training step
def test_smoke_training_resumes(smoke_run):
    with tfds.testing.mock_data(num_examples=16):
        train.main(
            [
                "--config=configs/mnist_autoencoder.py:smoke",
                f"--workdir={smoke_run / 'ae'}",
                "--config.train.num_steps=2",
            ]
        )
    assert ae_run.load(str(smoke_run / "ae")).step == 2


def test_encode_and_evaluate_commands(smoke_run, capsys):
    out = smoke_run / "latents_train.npz"
    with tfds.testing.mock_data(num_examples=16):
        args = [f"--workdir={smoke_run / 'ae'}", "--split=train", "--max_len=72"]
        ae_cli.main(["--action=encode", f"--out={out}", *args])
        ae_cli.main(["--action=evaluate", "--limit=8", f"--grid={smoke_run / 'ae.png'}", *args])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"psnr", "ssim", "latent_std"} and result["images"] == 8
    grid = np.asarray(Image.open(smoke_run / "ae.png"))  # 8 images over 8 reconstructions
    assert grid.shape == (2 * (2 * 29 + 1), 2 * (8 * 29 + 1))
    with np.load(out) as f:
        assert f["latents"].shape == (16, 7, 7, 4) and f["tokens"].shape == (16, 72)
        assert f["semantic_map"].shape == (16, 28, 28, 1) and len(f["captions"]) == 16
        assert set(np.unique(f["semantic_map"])) <= {0.0, 1.0}


def test_an_unknown_autoencoder_field_is_named():
    import ml_collections

    config = ml_collections.ConfigDict(
        {"autoencoder": {"ch": 8, "depth": 3}, "data": {"channels": 1}}
    )
    with pytest.raises(ValueError, match=r"unknown fields \['depth'\]; valid: .*kl_weight"):
        ae_train.build_network(config)


def test_resuming_with_another_architecture_is_refused_clearly(smoke_run, capsys):
    args = ["--config=configs/mnist_autoencoder.py:smoke", f"--workdir={smoke_run / 'ae'}"]
    with tfds.testing.mock_data(num_examples=16), pytest.raises(SystemExit) as e:
        train.main([*args, "--config.autoencoder.ch=16", "--config.train.num_steps=5"])
    assert e.value.code == 1
    assert "different config (autoencoder.ch: 8 there vs 16 here)" in capsys.readouterr().err


def test_a_shipped_autoencoder_loads_as_its_run(smoke_run, tmp_path, monkeypatch):
    from jaxdiff import pretrained

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path))
    args = [f"--workdir={smoke_run / 'ae'}", "--name=tiny_ae", "--dtype=float32"]
    pretrained.main([*args, f"--out_dir={tmp_path}"])
    assert pretrained.available("autoencoder") == ["tiny_ae"] and pretrained.available() == []
    shipped, trained = ae_run.load("tiny_ae"), ae_run.load(str(smoke_run / "ae"))
    assert shipped.scale_factor == trained.scale_factor and shipped.step == trained.step
    jax.tree.map(np.testing.assert_array_equal, shipped.params, trained.params)
    x = jnp.linspace(-1, 1, 2 * 28 * 28).reshape(2, 28, 28, 1)
    np.testing.assert_array_equal(ae_run.reconstruct(shipped, x), ae_run.reconstruct(trained, x))
    with pytest.raises(ValueError, match="is an autoencoder, not a diffusion model"):
        pretrained.load("tiny_ae")
    with pytest.raises(ValueError, match="neither a shipped autoencoder .tiny_ae."):
        ae_run.load(str(tmp_path / "nowhere"))
