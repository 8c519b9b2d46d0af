"""Random-access data sources: TFDS (array_record), scikit-learn's 8x8 digits, latent arrays,
renders of procedural 3D shapes, Moving MNIST clips, spoken-digit spectrograms.

Every source is a sequence (``len`` + ``__getitem__``) of records
``{"image": array (H, W, C), "label": int}`` that ``grain.MapDataset.source`` reads. Images are
uint8 in [0, 255] for pixel data and float32 for pre-encoded latents.

Example::

  source = sources.build("tfds", name="mnist", split="train", data_dir="/data/tfds")
  source[0]["image"].shape   # (28, 28, 1), uint8
"""

import os
from collections.abc import Callable
from typing import Any

import numpy as np

# Optional arrays of a latent .npz that become record fields (jaxdiff.autoencoder.cache).
LATENT_EXTRAS = ("tokens", "semantic_map")
DIGITS_NUM_TEST = 297  # 1,797 digits: the first 1,500 train, the last 297 are held out.


class ArraySource:
    """A source over in-memory arrays.

    Attributes:
      images: (N, H, W, C) uint8 or float32.
      labels: (N,) int32.
      extras: {name: (N, ...) array} more fields of each record (e.g. a latent set's
        "tokens" and "semantic_map").
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, extras: dict | None = None):
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W, C); got {images.shape}.")
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must have shape (N,) = ({images.shape[0]},); got {labels.shape}."
            )
        self.images = images
        self.labels = labels.astype(np.int32)
        self.extras = dict(extras or {})
        for name, array in self.extras.items():
            if len(array) != len(images):
                raise ValueError(f"{name} has {len(array)} rows; the images have {len(images)}.")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        record = {"image": self.images[index], "label": self.labels[index]}
        record.update((name, array[index]) for name, array in self.extras.items())
        return record


def digits(split: str = "train", **unused) -> ArraySource:
    """scikit-learn's 1,797 real 8x8 handwritten digits (shipped with sklearn, no download).

    Pixel values 0..16 are mapped to uint8 0..255 (``round(v * 255 / 16)``).

    Args:
      split: "train" (first 1,500), "test" (last 297) or "all".

    Returns:
      An :class:`ArraySource` of (8, 8, 1) uint8 images and labels 0..9.
    """
    from sklearn.datasets import load_digits

    splits = {"train": slice(0, -DIGITS_NUM_TEST), "test": slice(-DIGITS_NUM_TEST, None)}
    splits["all"] = slice(None)
    if split not in splits:
        raise ValueError(f"Unknown digits split {split!r}; valid splits: {sorted(splits)}.")
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ArraySource(images[splits[split]], data.target[splits[split]])


def latents(path: str = "", split: str = "train", **unused) -> ArraySource:
    """Pre-encoded latents (e.g. VAE latents of ImageNet for DiT) from a ``.npz`` file.

    The file holds ``latents`` (N, h, w, c) float (already multiplied by the VAE's scale
    factor, e.g. 0.18215) and ``labels`` (N,) int, and may hold the conditioning of a
    latent text / map model (:data:`LATENT_EXTRAS`). ``{split}`` in ``path`` is replaced by
    the split name. The arrays are memory-mapped when the file is an uncompressed ``.npz``.

    Raises:
      ValueError: if the file is missing or lacks those arrays.
    """
    path = path.format(split=split)
    if not path or not os.path.exists(path):
        raise ValueError(
            f"Latent file {path!r} not found: set --config.data.path to an .npz with arrays "
            "'latents' (N, h, w, c) and 'labels' (N,)."
        )
    with np.load(path, mmap_mode="r") as f:
        missing = {"latents", "labels"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}; it has {f.files}.")
        extras = {n: np.asarray(f[n]) for n in LATENT_EXTRAS if n in f.files}
        return ArraySource(np.asarray(f["latents"], np.float32), np.asarray(f["labels"]), extras)


def tfds(name: str, split: str = "train", data_dir: str | None = None, **unused):
    """A ``tfds.data_source`` (array_record; no TensorFlow at run time).

    Args:
      name: a TFDS dataset name, e.g. "mnist".
      split: a TFDS split, e.g. "train" or "test".
      data_dir: where the prepared dataset lives; defaults to ``$TFDS_DATA_DIR`` and then
        TFDS's own default (~/tensorflow_datasets).

    Raises:
      ValueError: when the dataset is not prepared there, saying how to fix it.
    """
    import tensorflow_datasets as tfds_lib

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    try:
        return tfds_lib.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises several types (AssertionError, DatasetNotFoundError).
        where = data_dir or "the TFDS default directory (~/tensorflow_datasets)"
        raise ValueError(
            f"TFDS dataset {name!r} (split {split!r}) is not available in {where} "
            f"({type(e).__name__}). Prepare it with `tfds build {name}` (online) or set "
            "TFDS_DATA_DIR / --config.data.data_dir to a directory that holds it."
        ) from None


def shapes3d(
    name: str = "shapes3d", split: str = "train", data_dir: str | None = None, **unused
) -> ArraySource:
    """Seeded renders of procedural 3D shapes with view labels (see ``data.shapes3d``);
    ``data_dir`` caches them."""
    from jaxdiff.data import shapes3d as shapes3d_lib  # renders with JAX: imported on use

    return shapes3d_lib.source(name, split, data_dir)


def moving_mnist(
    name: str = "moving_mnist", split: str = "train", data_dir: str | None = None, **unused
):
    """Seeded Moving MNIST clips (T, H, W, 1) from TFDS MNIST (see ``data.moving_mnist``)."""
    from jaxdiff.data import moving_mnist as moving_mnist_lib

    return moving_mnist_lib.source(name, split, data_dir)


def spoken_digits(
    name: str = "spoken_digits", split: str = "train", data_dir: str | None = None, **unused
) -> ArraySource:
    """Log-mel images of espeak-ng digits built in ``data_dir`` (see ``data.spoken_digits``)."""
    from jaxdiff.data import spoken_digits as spoken_digits_lib

    return spoken_digits_lib.source(name, split, data_dir)


def captioned(name: str = "mnist", split: str = "train", data_dir: str | None = None, **unused):
    """A TFDS digit set placed at seeded scales / offsets with measured captions
    (``data.captions.CaptionedSource``; records also hold "caption")."""
    from jaxdiff.data import captions

    return captions.CaptionedSource(tfds(name, split, data_dir))


SOURCES: dict[str, Callable[..., Any]] = {
    "captioned": captioned,
    "tfds": tfds,
    "digits": digits,
    "latents": latents,
    "shapes3d": shapes3d,
    "moving_mnist": moving_mnist,
    "spoken_digits": spoken_digits,
}


def build(kind: str, **options):
    """Builds a source by kind (a key of ``SOURCES``) and its options.

    Raises:
      ValueError: for an unknown kind, listing the valid ones.
    """
    if kind not in SOURCES:
        raise ValueError(f"Unknown data source {kind!r}; valid sources: {sorted(SOURCES)}.")
    return SOURCES[kind](**options)
