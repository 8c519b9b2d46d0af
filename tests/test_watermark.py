"""The watermark: detected when embedded (after JPEG quality 90 too), silent otherwise.

Synthetic MNIST-like images (saturated curved strokes on a flat black background) stand in
for served samples; benchmarks/watermark.py measures the real ones. The null checks are
exact properties: over random keys the statistic has mean 0 and variance 1, and its
p-value bounds the false-positive rate.
"""

import io
import json
import math

import numpy as np
import pytest

pytest.importorskip("pywt", reason="the watermark needs PyWavelets (pip install PyWavelets)")
Image = pytest.importorskip("PIL.Image", reason="the JPEG and CLI checks need pillow")

from jaxdiff.safety import watermark  # noqa: E402
from jaxdiff.safety.watermark import Watermark  # noqa: E402

MARK = Watermark(key=1234)


def synthetic_digits(num: int, seed: int = 0, size: int = 28) -> np.ndarray:
    """(num, size, size) uint8: 1-3 thick quadratic curves in the centre, background 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    t = np.linspace(0, 1, 24)[:, None]
    images = np.zeros((num, size, size))
    for i in range(num):
        for _ in range(rng.integers(1, 4)):
            p = rng.uniform(5, size - 5, (3, 2))
            points = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t**2 * p[2]
            d2 = (yy - points[:, :1, None]) ** 2 + (xx - points[:, 1:, None]) ** 2
            images[i] = np.maximum(images[i], np.exp(-d2 / 2.0).max(0))
    images = np.clip(np.round(images * 320), 0, 255)
    images[images < 10] = 0
    return images.astype(np.uint8)


def jpeg(images: np.ndarray, quality: int = 90) -> np.ndarray:
    """Each image through PIL's JPEG encoder and decoder."""
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))))
    return np.stack(out)


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(200)


@pytest.fixture(scope="module")
def marked(digits):
    payloads = np.random.default_rng(1).integers(0, 256, len(digits))
    return MARK.embed(digits, payloads), payloads


def test_synthetic_digits_look_like_served_samples(digits):
    black = np.mean(digits == 0)
    assert 0.6 < black < 0.95 and np.mean(digits == 255) > 0.02


def test_marked_images_are_all_detected_with_their_payload(marked):
    images, payloads = marked
    found = MARK.detect(images)
    assert found.present.all(), np.sort(found.statistic)[:5]
    assert found.statistic.min() > MARK.threshold + 1.0
    np.testing.assert_array_equal(found.payload, payloads)


def test_unmarked_and_other_key_images_are_not_detected(digits):
    for images in (digits, Watermark(key=99).embed(digits, 17)):
        found = MARK.detect(images)
        assert not found.present.any(), np.sort(found.statistic)[-5:]
        assert np.all(found.payload == -1)
    # Unmarked images vary independently: the statistic spreads like the null, N(0, 1).
    z = MARK.detect(digits).statistic
    assert abs(z.mean()) < 0.25 and 0.8 < z.std() < 1.2
    # Images marked with one other key share its pattern: their statistics cluster around
    # one draw of the null (one value per pair of keys), so the spread is over keys.
    other = Watermark(key=99).embed(digits[:20], 17)
    means = [Watermark(key=k).detect(other).statistic.mean() for k in range(100, 200)]
    assert abs(np.mean(means)) < 0.4 and 0.7 < np.std(means) < 1.3


def test_null_statistic_over_keys_has_mean_0_variance_1(digits):
    # For any fixed image the key's signs are fair coins: z is a unit Rademacher sum.
    images = np.concatenate([digits[:4], Watermark(key=5).embed(digits[4:8])])
    z = np.stack([Watermark(key=k).detect(images).statistic for k in range(10, 410)])
    assert np.all(np.abs(z.mean(0)) < 0.2) and np.all(np.abs(z.std(0) - 1) < 0.15)
    assert np.mean(z >= 2.0) <= math.exp(-2.0)  # Hoeffding's bound at t = 2


def test_p_value_is_the_hoeffding_bound_and_sets_present(marked, digits):
    both = np.concatenate([marked[0][:20], digits[:20]])
    found = MARK.detect(both)
    z = found.statistic
    np.testing.assert_allclose(found.p_value, np.where(z > 0, np.exp(-(z**2) / 2), 1.0))
    np.testing.assert_array_equal(found.present, found.p_value <= MARK.fpr)
    assert MARK.threshold == pytest.approx(math.sqrt(2 * math.log(1000)))  # 3.717


def test_survives_jpeg_quality_90(marked):
    images, payloads = marked
    found = MARK.detect(jpeg(images, 90))
    assert np.mean(found.present) >= 0.95  # measured: 200 of 200
    bits = (found.payload[:, None] ^ payloads[:, None]) >> np.arange(8) & 1
    assert np.mean(bits[found.present]) <= 0.01  # payload bit errors


def test_psnr_stays_high(digits, marked):
    psnr = watermark.psnr(digits, marked[0])
    assert psnr.mean() >= 38.0 and psnr.min() >= 35.0


def test_black_and_white_images_are_marked_despite_clipping():
    # Black pixels cannot go down, white ones cannot go up: the embedder shifts levels.
    flat = np.zeros((3, 28, 28), np.uint8)
    flat[1], flat[2, :, 14:] = 255, 255
    found = MARK.detect(MARK.embed(flat, 200))
    assert found.present.all() and np.all(found.payload == 200)


def test_block_4_layout_marks_free_images():
    # The classic 4x4-tile layout works where tiles are free of strokes (it loses on digits:
    # benchmarks/watermark.py); its carriers cover the central 24x24 of 28x28.
    four = Watermark(key=3, block=4)
    flat = np.zeros((2, 28, 28), np.uint8)
    out = four.embed(flat, 9)
    found = four.detect(out)
    assert found.present.all() and np.all(found.payload == 9)
    assert not out[:, :2].any() and not out[:, :, -2:].any()
    assert not MARK.detect(out).present.any()


@pytest.mark.parametrize(
    "shape", [(4, 28, 28, 1), (4, 28, 28, 3), (4, 30, 34), (2, 64, 48, 3), (0, 28, 28)]
)
def test_shapes_and_sizes_round_trip(shape):
    rng = np.random.default_rng(0)
    gray = synthetic_digits(shape[0], seed=3, size=max(shape[1:3]))[:, : shape[1], : shape[2]]
    images = np.repeat(gray[..., None], shape[3], -1) if len(shape) == 4 else gray
    if len(shape) == 4 and shape[3] == 3:  # colour strokes
        images = (images * rng.uniform(0.5, 1.0, 3)).astype(np.uint8)
    out = MARK.embed(images, 3)
    assert out.shape == images.shape and out.dtype == np.uint8
    found = MARK.detect(out)
    assert found.present.all() and np.all(found.payload == 3)
    if shape[1:3] == (30, 34):  # the carriers cover the central 28x32; the rest is kept
        np.testing.assert_array_equal(out[:, 0], images[:, 0])
        np.testing.assert_array_equal(out[:, :, :1], images[:, :, :1])


def test_payload_bits_zero_and_sixteen(digits):
    none = Watermark(key=1, payload_bits=0)
    assert np.all(none.detect(none.embed(digits[:20])).payload == 0)
    wide = Watermark(key=1, payload_bits=16)
    assert np.all(wide.detect(wide.embed(digits[:20], 51234)).payload == 51234)


@pytest.mark.parametrize(
    "images, payload, message",
    [
        (np.zeros((2, 28, 28), np.float32), 0, "must be uint8 pixels .*got dtype float32"),
        (np.zeros((28, 28), np.uint8), 0, r"shape \(N, H, W\), .*got \(28, 28\)"),
        (np.zeros((2, 28, 28, 4), np.uint8), 0, r"\(N, H, W, 3\); got \(2, 28, 28, 4\)"),
        (np.zeros((2, 27, 28), np.uint8), 0, "at least 28x28 pixels; got 27x28"),
        (np.zeros((2, 28, 28), np.uint8), 256, r"payload must be an int in \[0, 256\)"),
        (np.zeros((2, 28, 28), np.uint8), -1, r"payload must be an int in \[0, 256\)"),
        (np.zeros((2, 28, 28), np.uint8), [1, 2, 3], r"one per image, shape \(2,\)"),
        (np.zeros((2, 28, 28), np.uint8), 1.5, "payload must be an int"),
    ],
)
def test_bad_images_and_payloads_raise(images, payload, message):
    with pytest.raises(ValueError, match=message):
        MARK.embed(images, payload)
    if payload == 0:
        with pytest.raises(ValueError, match=message):
            MARK.detect(images)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"key": -1}, "key must be a non-negative int; got -1"),
        ({"key": 1.5}, "key must be a non-negative int; got 1.5"),
        ({"strength": 0.0}, "strength must be > 0"),
        ({"payload_bits": 17}, r"payload_bits must be an int in \[0, 16\]; got 17"),
        ({"fpr": 0.0}, r"fpr must be in \(0, 0.5\]"),
        ({"host_limit": 2.0}, r"host_limit must be >= strength \(5.0\)"),
        ({"block": 3}, r"block must be one of \(2, 4\); got 3"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Watermark(**kwargs)


def test_cli_embed_then_detect(tmp_path, capsys, digits):
    plain, marked_path = tmp_path / "plain.png", tmp_path / "marked.png"
    Image.fromarray(digits[0]).save(plain)
    watermark.main(["embed", str(plain), str(marked_path), "--key=7", "--payload=42"])
    assert "PSNR" in capsys.readouterr().out
    watermark.main(["detect", str(marked_path), str(plain), "--key=7"])
    yes, no = capsys.readouterr().out.strip().splitlines()
    assert yes.startswith(f"{marked_path}: yes") and yes.endswith("payload 42")
    assert no.startswith(f"{plain}: no") and no.endswith("payload -")
    watermark.main(["detect", str(marked_path), "--key=8"])
    assert ": no " in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["detect", "F", "--key=-3"], 2, "error: --key must be a non-negative int; got -3."),
        (["embed", "F", "G", "--payload=256"], 2, "error: --payload=256: must be in [0, 256)."),
        (["detect", "{T}/missing.png"], 1, "missing.png: No such file or directory"),
        (["detect", "{T}/bad.png"], 1, "cannot identify image file"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, status, message):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    argv = [a.replace("{T}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        watermark.main(argv)
    assert exit_info.value.code == status
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_benchmark_runs_at_its_smallest_size(tmp_path, monkeypatch):
    from benchmarks import watermark as bench

    for i in range(2):  # served images as jaxdiff.evaluate writes them
        np.savez(tmp_path / f"shard_{i:05d}.npz", images=synthetic_digits(20, seed=i)[..., None])
    fake_real = lambda name, data_dir, num: synthetic_digits(num, seed=len(name))
    monkeypatch.setattr(bench, "load_real", fake_real)
    argv = [f"--samples={tmp_path}/shard_*.npz", "--num_served=30", "--num_real=30"]
    result = bench.run(bench.parser().parse_args([*argv, "--out=unused"]))
    assert result["served_images"]["num"] == 30 and all(result["targets_met"].values())
    assert result["edits"]["jpeg q90"]["detected"] == 1.0
    assert result["edits"]["flip left-right"]["detected"] == 0.0  # a documented limit
    assert result["variants"]["payload_bits 0"]["marked"]["payload_bit_error_rate"] is None
    json.dumps(result, allow_nan=False)


def test_benchmark_draws_served_images_from_a_model(monkeypatch):
    from benchmarks import watermark as bench
    from jaxdiff import pretrained

    class Model:
        def sample(self, key, num):
            return synthetic_digits(num)[..., None] / 127.5 - 1.0

    monkeypatch.setattr(pretrained, "load", lambda name: Model())
    images = bench.generate_served("mnist", 25, batch=10, seed=0)
    assert images.shape == (25, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:10], synthetic_digits(10))
