"""Tests of jaxdiff.data: sources, shuffling, host shards, normalisation, flips, resume."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdiff.data import pipeline, sources


def index_source(n):
    """Images whose every pixel is the example's index (uint8), labels = index % 10."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 2, 1))
    return sources.ArraySource(np.array(images), np.arange(n) % 10)


def indices(batch):
    """Recovers the example indices from a normalised batch of index_source images."""
    return np.round((batch["image"][:, 0, 0, 0] + 1.0) * 127.5).astype(int)


def test_digits_splits_are_real_and_disjoint():
    train, test, full = sources.digits("train"), sources.digits("test"), sources.digits("all")
    assert (len(train), len(test), len(full)) == (1500, 297, 1797)
    assert train[0]["image"].shape == (8, 8, 1) and train[0]["image"].dtype == np.uint8
    assert full.images.max() == 255 and full.images.min() == 0
    np.testing.assert_array_equal(full.images[1500:], test.images)
    assert set(np.unique(full.labels)) == set(range(10))


def test_unknown_source_and_split_list_valid_names():
    with pytest.raises(ValueError, match="valid sources:.*digits"):
        sources.build("mnist_png")
    with pytest.raises(ValueError, match="valid splits"):
        sources.digits("validation")


def test_normalize_maps_uint8_to_unit_interval_and_keeps_floats():
    out = pipeline.Normalize(use_labels=True).map(
        {"image": np.array([[[0], [255]]], np.uint8), "label": np.int64(3)}
    )
    np.testing.assert_array_equal(out["image"][0, :, 0], [-1.0, 1.0])
    assert out["label"] == 3 and out["label"].dtype == np.int32
    latent = np.array([[[2.5]]], np.float32)
    assert pipeline.Normalize().map({"image": latent, "label": 0})["image"] == 2.5
    assert "label" not in pipeline.Normalize().map({"image": latent, "label": 0})


def test_random_flip_mirrors_about_half_the_time():
    image = np.arange(6, dtype=np.float32).reshape(1, 6, 1)
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(400):
        out = pipeline.RandomFlip().random_map({"image": image}, rng)["image"]
        flipped = np.array_equal(out, image[:, ::-1])
        assert flipped or np.array_equal(out, image)
        flips += flipped
    assert abs(flips - 200) < 4 * np.sqrt(100)  # binomial(400, 1/2): 4 sigma


def test_each_epoch_is_a_fresh_permutation():
    ds = pipeline.make_dataset(index_source(40), global_batch_size=8, seed=1, num_threads=0)
    it = iter(ds)
    first = np.concatenate([indices(next(it)) for _ in range(5)])
    second = np.concatenate([indices(next(it)) for _ in range(5)])
    assert sorted(first) == list(range(40)) and sorted(second) == list(range(40))
    assert not np.array_equal(first, second)
    again = np.concatenate([indices(b) for b, _ in zip(iter(ds), range(5), strict=False)])
    np.testing.assert_array_equal(first, again)  # seeded


def test_hosts_share_the_global_batch():
    src = index_source(50)
    one = iter(pipeline.make_dataset(src, 12, seed=3, num_threads=0))
    hosts = [
        iter(pipeline.make_dataset(src, 12, 3, shard_index=i, shard_count=3)) for i in range(3)
    ]
    for _ in range(6):  # crosses an epoch boundary
        parts = [indices(next(h)) for h in hosts]
        assert all(p.shape == (4,) for p in parts)
        assert sorted(np.concatenate(parts)) == sorted(indices(next(one)))


def test_iterator_state_resumes_exactly():
    ds = pipeline.make_dataset(index_source(30), 4, seed=0, flip=True, use_labels=True)
    it = iter(ds)
    for _ in range(9):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    fresh = iter(ds)
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_batch_size_must_split_over_hosts():
    with pytest.raises(ValueError, match="multiple of the number of hosts"):
        pipeline.make_dataset(index_source(10), 5, seed=0, shard_count=2)


def test_tfds_source_reads_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        src = sources.build("tfds", name="mnist", split="train")
        ds = pipeline.make_dataset(src, 3, seed=0, use_labels=True, num_threads=0)
        batch = next(iter(ds))
    assert batch["image"].shape == (3, 28, 28, 1) and batch["image"].dtype == np.float32
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert batch["label"].dtype == np.int32


def test_missing_tfds_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="TFDS_DATA_DIR") as e:
        sources.tfds("mnist", data_dir=str(tmp_path))
    assert "tfds build mnist" in str(e.value) and "\n" not in str(e.value)


def test_latent_source_round_trip(tmp_path):
    lat = np.random.default_rng(0).normal(size=(5, 4, 4, 4)).astype(np.float32)
    path = os.path.join(tmp_path, "lat_{split}.npz")
    np.savez(path.format(split="train"), latents=lat, labels=np.arange(5))
    src = sources.build("latents", path=path, split="train")
    batch = next(iter(pipeline.make_dataset(src, 5, seed=0, use_labels=True)))
    order = batch["label"]
    np.testing.assert_array_equal(batch["image"], lat[order])  # float latents: unscaled
    with pytest.raises(ValueError, match="not found"):
        sources.latents(path=path, split="val")
    np.savez(os.path.join(tmp_path, "bad.npz"), x=lat)
    with pytest.raises(ValueError, match="lacks arrays"):
        sources.latents(path=os.path.join(tmp_path, "bad.npz"))
