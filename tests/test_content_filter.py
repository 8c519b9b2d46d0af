"""The content filter: block-listed words raise Blocked, images of blocked classes are held back."""

import numpy as np
import pytest

from jaxdiff.safety.content_filter import Blocked, ContentFilter, classifier_from_dir


def fake_classifier(images: np.ndarray) -> np.ndarray:
    """Labels image i by its mean brightness bucket: logits (N, 10), class = bucket."""
    assert images.dtype == np.float32 and images.shape[1:] == (28, 28, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0
    buckets = np.clip(((images.mean(axis=(1, 2, 3)) + 1) * 5).astype(int), 0, 9)
    return np.eye(10, dtype=np.float32)[buckets] * 3.0


def images_of_classes(classes) -> np.ndarray:
    """uint8 (N, 28, 28) images that ``fake_classifier`` labels ``classes``."""
    levels = (np.asarray(classes) + 0.5) / 10 * 255
    return np.broadcast_to(levels[:, None, None], (len(classes), 28, 28)).round().astype(np.uint8)


@pytest.mark.parametrize(
    "prompt", ["a GORE scene", "gore", "Gore, then more", "blood  bath at noon", "(gore)"]
)
def test_blocked_words_raise_blocked(prompt):
    content = ContentFilter(blocked_words=["gore", "blood bath"])
    with pytest.raises(Blocked, match="the prompt contains the blocked word") as info:
        content.check_prompt(prompt)
    assert isinstance(info.value, ValueError) and info.value.reason == str(info.value)


@pytest.mark.parametrize("prompt", ["gorest forest", "a bloodbath", "", "gardens of gorey"])
def test_other_words_pass(prompt):
    ContentFilter(blocked_words=["gore", "blood bath"]).check_prompt(prompt)


def test_blocked_class_filters_exactly_the_images_labelled_so():
    classes = np.array([0, 3, 5, 3, 9, 2, 3, 1])
    images = images_of_classes(classes)
    content = ContentFilter(blocked_classes=[3], classifier=fake_classifier)
    np.testing.assert_array_equal(content.check_images(images), classes != 3)
    check = content.screen(images[..., None])  # (N, H, W, 1) works alike
    np.testing.assert_array_equal(check.predicted, classes)
    assert check.reasons[1] == "predicted class 3 is blocked" and check.reasons[0] == ""


def test_images_in_minus_one_one_and_rgb_are_accepted():
    classes = np.array([3, 4])
    images = images_of_classes(classes).astype(np.float32) / 127.5 - 1.0
    content = ContentFilter(blocked_classes=[4], classifier=fake_classifier)
    np.testing.assert_array_equal(content.check_images(images), [True, False])
    rgb = np.repeat(images_of_classes(classes)[..., None], 3, -1)
    np.testing.assert_array_equal(content.check_images(rgb), [True, False])


def test_no_blocked_classes_allows_everything_without_a_classifier():
    content = ContentFilter(blocked_words=["x"])
    assert content.check_images(np.zeros((3, 28, 28), np.uint8)).tolist() == [True] * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"blocked_classes": [3]}, "blocked_classes needs a classifier"),
        ({"blocked_words": ["ok", " "]}, "blocked_words must be non-empty strings"),
        ({"blocked_classes": [-1], "classifier": fake_classifier}, "must be >= 0"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContentFilter(**kwargs)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 28, 28), np.float32) + 3.0, r"float images must lie in \[-1, 1\]"),
        (np.zeros((2, 28, 28), np.int32), "uint8 or float in .*got dtype int32"),
        (np.zeros((28, 28), np.uint8), r"shape \(N, H, W\).*got \(28, 28\)"),
    ],
)
def test_bad_images_raise(images, message):
    content = ContentFilter(blocked_classes=[1], classifier=fake_classifier)
    with pytest.raises(ValueError, match=message):
        content.check_images(images)


def test_class_outside_the_classifier_raises():
    content = ContentFilter(blocked_classes=[12], classifier=fake_classifier)
    with pytest.raises(ValueError, match=r"outside the classifier's 10 classes \(0..9\)"):
        content.check_images(np.zeros((1, 28, 28), np.uint8))


def test_classifier_from_dir_loads_a_saved_classifier(tmp_path):
    import jax
    import jax.numpy as jnp

    from jaxdiff.evaluation import classifier

    model = classifier.Classifier(10)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    classifier.save_classifier(str(tmp_path), params, {"steps": 0, "num_classes": 10})
    logits = classifier_from_dir(str(tmp_path))
    images = np.random.default_rng(0).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    expected = model.apply({"params": params}, images)
    np.testing.assert_allclose(logits(images), expected, rtol=1e-5, atol=1e-5)
    content = ContentFilter(blocked_classes=[0], classifier=logits)
    predicted = content.screen(images).predicted
    np.testing.assert_array_equal(predicted, np.argmax(expected, -1))
    with pytest.raises(FileNotFoundError, match="no classifier checkpoint"):
        classifier_from_dir(str(tmp_path / "empty"))
