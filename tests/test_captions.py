"""The captioned MNIST set: attributes measured on synthetic images with known answers,
the caption grammar, seeding, and the semantic maps with their IoU."""

import numpy as np
import pytest

from jaxdiff.data import captions, semantic_maps


def canvas(n=1, size=28):
    return np.zeros((n, size, size))


def test_thickness_of_bars_is_the_closed_form():
    """2 area / perimeter of a w x l bar is w l / (w + l): thick bars measure thicker."""
    x = canvas(3)
    x[0, 4:20, 10:12] = 1.0  # 2 x 16
    x[1, 4:20, 10:14] = 1.0  # 4 x 16
    x[2, 2:26, 8:14] = 1.0  # 6 x 24
    np.testing.assert_allclose(captions.thickness(x), [32 / 18, 64 / 20, 144 / 30])
    assert captions.thickness(canvas()).tolist() == [0.0]


def test_slant_of_sheared_strokes():
    """A stroke moving one column right per row upwards has shear 1; upright has 0."""
    x = canvas(3)
    x[0, 4:24, 12:15] = 1.0  # upright
    for r in range(4, 24):
        x[1, r, 24 - r : 27 - r] = 1.0  # leaning right at the top
        x[2, r, r - 2 : r + 1] = 1.0  # leaning left at the top
    np.testing.assert_allclose(captions.slant(x), [0.0, 1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(captions.slant_magnitude(x), [0.0, 1.0, 1.0], atol=1e-12)


def test_size_position_and_brightness():
    x = canvas(2)
    x[0, 2:6, 3:7] = 0.7  # a 4 x 4 block, top left, grey
    x[1, 20:27, 18:27] = 1.0  # 7 rows tall, bottom right, white
    np.testing.assert_allclose(captions.size(x), [4, 7])
    row, col = captions.position(x)
    np.testing.assert_allclose(row, [3.5 - 13.5, 23.0 - 13.5])
    np.testing.assert_allclose(col, [4.5 - 13.5, 22.0 - 13.5])
    np.testing.assert_allclose(captions.brightness(x), [0.7, 1.0])
    as_uint8 = np.round(x * 255).astype(np.uint8)[..., None]  # (N, H, W, 1) uint8 also
    np.testing.assert_allclose(captions.brightness(as_uint8), [178 / 255, 1.0])  # round(178.5)


def test_bad_image_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, 1\)"):
        captions.thickness(np.zeros((28, 28)))


def test_caption_from_attributes_follows_the_grammar():
    attrs = dict(thickness=2.5, slant=0.4, size=16.0, brightness=0.83, row=-5.0, col=-4.0)
    keep = np.ones(5, bool)
    assert captions.caption(7, attrs, keep) == "a thick, right-leaning seven in the top left"
    back = dict(attrs, slant=-0.4, size=17.0)  # a threshold itself gets no word
    assert captions.caption(7, back, keep) == "a thick, left-leaning seven in the top left"
    between = dict(attrs, slant=-0.1)  # between upright (|slant| < 0.08) and leaning
    assert captions.caption(7, between, keep) == "a thick seven in the top left"
    thin = dict(attrs, thickness=1.0, slant=0.01, size=12.0, row=0.0, col=0.0)
    assert captions.caption(1, thin, keep) == "a thin, upright, small one in the center"
    assert captions.caption(3, attrs, np.zeros(5, bool)) == "a three"
    assert captions.caption(8, attrs, np.zeros(5, bool)) == "an eight"
    upright = dict(attrs, slant=0.0)
    assert captions.caption(8, upright, np.array([0, 1, 0, 0, 0], bool)) == "an upright eight"


def digits(n=12, seed=0):
    """Synthetic 'digits': bars of random width at random places, uint8."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        w, top, left = rng.integers(2, 6), rng.integers(4, 8), rng.integers(8, 16)
        x[i, top : top + 16, left : left + w] = 255
    return x, rng.integers(0, 10, n)


def test_build_is_seeded_and_its_captions_use_only_the_vocabulary():
    x, y = digits()
    placed, texts, attrs = captions.build(x, y, seed=3)
    again, texts_again, _ = captions.build(x, y, seed=3)
    other, _, _ = captions.build(x, y, seed=4)
    assert texts == texts_again and np.array_equal(placed, again)
    assert not np.array_equal(placed, other)
    assert placed.shape == (12, 28, 28, 1) and placed.dtype == np.uint8
    for text, label in zip(texts, y, strict=True):
        words = text.replace(",", "").split()
        assert set(words) <= captions.VOCABULARY and captions.DIGITS[label] in words
    # the words name what is measured on the placed image
    np.testing.assert_allclose(attrs["thickness"], captions.thickness(placed))


def test_captioned_source_record_matches_the_batch_build():
    x, y = digits(5)
    base = [{"image": x[i][..., None], "label": int(y[i])} for i in range(5)]
    source = captions.CaptionedSource(base, seed=1)
    placed, texts, _ = captions.build(x, y, seed=1)
    for i in (0, 4):
        assert source[i]["caption"] == texts[i]
        assert np.array_equal(source[i]["image"], placed[i])


def test_place_with_unit_scale_and_no_shift_is_the_identity():
    x, _ = digits(1)
    np.testing.assert_allclose(captions.place(x[0] / 255.0, 1.0, (0.0, 0.0)), x[0] / 255.0)


def test_semantic_maps_and_iou():
    x = -np.ones((1, 6, 6, 1))
    x[0, 1:5, 1:5] = 1.0  # a 4 x 4 square
    mask = semantic_maps.derive("mask", x)
    edges = semantic_maps.derive("edges", x)
    assert mask.sum() == 16 and edges.sum() == 12  # the ring around the 2 x 2 interior
    assert semantic_maps.iou(mask, mask).tolist() == [1.0]
    assert semantic_maps.iou(mask, edges).tolist() == [12 / 16]
    empty = np.zeros_like(mask)
    assert semantic_maps.iou(empty, empty).tolist() == [1.0]
    with pytest.raises(ValueError, match="valid: \\['edges', 'mask'\\]"):
        semantic_maps.derive("depth", x)


class FakeGenerator:
    """Draws bars whose width follows 'thick' / 'thin' and maps copied from the input."""

    settings = None

    def generate(self, key, prompts=None, maps=None, **sampler):
        import jax

        if maps is not None:
            return 2.0 * np.asarray(maps) - 1.0
        seed = int(jax.random.randint(key, (), 0, 2**30))
        rng = np.random.default_rng(seed)
        x = -np.ones((len(prompts), 28, 28, 1))
        for i, p in enumerate(prompts):
            w = rng.integers(4, 7) if "thick" in p else rng.integers(1, 4)
            x[i, 4:24, 10 : 10 + w] = 1.0
        return x


def test_acceptance_measures_on_a_generator_with_known_answers():
    import jax

    from jaxdiff import text2img_measure as measure

    gen, key = FakeGenerator(), jax.random.key(0)
    thin = measure.draw(gen, key, "a thin seven", 30, batch=7)
    assert thin.shape == (30, 28, 28, 1)
    r = measure.contrast(np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0]))
    assert r["difference"] == 2.0 and np.isclose(r["standard_errors"], 2.0 / np.sqrt(2 / 3))
    table = measure.attribute_table(gen, key, 30)
    assert table["thickness"]["standard_errors"] > 3  # thick bars are measured thicker
    assert abs(table["slant"]["standard_errors"]) < 1e-6  # upright either way: no difference
    assert "| thickness |" in measure.markdown(table)
    maps = np.zeros((5, 28, 28, 1))
    maps[:, 5:9, 5:9] = 1.0
    np.testing.assert_allclose(measure.map_iou(gen, key, maps, batch=2), 1.0)


class DigitBars:
    """'a DIGIT' -> a centred 20-pixel-high bar 2 + 2 DIGIT wide: a deterministic, learnable
    'digit' that MNIST's recentring leaves as it is."""

    def __init__(self):
        self.prompts = []  # every prompt asked for, in order

    def generate(self, key, prompts=None, **sampler):
        self.prompts.extend(prompts)
        x = -np.ones((len(prompts), 28, 28, 1))
        for i, p in enumerate(prompts):
            d = captions.DIGITS.index(p.split()[-1])
            x[i, 4:24, 13 - d : 15 + d] = 1.0
        return x


@pytest.mark.filterwarnings("ignore:.*samples for 128 feature dimensions")
def test_class_accuracy_and_fid_through_a_saved_classifier(tmp_path):
    import jax

    from jaxdiff import text2img_measure as measure
    from jaxdiff.evaluation import classifier

    gen = DigitBars()
    images = np.concatenate([gen.generate(None, [f"a {w}"] * 4) for w in captions.DIGITS])
    gen.prompts.clear()
    labels = np.repeat(np.arange(10), 4)
    params, steps = classifier.fit(images.astype(np.float32), labels, 10, epochs=30, batch_size=40)
    classifier.save_classifier(str(tmp_path / "clf"), params, {"steps": steps, "num_classes": 10})
    acc, fid = measure.class_accuracy(gen, jax.random.key(0), str(tmp_path / "clf"), 4, images)
    expected = classifier.accuracy(params, images.astype(np.float32), labels)
    assert acc == expected and acc > 0.9  # the bars are separable: the classifier learns them
    assert abs(fid) < 1e-3  # the samples are the reference images
    assert sorted(set(gen.prompts)) == sorted(captions.with_article(w) for w in captions.DIGITS)
    assert "an eight" in gen.prompts  # the captions' article, as the model was trained
    np.testing.assert_array_equal(measure.recentred(images), images)  # already MNIST-placed
    assert measure.reference_accuracy(str(tmp_path / "clf"), images, labels) == expected


def test_recentre_puts_a_placed_digit_back_in_mnists_box():
    x = np.zeros((1, 28, 28))
    x[0, 2:12, 3:8] = 1.0  # a small block (10 x 5) in the top left
    out = captions.recentre(x)[0, ..., 0]
    rows, cols = np.nonzero(out > 0.5)
    assert rows.max() - rows.min() + 1 == captions.MNIST_BOX  # the longer side fits the box
    assert 9 <= cols.max() - cols.min() + 1 <= 11  # the aspect ratio is kept
    com = np.array(
        [
            np.average(np.arange(28), weights=out.sum(1)),
            np.average(np.arange(28), weights=out.sum(0)),
        ]
    )
    np.testing.assert_allclose(com, 13.5, atol=0.5)  # centred by mass
    np.testing.assert_array_equal(captions.recentre(np.zeros((1, 28, 28))), 0.0)


def test_the_measure_command_writes_the_table_and_one_picture_row_per_prompt(
    tmp_path, monkeypatch, capsys
):
    import types

    from PIL import Image

    from jaxdiff import text2img
    from jaxdiff import text2img_measure as measure

    gen = FakeGenerator()
    gen.settings = types.SimpleNamespace(text=True, semantic_map="")
    gen.run = types.SimpleNamespace(step=6_000)
    asked = []
    monkeypatch.setattr(text2img, "load", lambda workdir, step: asked.append(step) or gen)
    grid, out = tmp_path / "grid.png", tmp_path / "table.md"
    measure.main(["--workdir=unused", "--num=4", f"--grid={grid}", f"--out={out}"])
    assert asked == [None] and out.read_text().startswith("step 6000\n")
    prompts = (tmp_path / "grid.png.txt").read_text().splitlines()
    assert prompts == [p for low, high, _ in measure.CONTRASTS.values() for p in (low, high)]
    rows, cols = len(prompts), measure.KEEP  # 28-pixel tiles, 1-pixel gaps, upscaled twice
    assert np.asarray(Image.open(grid)).shape == (2 * (29 * rows + 1), 2 * (29 * cols + 1))
    assert "| thickness |" in out.read_text() and "| thickness |" in capsys.readouterr().out
    measure.main(["--workdir=unused", "--num=4", "--step=6000", "--notable", f"--out={out}"])
    assert asked[-1] == 6_000 and out.read_text() == "step 6000\n"  # no table asked for
