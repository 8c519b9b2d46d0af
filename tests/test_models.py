"""Presets, published parameter counts, output shapes, zero-init and bad-input errors.

Parameter counts and shape checks use ``jax.eval_shape``: nothing is allocated or compiled.
"""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import models

KEY = {"params": jax.random.key(0)}


def abstract_init(net, shape, **cond):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    s = jax.ShapeDtypeStruct(shape[:1], jnp.float32)
    return jax.eval_shape(lambda x, s: net.init(KEY, x, s, **cond), x, s)


def num_params(variables) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables["params"]))


# Published sizes: Ho et al. 2020 (35.7M); Peebles & Xie 2023, Table 4 (Gflops table gives
# S/2 33M, B/2 130M, L/2 458M, XL/2 675M) for 32x32x4 latents, 1000 classes, learned sigma.
@pytest.mark.parametrize(
    "name, shape, published",
    [
        ("ddpm_cifar10", (1, 32, 32, 3), 35.7e6),
        ("dit_s_2", (1, 32, 32, 4), 33e6),
        ("dit_b_2", (1, 32, 32, 4), 130e6),
        ("dit_l_2", (1, 32, 32, 4), 458e6),
        ("dit_xl_2", (1, 32, 32, 4), 675e6),
    ],
)
def test_published_parameter_counts(name, shape, published):
    net = models.create(name)
    label = {"label": jnp.zeros((1,), jnp.int32)} if name.startswith("dit") else {}
    count = num_params(abstract_init(net, shape, **label))
    assert abs(count - published) / published < 0.01, (name, count)


def test_dit_presets_follow_the_paper():
    assert models.create("dit_xl_2").num_classes == 1000
    assert models.create("dit_xl_2").learn_sigma
    sizes = {n: models.create(n) for n in ("dit_s_8", "dit_b_4", "dit_l_2", "dit_xl_8")}
    assert [(m.depth, m.hidden, m.num_heads, m.patch_size) for m in sizes.values()] == [
        (12, 384, 6, 8),
        (12, 768, 12, 4),
        (24, 1024, 16, 2),
        (28, 1152, 16, 8),
    ]


def test_small_presets_are_small():
    assert num_params(abstract_init(models.create("unet_8x8"), (1, 8, 8, 1))) < 1e6
    count = num_params(abstract_init(models.create("unet_28x28"), (1, 28, 28, 1)))
    assert 1e6 <= count <= 3e6
    net = models.create("unet_28x28")
    assert all(net.ch * m % 8 == 0 and net.ch * m % net.num_groups == 0 for m in net.ch_mult)
    assert num_params(abstract_init(models.create("dit_28x28"), (1, 28, 28, 1))) < 3e6


@pytest.mark.parametrize(
    "name, shape",
    [
        ("ddpm_cifar10", (2, 32, 32, 3)),
        ("ddpmpp", (2, 32, 32, 3)),
        ("ncsnpp", (2, 32, 32, 3)),
        ("unet_8x8", (2, 8, 8, 1)),
        ("unet_28x28", (2, 28, 28, 1)),
        ("dit_28x28", (2, 28, 28, 1)),
        ("dit_s_4", (2, 32, 32, 4)),
    ],
)
@pytest.mark.parametrize("learn_sigma", [False, True])
def test_output_shapes(name, shape, learn_sigma):
    net = models.create(name, learn_sigma=learn_sigma, num_classes=0)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    s = jax.ShapeDtypeStruct(shape[:1], jnp.float32)
    out = jax.eval_shape(lambda x, s: net.apply(net.init(KEY, x, s), x, s), x, s)
    assert out.shape == shape[:3] + (shape[3] * (2 if learn_sigma else 1),)
    assert out.dtype == jnp.float32


def test_out_channels_override():
    net = models.create("unet_8x8", out_channels=3, learn_sigma=True)
    x, s = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.float32)
    out = jax.eval_shape(lambda x, s: net.apply(net.init(KEY, x, s), x, s), x, s)
    assert out.shape == (1, 8, 8, 6)


def test_dit_initial_output_is_exactly_zero():
    net = models.create("dit_28x28", depth=2, num_classes=10)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    s, y = jnp.array([0.3, 2.0]), jnp.array([1, 10])
    out = jax.jit(lambda x: net.apply(net.init(KEY, x, s, label=y), x, s, label=y))(x)
    assert out.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(out), 0.0)


def test_unet_zero_initialised_layers():
    # A one-level net keeps compilation short; the zero-init code path is the presets'.
    net = models.create("unet_8x8", ch_mult=(1,), attn_resolutions=(8,))
    variables = jax.jit(net.init)(KEY, jnp.zeros((1, 8, 8, 1)), jnp.ones((1,)))
    params = variables["params"]
    zero = [params["conv_out"], params["down0_res0"]["conv2"], params["mid_attn"]["attn"]["out"]]
    for layer in zero:
        np.testing.assert_array_equal(np.asarray(layer["kernel"]), 0.0)
        np.testing.assert_array_equal(np.asarray(layer["bias"]), 0.0)
    for layer in [params["conv_in"], params["down0_res0"]["conv1"], params["emb_dense1"]]:
        assert np.abs(np.asarray(layer["kernel"])).max() > 0  # the others are random


# ---------------------------------------------------------------- registry and bad input


def test_presets_registry():
    expected = {"ddpm_cifar10", "ddpmpp", "ncsnpp", "unet_8x8", "unet_28x28", "dit_28x28"}
    expected |= {"video_unet_32"}
    expected |= {f"dit_{s}_{p}" for s in ("s", "b", "l", "xl") for p in (2, 4, 8)}
    assert set(models.PRESETS) == expected
    with pytest.raises(ValueError, match="valid presets: .*dit_b_2.*unet_8x8"):
        models.create("unet_9x9")
    with pytest.raises(ValueError, match="unet_8x8: unknown fields \\['chanels'\\]; valid"):
        models.create("unet_8x8", chanels=3)


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("ddpm_cifar10", (32, 32, 3), "ddpm_cifar10: x must be \\(B, H, W, C\\), rank 4"),
        ("dit_b_4", (1, 32, 32), "dit_b_4: x must be \\(B, H, W, C\\), rank 4"),
        ("ddpm_cifar10", (1, 36, 36, 3), "ddpm_cifar10: spatial size \\(36, 36\\).*by 8"),
        ("unet_28x28", (1, 30, 28, 1), "unet_28x28: spatial size \\(30, 28\\).*by 4"),
        ("dit_s_8", (1, 28, 28, 4), "dit_s_8: spatial size \\(28, 28\\).*patch_size=8"),
    ],
)
def test_bad_input_shapes(name, shape, message):
    net = models.create(name, num_classes=0)
    with pytest.raises(ValueError, match=message):
        abstract_init(net, shape)


def test_groupnorm_split_error_names_preset_and_value():
    with pytest.raises(ValueError, match="unet_28x28: GroupNorm can't split 40 channels.*=16"):
        abstract_init(models.create("unet_28x28", ch=40, num_groups=16), (1, 28, 28, 1))


def test_noise_level_shape_error():
    net = models.create("unet_8x8")
    with pytest.raises(ValueError, match="unet_8x8: noise_level must be \\(2,\\)"):
        jax.eval_shape(net.init, KEY, jnp.zeros((2, 8, 8, 1)), jnp.zeros((3,)))


def test_models_never_import_processes_or_samplers():
    forbidden = {"jaxdiff.sdes", "jaxdiff.schedules", "jaxdiff.samplers", "jaxdiff.losses"}
    for path in pathlib.Path(models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            assert not names & forbidden, (path.name, names & forbidden)


def test_parameters_stay_float32_under_bfloat16_compute():
    for name, shape in (("unet_8x8", (1, 8, 8, 1)), ("dit_28x28", (1, 8, 8, 1))):
        variables = abstract_init(models.create(name, dtype=jnp.bfloat16), shape)
        assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", ["unet_28x28", "dit_28x28"])
def test_class_table_has_a_null_row(name):
    net = models.create(name, num_classes=10)
    variables = abstract_init(net, (2, 28, 28, 1), label=jax.ShapeDtypeStruct((2,), jnp.int32))
    assert variables["params"]["label_emb"]["table"]["embedding"].shape[0] == 11


def test_context_adds_cross_attention_layers_only_when_asked():
    ctx = dict(context=jnp.zeros((1, 3, 5)), context_mask=jnp.ones((1, 3), bool))
    with_ctx = abstract_init(models.create("unet_8x8", context_dim=5), (1, 8, 8, 1), **ctx)
    without = abstract_init(models.create("unet_8x8"), (1, 8, 8, 1))
    assert "cross" in with_ctx["params"]["mid_attn"]
    assert "cross" not in without["params"]["mid_attn"]
    dit_ctx = abstract_init(models.create("dit_28x28", context_dim=5), (1, 8, 8, 1), **ctx)
    assert dit_ctx["params"]["block0"]["cross"]["k"]["kernel"].shape == (5, 128)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(embedding="learned"), "unet_8x8: unknown embedding 'learned'; valid"),
        (dict(down_padding="VALID"), "unet_8x8: down_padding must be SAME or SYMMETRIC"),
        (dict(head_dim=24), "unet_8x8: 32 channels not divisible by head_dim=24"),
    ],
)
def test_bad_unet_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        abstract_init(models.create("unet_8x8", **overrides), (1, 8, 8, 1))


def test_bad_dit_width():
    with pytest.raises(ValueError, match="dit_28x28: hidden=130 must be divisible by num_heads=4"):
        abstract_init(models.create("dit_28x28", hidden=130), (1, 8, 8, 1))
