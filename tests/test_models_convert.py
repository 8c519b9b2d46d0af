"""diffusers UNet2DModel -> jaxdiff UNet: same outputs, tensors-only loading, clear errors."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from jaxdiff.models import convert  # noqa: E402

DDPM_CIFAR10 = convert.DDPM_CIFAR10_CONFIG
# The same block structure at a size that runs in seconds (two attention levels, 3 levels).
SMALL = dict(
    DDPM_CIFAR10,
    sample_size=16,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
)
# diffusers' own defaults elsewhere: multi-head attention, symmetric padding, flipped sin/cos.
SMALL_MULTIHEAD = dict(
    SMALL, attention_head_dim=8, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0
)


def diffusers_model(config, seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(**config).eval()


def compare(model, config, batch=2):
    size, ch = config["sample_size"], config["in_channels"]
    x = torch.randn(batch, ch, size, size, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([3.0, 721.0][:batch])
    with torch.no_grad():
        ref = model(x, t).sample.numpy().transpose(0, 2, 3, 1)
    net, variables = convert.from_diffusers(model.state_dict(), dict(model.config))
    x_nhwc = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    out = np.asarray(jax.jit(net.apply)(variables, x_nhwc, jnp.asarray(t.numpy())))
    return out, ref, net, variables


@pytest.mark.parametrize("config", [SMALL, SMALL_MULTIHEAD], ids=["ddpm_style", "multihead"])
def test_imported_unet_matches_diffusers(config):
    model = diffusers_model(config)
    out, ref, net, variables = compare(model, config)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    torch_count = sum(p.numel() for p in model.parameters())
    assert sum(a.size for a in jax.tree.leaves(variables)) == torch_count


def test_imported_ddpm_cifar10_matches_diffusers():
    # The full published config: ~10 s of CPU, so it runs in the fast suite.
    model = diffusers_model(DDPM_CIFAR10)
    out, ref, net, variables = compare(model, DDPM_CIFAR10)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    assert sum(a.size for a in jax.tree.leaves(variables)) == 35_746_307
    # The imported network is the ddpm_cifar10 preset's architecture.
    from jaxdiff import models

    preset = models.create("ddpm_cifar10")
    shapes = jax.eval_shape(
        preset.init, {"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), jnp.ones((1,))
    )
    assert jax.tree.map(lambda a: a.shape, shapes["params"]) == jax.tree.map(
        jnp.shape, variables["params"]
    )


def test_files_and_legacy_names_load(tmp_path):
    from safetensors.torch import save_file

    model = diffusers_model(SMALL)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "unet.safetensors")
    torch.save(state, tmp_path / "unet.bin")
    legacy = {  # pre-0.14 diffusers attention names
        k.replace("to_q", "query")
        .replace("to_k", "key")
        .replace("to_v", "value")
        .replace("to_out.0", "proj_attn"): v
        for k, v in state.items()
    }
    _, reference = convert.from_diffusers(state, dict(model.config))
    for weights in (tmp_path / "unet.safetensors", str(tmp_path / "unet.bin"), legacy):
        _, variables = convert.from_diffusers(weights, dict(model.config))
        jax.tree.map(np.testing.assert_array_equal, variables, reference)


def test_bin_files_that_would_run_code_are_refused(tmp_path):
    class Payload:  # unpickling this would call a function from the file
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"conv_in.weight": Payload()}, tmp_path / "evil.bin")
    with pytest.raises(pickle.UnpicklingError):
        convert.load_state_dict(tmp_path / "evil.bin")
    with pytest.raises(ValueError, match="must be .safetensors, .bin, .pt or .pth"):
        convert.load_state_dict(tmp_path / "weights.pkl")


def test_mismatched_weights_are_listed():
    model = diffusers_model(SMALL)
    state = dict(model.state_dict())
    state.pop("mid_block.attentions.0.to_q.weight")
    state["conv_in.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(ValueError, match="(?s)conv_in.weight: shape.*missing mid_attn/attn/q"):
        convert.from_diffusers(state, dict(model.config))
    state = dict(model.state_dict(), **{"mid_block.extra.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="unexpected tensor 'mid_block.extra.weight'"):
        convert.from_diffusers(state, dict(model.config))


def test_unsupported_configs_are_refused():
    with pytest.raises(ValueError, match="unsupported time_embedding_type='fourier'"):
        convert.unet_from_config(dict(SMALL, time_embedding_type="fourier"))
    with pytest.raises(ValueError, match="unsupported blocks"):
        convert.unet_from_config(dict(SMALL, down_block_types=("SkipDownBlock2D",) * 3))
    with pytest.raises(ValueError, match="do not mirror"):
        convert.unet_from_config(dict(SMALL, up_block_types=("UpBlock2D",) * 3))
