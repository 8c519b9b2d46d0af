"""FID / KID maths: closed forms, scipy's sqrtm on ill-conditioned matrices, stats files."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from jaxdiff.evaluation import fid


def _random_spd(rng, d, log_cond):
    """Random SPD matrix with eigenvalues log-spaced over log_cond decades."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    w = np.logspace(-log_cond, 0, d)
    return (q * w) @ q.T


def test_sqrtm_psd_matches_scipy_on_ill_conditioned():
    rng = np.random.default_rng(0)
    a = _random_spd(rng, 64, log_cond=10)
    ours = fid.sqrtm_psd(a)
    ref = np.real(scipy.linalg.sqrtm(a))
    np.testing.assert_allclose(ours, ref, atol=1e-9 * np.abs(ref).max())
    np.testing.assert_allclose(ours @ ours, a, atol=1e-12)


def test_trace_sqrt_product_matches_scipy_on_ill_conditioned():
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 64, 8), _random_spd(rng, 64, 8)
    ref = np.trace(np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert fid.trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-8)


def test_frechet_distance_closed_form_commuting_covariances():
    # Same eigenvectors: FID = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2 exactly.
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((32, 32)))
    a, b = rng.uniform(0.1, 4.0, 32), rng.uniform(0.1, 4.0, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = fid.frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_rank_deficient_is_exact_where_scipy_is_not():
    # Singular covariances (as with fewer samples than dims): the eigen approach stays exact.
    a = np.zeros(256)
    b = np.zeros(256)
    a[:50] = np.logspace(-6, 2, 50)
    b[:50] = np.logspace(2, -6, 50)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((256, 256)))
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    zeros = np.zeros(256)
    assert fid.frechet_distance(zeros, s1, zeros, s2) == pytest.approx(expected, rel=1e-9)


def _fid_self(dims):
    # 4096 correlated, ReLU'd (Inception-like) feature vectors of `dims` dimensions.
    rng = np.random.default_rng(4)
    mix = rng.standard_normal((256, dims)) / 16.0
    feats = np.maximum(rng.standard_normal((4096, 256)) @ mix + 0.1, 0.0).astype(np.float32)
    mu, sigma = fid.feature_statistics(feats)
    return fid.frechet_distance(mu, sigma, mu, sigma), np.trace(sigma)


def test_fid_of_a_set_with_itself_is_zero():
    value, trace = _fid_self(512)
    assert abs(value) <= 1e-6 * trace


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_2048_dims():
    value, trace = _fid_self(2048)  # two 2048x2048 eigendecompositions: ~5-40 s on CPU
    assert abs(value) <= 1e-6 * trace


def test_feature_statistics_float64_and_matches_numpy():
    feats = np.random.default_rng(5).standard_normal((300, 16)).astype(np.float32)
    mu, sigma = fid.feature_statistics(feats)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False), rtol=1e-12)


def test_feature_statistics_warns_when_fewer_samples_than_dims():
    with pytest.warns(UserWarning, match="rank-deficient"):
        fid.feature_statistics(np.ones((10, 2048)) + np.arange(10)[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid.feature_statistics(np.random.default_rng(0).standard_normal((64, 32)))


def test_statistics_file_round_trip_pytorch_fid_format(tmp_path):
    rng = np.random.default_rng(6)
    mu, sigma = rng.standard_normal(8), _random_spd(rng, 8, 2)
    path = str(tmp_path / "stats.npz")
    fid.save_statistics(path, mu, sigma)
    with np.load(path) as raw:  # what pytorch-fid reads: f['mu'][:], f['sigma'][:]
        assert sorted(raw.files) == ["mu", "sigma"]
    mu2, sigma2 = fid.load_statistics(path)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    np.savez(str(tmp_path / "bad.npz"), m=mu)
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        fid.load_statistics(str(tmp_path / "bad.npz"))


def test_mmd2_unbiased_matches_direct_double_sum():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((9, 5)) + 0.5
    k = lambda a, b: (a @ b / 5 + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i in range(12) for j in range(12) if i != j) / (12 * 11)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(12) for j in range(9)) / (12 * 9)
    assert fid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_same_distribution_near_zero_shifted_positive():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((2000, 32)), rng.standard_normal((2000, 32))
    mean, std = fid.kid(a, b, num_subsets=20, subset_size=500)
    assert abs(mean) < 3 * std + 1e-3  # unbiased: zero in expectation
    shifted, _ = fid.kid(a, b + 0.5, num_subsets=20, subset_size=500)
    assert shifted > 10 * max(std, 1e-4)


@pytest.mark.parametrize(
    "images, data_range, match",
    [
        (np.zeros((4, 8, 8)), (0, 255), "shape \\(N, H, W, C\\)"),
        (np.zeros((4, 8, 8, 2)), (0, 255), "C = 1 or 3"),
        (np.zeros((4, 8, 8, 3), np.int32), (0, 255), "uint8 or floating"),
        (np.full((4, 8, 8, 3), 2.0), (-1, 1), "outside data_range"),
        (np.zeros((4, 8, 8, 3), np.uint8), (-1, 1), "uint8 images need"),
        (np.zeros((0, 8, 8, 3)), (-1, 1), "empty"),
    ],
)
def test_bad_images_rejected(images, data_range, match):
    with pytest.raises(ValueError, match=match):
        fid.extract_features(images, lambda x: x, data_range=data_range)


def test_extract_features_pads_last_batch_and_keeps_order():
    images = np.random.default_rng(9).uniform(-1, 1, (7, 4, 4, 3)).astype(np.float32)
    calls = []

    def fn(batch):
        calls.append(batch.shape)
        return batch.reshape(len(batch), -1)[:, :5]

    out = fid.extract_features(images, fn, batch_size=3, data_range=(-1, 1))
    np.testing.assert_array_equal(out, images.reshape(7, -1)[:, :5])
    assert set(calls) == {(3, 4, 4, 3)}  # one shape -> one compile


def test_frechet_distance_rejects_mismatched_stats():
    with pytest.raises(ValueError, match="dimensions differ"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="mu must be"):
        fid.frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))


def test_cli_with_statistics_files(tmp_path, capsys):
    rng = np.random.default_rng(10)
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    s1, s2 = _random_spd(rng, 6, 3), _random_spd(rng, 6, 3)
    fid.save_statistics(a, np.zeros(6), s1)
    fid.save_statistics(b, np.ones(6), s2)
    # Statistics only: no features are needed, so no Inception weights are loaded.
    fid.main([a, b, "--weights", str(tmp_path / "absent.npz")])
    expected = fid.frechet_distance(np.zeros(6), s1, np.ones(6), s2)
    assert capsys.readouterr().out.strip() == f"FID {expected:.4f}"
    # Both sets' statistics can be written back; a set with itself prints 0.0000, not -0.0000.
    a2, b2 = str(tmp_path / "a2.npz"), str(tmp_path / "b2.npz")
    fid.main([a, b, "--save_stats", a2, "--save_stats_b", b2])
    np.testing.assert_array_equal(fid.load_statistics(b2)[1], s2)
    capsys.readouterr()
    fid.main([a2, a2])
    assert capsys.readouterr().out.strip() == "FID 0.0000"


def test_statistics_for_images_npz_picks_range_by_dtype(tmp_path):
    images = np.random.default_rng(11).uniform(-1, 1, (40, 4, 4, 1)).astype(np.float32)
    np.savez(str(tmp_path / "imgs.npz"), samples=images)
    ranges = []

    def make_fn(data_range):
        ranges.append(data_range)
        return lambda x: x.reshape(len(x), -1)

    mu, sigma, feats = fid.statistics_for(str(tmp_path / "imgs.npz"), make_fn, batch_size=16)
    assert ranges == [(-1, 1)]
    np.testing.assert_allclose(feats, images.reshape(40, -1), rtol=1e-6)
    np.testing.assert_allclose(mu, images.reshape(40, -1).mean(0), rtol=1e-5)
    assert sigma.shape == (16, 16)


def test_inception_feature_fn_random_weights_sharded():
    import jax

    from jaxdiff.evaluation import inception

    x = jax.ShapeDtypeStruct((1, 299, 299, 3), np.float32)
    shapes = jax.eval_shape(inception.InceptionV3().init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(12)
    params = jax.tree.map(lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), shapes)
    fn = fid.inception_feature_fn(params, data_range=(0, 255))  # one compile for (2, 16, 16, 3)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    out = np.asarray(fn(images))
    swapped = np.asarray(fn(images[::-1]))
    assert out.shape == (2, 2048) and np.all(np.isfinite(out)) and np.any(out > 0)
    np.testing.assert_allclose(swapped[::-1], out, rtol=1e-5, atol=1e-6)  # per-image
    with pytest.raises(ValueError, match="logits need the fc head"):
        fid.inception_feature_fn(params, output="logits")
    with pytest.raises(ValueError, match="output must be 'pool' or 'logits'"):
        fid.inception_feature_fn(params, output="mixed_9")


def test_kid_rejects_bad_features():
    with pytest.raises(ValueError, match="equal D"):
        fid.kid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fid.kid(np.zeros((1, 3)), np.zeros((5, 3)))


def test_load_images_from_tfds_and_npz(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=8):
        images = fid.load_images("tfds:mnist:test:5")
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8
    np.savez(str(tmp_path / "x.npz"), images)
    np.testing.assert_array_equal(fid.load_images(str(tmp_path / "x.npz")), images)


def test_validate_images_tolerates_round_off_only():
    fid.validate_images(np.full((2, 4, 4, 3), 1.0 + 1e-4, np.float32), (-1, 1))
    with pytest.raises(ValueError, match="outside data_range"):
        fid.validate_images(np.full((2, 4, 4, 3), 1.01, np.float32), (-1, 1))
    with pytest.raises(ValueError, match="outside data_range"):
        fid.validate_images(np.full((2, 4, 4, 3), np.nan, np.float32), (-1, 1))
    with pytest.raises(ValueError, match="low < high"):
        fid.validate_images(np.zeros((2, 4, 4, 3), np.float32), (1, -1))
