"""Procedural 3D shape renders: seeded, different from every side, wired into the data
pipeline; the shape classifier trained on them."""

import numpy as np
import pytest

from jaxdiff.data import pipeline, shapes3d, sources
from jaxdiff.evaluation import classifier, shape_classifier
from jaxdiff.render import camera, field

pytestmark = pytest.mark.usefixtures("fast_compiles")


def canonical_views(shape, azimuths, resolution=24):
    """Views of the canonical instance, each lit from its own camera's side."""
    grid = shapes3d.voxelize(shape, resolution)
    az = np.asarray(azimuths, np.float32)
    el = np.full(len(az), 0.3, np.float32)
    light = np.asarray(camera.orbit_position(az, el + 0.3, 1.0), np.float32)
    render = shapes3d._view_renderer(shapes3d.CAMERA)
    return np.asarray(render(grid, az, el, light, np.full(len(az), 0.4, np.float32)))


@pytest.mark.parametrize("shape", shapes3d.CLASSES)
def test_every_shape_looks_different_from_each_side(shape):
    """Opposite and quarter-turn views differ (a model must know the view)."""
    views = canonical_views(shape, [0.0, np.pi / 2, np.pi, 3 * np.pi / 2, np.pi / 4])
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.mean(np.abs(views[i] - views[j])) > 0.01, (i, j)  # identical: ~1e-8
    # Seen obliquely, a left-right flip shows another side (the handle, the foot, the red
    # half move over): flips are no augmentation for view labels.
    assert np.mean(np.abs(views[4] - views[4][:, ::-1])) > 0.01


def test_the_mug_handle_is_on_the_plus_y_side():
    grid = shapes3d.voxelize("mug", 33)
    coords = np.asarray(field.coordinates(33))
    handle = (coords[..., 1] > 0.55) & (np.abs(coords[..., 0]) < 0.05)
    assert np.asarray(grid.density)[handle].max() > 10.0
    assert np.asarray(grid.density)[coords[..., 1] < -0.6].max() == 0.0


def test_renders_are_seeded_and_splits_differ(tmp_path):
    a = shapes3d.generate("shapes3d_tiny", "train")
    shapes3d.generate.cache_clear()
    b = shapes3d.generate("shapes3d_tiny", "train")
    assert a is not b
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    test = shapes3d.generate("shapes3d_tiny", "test")
    assert not np.array_equal(a.images, test.images)
    assert a.images.shape == (16, 32, 32, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.classes, np.repeat(np.arange(4), 4))
    np.testing.assert_array_equal(a.labels, a.classes * 8 + shapes3d.view_bin(a.azimuth))
    low, high = np.deg2rad(shapes3d.CAMERA.elevation)
    assert np.all((a.elevation >= low) & (a.elevation <= high))
    cached = shapes3d.generate("shapes3d_tiny", "train", str(tmp_path))  # writes the file
    again = shapes3d.generate.__wrapped__("shapes3d_tiny", "train", str(tmp_path))  # reads it
    assert (tmp_path / f"shapes3d_tiny-train-v{shapes3d.VERSION}.npz").exists()
    np.testing.assert_array_equal(cached.images, again.images)
    np.testing.assert_array_equal(cached.azimuth, a.azimuth)


def test_view_bins_are_centred_on_the_bin_azimuths():
    az = np.array([0.0, 0.3, -0.3, np.pi / 4, np.pi, 2 * np.pi - 0.1, 7 * np.pi / 4 + 0.01])
    np.testing.assert_array_equal(shapes3d.view_bin(az), [0, 0, 0, 1, 4, 0, 7])
    import jax.numpy as jnp

    np.testing.assert_array_equal(shapes3d.view_bin(jnp.asarray(az)), shapes3d.view_bin(az))
    assert shapes3d.view_label(2, np.float32(np.pi / 2)) == 2 * 8 + 2
    with pytest.raises(ValueError, match="unknown shape 'cube'; valid shapes: torus, mug"):
        shapes3d.class_index("cube")
    with pytest.raises(ValueError, match="unknown shapes3d dataset 'x'; valid"):
        shapes3d.generate("x")
    with pytest.raises(ValueError, match="unknown shapes3d split 'val'; valid"):
        shapes3d.generate("shapes3d_tiny", "val")


def test_the_source_feeds_the_grain_pipeline_with_view_labels():
    source = sources.build("shapes3d", name="shapes3d_tiny", split="train")
    batch = next(iter(pipeline.make_dataset(source, 8, seed=0, use_labels=True, num_threads=0)))
    assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    assert batch["label"].dtype == np.int32 and batch["label"].max() < 32


def test_shape_classifier_trains_on_renders_and_loads_back(tmp_path):
    params, meta = shape_classifier.train(
        "shapes3d_tiny", str(tmp_path / "clf"), epochs=1, batch_size=8, max_steps=2
    )
    assert meta["input_shape"] == [32, 32, 3] and meta["classes"] == list(shapes3d.CLASSES)
    restored, meta2 = classifier.load_classifier(str(tmp_path / "clf"))
    assert meta2 == meta
    frames = shapes3d.generate("shapes3d_tiny", "test").images[:4] / 255.0
    np.testing.assert_array_equal(
        shape_classifier.predict(restored, frames), shape_classifier.predict(params, frames)
    )
    assert 0.0 <= shape_classifier.agreement(params, frames, 0) <= 1.0
    with pytest.raises(ValueError, match=r"frames must have shape \(V, H, W, 3\)"):
        shape_classifier.agreement(params, frames[0], 0)
