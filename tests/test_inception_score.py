"""Inception Score: closed forms, the reference formula, and the in-repo classifier."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdiff.evaluation import classifier, inception_score


def test_confident_and_uniform_over_k_classes_gives_k():
    # One-hot predictions spread evenly over K classes: p(y) uniform, KL = log K, IS = K.
    k = 7
    logits = np.full((70, k), -1e4)
    logits[np.arange(70), np.arange(70) % k] = 0.0
    mean, std = inception_score.inception_score_from_logits(logits, splits=5)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_identical_predictions_give_one():
    logits = np.tile(np.random.default_rng(0).standard_normal(10), (40, 1))
    mean, _ = inception_score.inception_score_from_logits(logits, splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12)


def test_matches_salimans_reference_formula():
    # The original improved-GAN code: kl = p * (log p - log mean p), exp(mean sum kl), per split.
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((100, 12)) * 3
    preds = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(4):
        part = preds[i * 25 : (i + 1) * 25]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    mean, std = inception_score.inception_score_from_logits(logits, splits=4)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-10)


@pytest.mark.parametrize(
    "logits, splits, match",
    [
        (np.zeros((10,)), 1, "\\(N, K\\)"),
        (np.zeros((10, 3)), 11, "splits must be in"),
        (np.full((10, 3), np.nan), 1, "NaN"),
    ],
)
def test_bad_logits_rejected(logits, splits, match):
    with pytest.raises(ValueError, match=match):
        inception_score.inception_score_from_logits(logits, splits)


def test_classifier_trains_checkpoints_and_scores_on_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        params, meta = classifier.train_classifier(
            "mnist", str(tmp_path / "clf"), epochs=1, batch_size=16, max_steps=3
        )
    assert meta["steps"] == 3 and 0.0 <= meta["test_accuracy"] <= 1.0
    restored, meta2 = classifier.load_classifier(str(tmp_path / "clf"))
    assert meta2 == meta
    jax.tree.map(np.testing.assert_array_equal, restored, params)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    fn = classifier.logits_fn(restored, data_range=(0, 255))
    assert fn(images).shape == (20, 10)
    assert classifier.logits_fn(restored, features=True)(images).shape == (20, 128)
    mean, std = inception_score.inception_score(images, fn, splits=2, batch_size=8)
    assert 1.0 <= mean <= 10.0 and std >= 0.0


def test_classifier_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'; valid: \\['fashion_mnist'"):
        classifier.load_split("cifar10", "train")
    with pytest.raises(FileNotFoundError, match="no classifier checkpoint"):
        classifier.load_classifier(str(tmp_path / "empty"))


def test_classifier_dropout_only_in_training():
    model = classifier.Classifier()
    x = np.random.default_rng(0).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    a = model.apply({"params": params}, x)
    np.testing.assert_array_equal(a, model.apply({"params": params}, x))
    b = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(a, b)
    assert model.apply({"params": params}, x, return_features=True).shape == (4, 128)


def test_train_classifier_rejects_oversized_batch():
    with tfds.testing.mock_data(num_examples=10):
        with pytest.raises(ValueError, match="batch_size 64 exceeds the 10 training examples"):
            classifier.train_classifier("mnist", batch_size=64)
