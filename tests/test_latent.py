"""Latent diffusion: the ``latent`` config section, condition dropout, a smoke training of
configs/mnist_text2img.py (text and map variants) on a synthetic latent set, generation
from prompts / maps, and the whole CLI chain (autoencoder -> encode -> train -> sample)."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdiff import latent, pretrained, sample, text2img, train
from jaxdiff.autoencoder import losses as autoencoder_losses
from jaxdiff.data import captions
from jaxdiff.text import prompts
from jaxdiff.training import components, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("fast_module_compiles")  # module fixtures compile too


def config(variant):
    spec = importlib.util.spec_from_file_location(
        "t2i", os.path.join(REPO, "configs/mnist_text2img.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def test_bad_latent_sections_are_named():
    bad = ml_collections.ConfigDict({"latent": {"text": True, "width": 3}})
    with pytest.raises(ValueError, match=r"unknown fields \['width'\]; valid: .*text_width"):
        latent.settings(bad)
    with pytest.raises(ValueError, match="text=True and/or a semantic_map"):
        latent.Settings(text=False)
    with pytest.raises(ValueError, match=r"valid: \['edges', 'mask'\]"):
        latent.Settings(semantic_map="depth")
    c = config("smoke")
    c.train.sample_every = 10
    with pytest.raises(ValueError, match="a latent model draws no in-run grids"):
        loop.check_config(c)


def test_condition_dropout_rate_and_the_wrapper_at_rate_zero():
    s = latent.Settings(text=True, semantic_map="mask", max_len=8, map_size=4)
    null = latent.null_cond(s)
    cond = {"tokens": jnp.full((4000, 8), 7, jnp.int32), "semantic_map": jnp.ones((4000, 4, 4, 1))}
    out = latent.drop_conditions(jax.random.key(0), cond, null, 0.25)
    dropped_text = np.all(np.asarray(out["tokens"]) == np.asarray(null["tokens"]), axis=1)
    dropped_map = np.all(np.asarray(out["semantic_map"]) == 0, axis=(1, 2, 3))
    # 4000 draws: standard error sqrt(0.25 * 0.75 / 4000) = 0.0068
    assert abs(dropped_text.mean() - 0.25) < 0.03 and abs(dropped_map.mean() - 0.25) < 0.03
    assert 0.03 < np.mean(dropped_text & dropped_map) < 0.1  # independent: ~1/16
    seen = {}

    def inner(model_fn, key, x0, *, t=None, t_weights=None, **c):
        seen.update(c)
        return 0.0, {}

    latent.make_loss(inner, latent.Settings(text=True, max_len=8, cond_dropout=0.0))(
        None, jax.random.key(0), jnp.zeros((4, 2)), tokens=cond["tokens"][:4]
    )
    assert np.array_equal(seen["tokens"], cond["tokens"][:4])


def synthetic_latents(path, c, n=8):
    rng = np.random.default_rng(0)
    texts = ["a thin seven", "a thick, slanted one in the top left"] * (n // 2)
    maps = (rng.random((n, 28, 28, 1)) > 0.5).astype(np.float32)
    np.savez(
        path,
        latents=rng.normal(size=components.example_shape(c, n)).astype(np.float32),
        labels=np.arange(n) % 10,
        tokens=prompts.encode_prompts(texts, c.latent.max_len),
        semantic_map=maps,
    )


# map_smoke is slow-marked for CI time: maps through components are checked by the DiT
# test below, and the command-line chain trains and samples a map model.
@pytest.mark.parametrize("variant", ["smoke", pytest.param("map_smoke", marks=pytest.mark.slow)])
def test_smoke_training_and_generation_without_a_decoder(variant, tmp_path):
    c = config(variant)
    synthetic_latents(str(tmp_path / "latents_train.npz"), c)
    c.data.path = str(tmp_path / "latents_{split}.npz")
    c.latent.autoencoder = ""
    state = loop.train(c, str(tmp_path / "run"))
    assert int(state.step) == 1
    if variant == "smoke":  # the text encoder is trained with the U-Net: one tree
        assert "text" in state.params and "backbone" in state.params
    gen = text2img.load(str(tmp_path / "run"))
    if variant == "smoke":
        z = gen.generate(jax.random.key(0), prompts=["a thin seven", ""], guidance=3.0)
        with pytest.raises(ValueError, match="too long"):
            gen.generate(jax.random.key(0), prompts=["a seven " * 10] * 2)
    else:
        z = gen.generate(jax.random.key(0), maps=np.zeros((2, 28, 28, 1)), guidance=1.0)
        with pytest.raises(ValueError, match="no text encoder"):
            gen.generate(jax.random.key(0), prompts=["a seven"] * 2, maps=np.zeros((2, 28, 28, 1)))
    assert z.shape == (2, 7, 7, 4) and np.all(np.isfinite(z))
    if variant == "smoke":  # shipped as float32, it samples exactly as the run does
        assert_ships_exactly(tmp_path, gen, prompts=["a thin seven", ""], guidance=3.0)


def assert_ships_exactly(tmp_path, gen, **inputs):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pretrained, "WEIGHTS_DIR", str(tmp_path / "weights"))
        pretrained.load.cache_clear()  # a name cached from another folder
        run = str(tmp_path / "run")
        pretrained.main([f"--workdir={run}", "--name=tiny_t2i", "--dtype=float32"])
        assert pretrained.available("latent") == ["tiny_t2i"]
        with open(tmp_path / "weights" / "tiny_t2i.json", encoding="utf-8") as f:
            shipped_config = json.load(f)["config"]  # this machine's path is not recorded
        assert shipped_config["data"]["path"] == "runs/latents_{split}.npz"
        shipped = text2img.load("tiny_t2i").generate(jax.random.key(0), **inputs)
        np.testing.assert_array_equal(shipped, gen.generate(jax.random.key(0), **inputs))
        with pytest.raises(SystemExit, match="not a shipped autoencoder"):
            pretrained.main([f"--workdir={run}", "--name=x", "--autoencoder=tiny_ae"])
    pretrained.load.cache_clear()


def test_the_pixel_twin_diffuses_the_placed_images_themselves(tmp_path):
    from jaxdiff.autoencoder import __main__ as ae_cli

    pixels = tmp_path / "pixels_train.npz"
    with tfds.testing.mock_data(num_examples=8):
        ae_cli.main(["--action=pixels", "--split=train", f"--out={pixels}"])
        with pytest.raises(SystemExit):  # no autoencoder is taken
            ae_cli.main(["--action=pixels", "--workdir=ae", f"--out={pixels}"])
    with np.load(pixels) as f:
        expected = f["images"].astype(np.float32) / 127.5 - 1.0
        np.testing.assert_array_equal(f["latents"], expected)
        assert f["tokens"].shape == (8, 72) and len(f["captions"]) == 8
    c = config("pixel_smoke")
    c.data.path = str(tmp_path / "pixels_{split}.npz")
    run = str(tmp_path / "run")
    loop.train(c, run)
    gen = text2img.load(run, step=1)  # a kept step; the pixel twin has no decoder
    images = gen.generate(jax.random.key(0), prompts=["a seven", ""], guidance=2.0)
    assert images.shape == (2, 28, 28, 1) and np.all(np.isfinite(images))
    with pytest.raises(ValueError, match=r"no verified checkpoint of step 5 .* kept: \[1\]"):
        text2img.load(run, step=5)


@pytest.mark.slow  # three CLI trainings (autoencoder, text, map) and their samplers: ~2 min
def test_the_command_line_chain(tmp_path, capsys):
    from jaxdiff.autoencoder import __main__ as ae_cli

    ae, latents = tmp_path / "ae", tmp_path / "latents_train.npz"
    over = [
        f"--config.data.path={tmp_path}/latents_{{split}}.npz",
        f"--config.latent.autoencoder={ae}",
    ]
    with tfds.testing.mock_data(num_examples=16):
        train.main(["--config=configs/mnist_autoencoder.py:smoke", f"--workdir={ae}"])
        ae_cli.main(
            [
                "--action=encode",
                f"--workdir={ae}",
                "--split=train",
                f"--out={latents}",
                "--max_len=72",
            ]
        )
    for variant in ("smoke", "map_smoke"):
        train.main(
            [
                f"--config=configs/mnist_text2img.py:{variant}",
                f"--workdir={tmp_path / variant}",
                *over,
            ]
        )
    out = tmp_path / "sevens.npz"
    sample.main(
        [
            f"--workdir={tmp_path / 'smoke'}",
            "--prompt=a thin upright seven",
            "--guidance=4",
            "--negative_prompt=a one",
            "--num_samples=3",
            "--batch_size=2",
            f"--out={out}",
        ]
    )
    with np.load(out) as f:
        assert f["images"].shape == (3, 28, 28, 1) and np.abs(f["images"]).max() <= 1.0
    sample.main(
        [
            f"--workdir={tmp_path / 'map_smoke'}",
            f"--maps={latents}",
            "--num_samples=2",
            f"--out={tmp_path / 'maps.png'}",
        ]
    )
    assert (tmp_path / "maps.png").exists()
    with pytest.raises(SystemExit) as e:
        sample.main(
            [f"--workdir={tmp_path / 'smoke'}", f"--prompt={'a seven ' * 10}", f"--out={out}"]
        )
    assert e.value.code == 2 and "is too long" in capsys.readouterr().err


def test_a_dit_backbone_with_text_and_map_through_components():
    """Any backbone: a DiT (patch 1 on 7x7 latents) with both a prompt and a mask."""
    c = config("smoke")
    c.model.name = "dit_28x28"
    c.model.options = ml_collections.ConfigDict(dict(patch_size=1, hidden=32, depth=1, num_heads=2))
    c.latent.update(semantic_map="mask")
    net = components.build_model(c)
    params = jax.jit(lambda k: components.init_params(c, net, k))(jax.random.key(0))
    assert {"text", "map_encoder", "backbone"} <= set(params)
    cond = components.example_cond(c, 2)
    x = jnp.ones(components.example_shape(c, 2))
    out = jax.jit(lambda p: net.apply({"params": p}, x, jnp.ones(2), **cond))(params)
    assert out.shape == (2, 7, 7, 4)  # the latent channels, not the concatenated ones


SHIPPED_TEXT_MODEL = "mnist_text2img"


@pytest.mark.skipif(
    SHIPPED_TEXT_MODEL not in pretrained.available("latent"), reason="mnist_text2img not shipped"
)
def test_the_shipped_text_model_puts_digits_where_the_prompt_says(tmp_path):
    gen = text2img.load(SHIPPED_TEXT_MODEL)
    assert gen.run.config.latent.autoencoder in pretrained.available("autoencoder")
    places = ["a seven in the top left"] * 6 + ["a seven in the bottom right"] * 6
    leans = ["a left-leaning seven"] * 6 + ["a right-leaning seven"] * 6
    both = gen.generate(jax.random.key(0), prompts=places + leans)
    assert both.shape == (24, 28, 28, 1) and np.all(np.isfinite(both))
    ink = (np.clip(both, -1, 1) + 1) / 2
    rows, cols = captions.position(ink[:12])
    assert rows[6:].mean() - rows[:6].mean() > 2 and cols[6:].mean() - cols[:6].mean() > 2
    slant = captions.slant(ink[12:])  # the captions' thresholds are -0.25 and +0.25
    assert slant[:6].mean() < -0.2 and slant[6:].mean() > 0.2
    images = both[:12]
    from jaxdiff.autoencoder import run as ae_run  # its decoder's outputs re-encode faithfully

    images = np.clip(images, -1, 1)
    recon = ae_run.reconstruct(ae_run.load(gen.run.config.latent.autoencoder), images)
    assert float(np.mean(autoencoder_losses.psnr(jnp.asarray(images), recon))) > 20.0
    out = tmp_path / "fours.npz"
    sample.main(
        [f"--pretrained={SHIPPED_TEXT_MODEL}", "--prompt=a four", "--num_samples=2", f"--out={out}"]
    )
    with np.load(out) as f:
        assert f["images"].shape == (2, 28, 28, 1)
