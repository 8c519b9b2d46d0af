"""A seeded, offline captioned data set from MNIST: captions measured on the images.

Every image is first placed at a seeded random scale and offset (MNIST digits are all
centred and ~20 pixels tall, so size and position would say nothing otherwise), then its
attributes are *measured* (NumPy, vectorised over a batch (N, H, W) of ink in [0, 1]):

- ``thickness``: 2 area / perimeter of the ink mask (ink > 0.5; perimeter = number of
  ink/background pixel edges, 4-neighbour). A w x l bar gives w l / (w + l) -> w for l >> w.
- ``slant``: the least-squares shear dx/dy of the ink pixels (y pointing up), so a stroke
  leaning right at the top is positive; an upright bar is 0. Its words carry the
  direction (left-leaning, upright, right-leaning): a word for the magnitude alone
  ("slanted", either way) was not learned, because the mean image of digits slanted either
  way is that of upright ones, so nothing but the spread tells the two words apart
  (docs/latent.md).
- ``size``: the height of the ink's bounding box, in pixels.
- ``row`` / ``col``: the ink mask's centroid minus the image centre ((H - 1) / 2), pixels.
- ``brightness``: the mean ink value over the mask, in [0.5, 1].

Words follow from fixed thresholds (:data:`WORDS`; a value in a gap between two words'
ranges gets no word), and each attribute's word is kept with probability ``keep`` (seeded
per image), so the model sees short and long prompts. The grammar, in order::

  a|an [thick|thin][, left-leaning|upright|right-leaning][, small|large][, faint|bright]
  DIGIT [in the ROW COL]

with ROW in {top, bottom}, COL in {left, right} (either may be missing; both central: "in
the center"); e.g. "a thick, right-leaning seven in the top left". :data:`VOCABULARY` holds every
word the grammar can produce. The same measurement functions score samples for the
acceptance table (docs/latent.md).

Example:
  >>> import numpy as np
  >>> from jaxdiff.data import captions
  >>> bar = np.zeros((1, 28, 28)); bar[0, 6:22, 12:16] = 1.0   # 4 wide, 16 tall
  >>> captions.thickness(bar).tolist()
  [3.2]
"""

import numpy as np
from scipy import ndimage

from jaxdiff.text import prompts

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INK = 0.5  # ink mask threshold on values in [0, 1]


def _batch(images) -> np.ndarray:
    """(N, H, W) or (N, H, W, 1), uint8 or float in [0, 1] -> float64 (N, H, W) in [0, 1]."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, 1); got shape {x.shape}.")
    return x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def ink_mask(images) -> np.ndarray:
    """(N, H, W) bool: ink > 0.5."""
    return np.asarray(_batch(images) > INK)


def thickness(images) -> np.ndarray:
    """2 area / perimeter of the ink mask, pixels: (N,) (0 for an empty image)."""
    m = np.pad(ink_mask(images), ((0, 0), (1, 1), (1, 1)))
    area = m.sum(axis=(1, 2))
    edges = (m[:, 1:] != m[:, :-1]).sum(axis=(1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum(
        axis=(1, 2)
    )
    return np.where(edges > 0, 2.0 * area / np.maximum(edges, 1), 0.0)


def _coordinates(m: np.ndarray):
    h, w = m.shape[1:]
    rows, cols = np.meshgrid(
        np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
    )
    n = np.maximum(m.sum(axis=(1, 2)), 1)
    row = (m * rows).sum(axis=(1, 2)) / n
    col = (m * cols).sum(axis=(1, 2)) / n
    return rows, cols, row, col, n


def slant(images) -> np.ndarray:
    """Shear dx/dy of the ink pixels, y up (positive: leaning right at the top): (N,)."""
    m = ink_mask(images)
    rows, cols, row, col, n = _coordinates(m)
    dy = -(rows[None] - row[:, None, None])  # up
    dx = cols[None] - col[:, None, None]
    var_y = (m * dy * dy).sum(axis=(1, 2)) / n
    cov = (m * dx * dy).sum(axis=(1, 2)) / n
    return np.where(var_y > 0, cov / np.maximum(var_y, 1e-12), 0.0)


def size(images) -> np.ndarray:
    """Height of the ink's bounding box, pixels: (N,) (0 for an empty image)."""
    rows: np.ndarray = np.any(ink_mask(images), axis=2)  # (N, H): rows holding ink
    first = np.argmax(rows, axis=1)
    last = rows.shape[1] - 1 - np.argmax(rows[:, ::-1], axis=1)
    return np.where(np.any(rows, axis=1), last - first + 1, 0).astype(np.float64)


def position(images) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the ink centroid minus the image centre, pixels (down, right): (N,) x2."""
    m = ink_mask(images)
    _, _, row, col, _ = _coordinates(m)
    h, w = m.shape[1:]
    return row - (h - 1) / 2, col - (w - 1) / 2


def brightness(images) -> np.ndarray:
    """Mean ink value over the ink mask, in [0.5, 1]: (N,) (0 for an empty image)."""
    x = _batch(images)
    m = x > INK
    return np.where(
        m.any(axis=(1, 2)), (x * m).sum(axis=(1, 2)) / np.maximum(m.sum(axis=(1, 2)), 1), 0.0
    )


def slant_magnitude(images) -> np.ndarray:
    """|slant|: how far from upright, either way: (N,)."""
    return np.abs(slant(images))


# attribute -> (measure, words from low to high, thresholds): word j names values between
# thresholds 2j - 1 and 2j; values between thresholds 2j and 2j + 1 get no word. Two words:
# below the first / above the second threshold. The thresholds are about the terciles of
# 3,000 placed MNIST training digits (seed 0; for slant, of its magnitude).
WORDS = {
    "thickness": (thickness, ("thin", "thick"), (1.45, 1.85)),
    "slant": (slant, ("left-leaning", "upright", "right-leaning"), (-0.25, -0.08, 0.08, 0.25)),
    "size": (size, ("small", "large"), (15.0, 17.0)),
    "brightness": (brightness, ("faint", "bright"), (0.81, 0.85)),
}
POSITION_THRESHOLD = 2.0  # |centroid offset| beyond this many pixels names the side
VOCABULARY = frozenset(
    {"a", "an", "in", "the", "center", "top", "bottom", "left", "right", *DIGITS}
    | {part for _, words, _ in WORDS.values() for w in words for part in prompts.words(w)}
)


def measure(images) -> dict:
    """Every attribute of a batch: {"thickness", "slant", "size", "brightness", "row",
    "col"} -> (N,) float arrays."""
    out = {name: fn(images) for name, (fn, _, _) in WORDS.items()}
    out["row"], out["col"] = position(images)
    return out


def _word(value: float, words, thresholds) -> str | None:
    """The word of ``value`` (see :data:`WORDS`), or None in a gap between two words."""
    assert len(thresholds) == 2 * len(words) - 2, (words, thresholds)
    edges = (-np.inf, *thresholds, np.inf)
    for j, word in enumerate(words):  # strictly inside its range: ties get no word
        if edges[2 * j] < value < edges[2 * j + 1]:
            return word
    return None


def _position_phrase(row: float, col: float) -> str:
    t = POSITION_THRESHOLD
    vertical = "top" if row < -t else "bottom" if row > t else ""
    horizontal = "left" if col < -t else "right" if col > t else ""
    return "in the " + (" ".join(w for w in (vertical, horizontal) if w) or "center")


def with_article(phrase: str) -> str:
    """ "a " or "an " (before a vowel) and ``phrase``: "an eight", "a thin one"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(label: int, attributes: dict, keep: np.ndarray) -> str:
    """One caption from a label, its measured attributes (floats) and which to keep.

    Args:
      label: the digit 0..9.
      attributes: one image's values of :func:`measure`.
      keep: 5 booleans: thickness, slant, size, brightness, position.
    """
    adjectives = []
    for keep_it, (name, (_, words, thresholds)) in zip(keep[:4], WORDS.items(), strict=True):
        word = _word(attributes[name], words, thresholds)
        if keep_it and word:
            adjectives.append(word)
    text = (", ".join(adjectives) + " " if adjectives else "") + DIGITS[int(label)]
    text = with_article(text)
    if keep[4]:
        text += " " + _position_phrase(attributes["row"], attributes["col"])
    return text


def place(image: np.ndarray, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Scales an (H, W) image about its centre by ``scale`` and moves it by ``shift``
    (rows, cols) pixels; bilinear, zeros outside. Values stay in the input's range."""
    h, w = image.shape
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    offset = centre - (centre + np.asarray(shift)) / scale
    out = ndimage.affine_transform(image.astype(np.float64), np.eye(2) / scale, offset, order=1)
    return np.clip(out, 0.0, float(image.max()) if image.size else 0.0)


MNIST_BOX = 20  # MNIST's digits fit a 20x20 box, centred by mass in 28x28
BOX_INK = 0.2  # recentre's bounding box holds values above this (faint edges too, < INK)


def recentre(images, box: int = MNIST_BOX) -> np.ndarray:
    """Undoes a placement the way MNIST was made: each digit's ink bounding box (values >
    :data:`BOX_INK`) is scaled to fit a ``box`` x ``box`` square (aspect kept, bilinear)
    and pasted so that its centre of mass is at the image centre. Classifiers trained on MNIST read
    placed digits after this (docs/latent.md: 62% -> 98% on placed test digits).

    Args:
      images: (N, H, W) or (N, H, W, 1) in [0, 1].

    Returns:
      (N, H, W, 1) in [0, 1]; an image without ink is returned as it is.
    """
    x = _batch(images)
    out = np.zeros_like(x, dtype=np.float64)
    for i, image in enumerate(x):
        out[i] = _recentre_one(image, box)
    return out[..., None]


def _recentre_one(image: np.ndarray, box: int) -> np.ndarray:
    rows, cols = np.nonzero(image > BOX_INK)
    if rows.size == 0:
        return image
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].astype(np.float64)
    zoomed = np.clip(ndimage.zoom(crop, box / max(crop.shape), order=1), 0.0, 1.0)
    h, w = image.shape
    com = ndimage.center_of_mass(zoomed)
    top = int(np.clip(round((h - 1) / 2 - com[0]), 0, h - zoomed.shape[0]))
    left = int(np.clip(round((w - 1) / 2 - com[1]), 0, w - zoomed.shape[1]))
    out = np.zeros((h, w))
    out[top : top + zoomed.shape[0], left : left + zoomed.shape[1]] = zoomed
    return out


SEED = 0  # the seed of the captioned MNIST set (docs/latent.md)
KEEP = 0.7  # probability that a measured attribute is named
SCALE_RANGE = (0.65, 1.0)


def build(
    images, labels, seed: int = SEED, *, keep: float = KEEP, scale_range=SCALE_RANGE, start: int = 0
):
    """The captioned set: placed images, their captions and measured attributes.

    Image i (counted from ``start``) uses ``np.random.default_rng([seed, i])``: scale ~
    U[scale_range], a shift
    keeping the 20-pixel MNIST box inside the frame, and each attribute kept with
    probability ``keep``.

    Args:
      images: (N, 28, 28) or (N, 28, 28, 1) uint8 digits.
      labels: (N,) ints 0..9.
      seed: the data set's seed.
      keep: probability that a measured attribute is named.
      scale_range: the range of the random scale.
      start: the index of the first image in its split (so any slice gets its own draws).

    Returns:
      ``(placed uint8 (N, H, W, 1), captions list[str], attributes dict of (N,))``.
    """
    x = _batch(images)
    placed = np.empty_like(x)
    keeps = np.empty((len(x), 5), bool)
    for i, image in enumerate(x):
        rng = np.random.default_rng([seed, start + i])
        s = rng.uniform(*scale_range)
        room = max(0.0, (x.shape[1] - 20 * s) / 2 - 1)
        placed[i] = place(image, s, tuple(rng.uniform(-room, room, 2)))
        keeps[i] = rng.random(5) < keep
    attributes = measure(placed)
    texts = [
        caption(int(labels[i]), {k: v[i] for k, v in attributes.items()}, keeps[i])
        for i in range(len(x))
    ]
    return np.round(placed * 255).astype(np.uint8)[..., None], texts, attributes


class CaptionedSource:
    """A random-access source of placed, captioned digits over an image source.

    Record i: ``{"image": (H, W, 1) uint8 placed, "label": int, "caption": str}``, the
    same as :func:`build` gives for that index (seeded per index: any order, any host).
    """

    def __init__(self, base, seed: int = SEED):
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        record = self.base[index]
        image, label = np.asarray(record["image"])[None], int(record["label"])
        placed, texts, _ = build(image, [label], self.seed, start=int(index))
        return {"image": placed[0], "label": label, "caption": texts[0]}

    def __getitems__(self, indices) -> list[dict]:
        """Records of several indices (each seeded by its own index)."""
        return [self[int(i)] for i in indices]
