"""Moving MNIST, generated procedurally and seeded: 1-2 digits bouncing in a small frame.

As Srivastava et al. (2015) built it, but small enough for 2 CPU cores: each MNIST digit
is averaged over 2x2 blocks to 14x14 and moves on a 32x32 canvas (default) in a straight
line at 1 to ``max_speed`` pixels per frame, bouncing off the edges; two digits overlap by
the pixel-wise maximum. Clip ``i`` of a split is a pure function of (split seed, i) and
the digits, so any clip can be drawn in any order (a random-access grain source) and the
same call gives the same bytes. The train split moves MNIST's train digits, the test
split its test digits.

Example::

  source = moving_mnist.source("moving_mnist", "train", data_dir="/data/tfds")
  source[0]["image"].shape      # (16, 32, 32, 1) uint8; "label": the first digit's class
  clip = moving_mnist.make_clip(digits, labels, np.random.default_rng(0), SPECS["moving_mnist"])
  clip.positions.shape          # (16, n_digits, 2): each digit's top-left (row, col)
"""

import dataclasses
from typing import NamedTuple

import numpy as np

SPLIT_SEEDS = {"train": 0, "test": 1}
DIGIT_SIZE = 14  # 28x28 MNIST digits averaged over 2x2 blocks


@dataclasses.dataclass(frozen=True)
class Spec:
    """A Moving MNIST data set.

    Attributes:
      size: the canvas is size x size.
      frames: frames per clip.
      max_digits: each clip has 1..max_digits digits (uniformly).
      max_speed: speeds are uniform in [1, max_speed] pixels per frame.
      clips: {split: number of clips}.
    """

    size: int = 32
    frames: int = 16
    max_digits: int = 2
    max_speed: float = 2.5
    clips: tuple[tuple[str, int], ...] = (("train", 60_000), ("test", 2_000))

    def num_clips(self, split: str) -> int:
        counts = dict(self.clips)
        if split not in counts:
            raise ValueError(f"unknown Moving MNIST split {split!r}; valid: {sorted(counts)}.")
        return counts[split]


SPECS = {
    "moving_mnist": Spec(),  # 32x32, 16 frames, 1-2 digits
    "moving_mnist_8f": Spec(frames=8),  # 8 frames: half the cost per clip
    "moving_mnist_1digit": Spec(max_digits=1),
    "moving_mnist_tiny": Spec(frames=4, clips=(("train", 16), ("test", 8))),  # smoke tests
}


class Clip(NamedTuple):
    """One clip.

    Attributes:
      frames: (T, H, W, 1) uint8.
      labels: (D,) int32 classes of the D digits.
      positions: (T, D, 2) float32 top-left corner (row, col) of each digit's 14x14 box.
    """

    frames: np.ndarray
    labels: np.ndarray
    positions: np.ndarray


def shrink_digits(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28[, 1]) uint8 digits -> (N, 14, 14) float32 in [0, 255] (2x2 means)."""
    images = np.asarray(images, np.float32).reshape(len(images), 28, 28)
    return images.reshape(-1, DIGIT_SIZE, 2, DIGIT_SIZE, 2).mean(axis=(2, 4))


def trajectory(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    """(T, 2) top-left positions of one digit bouncing inside the canvas."""
    room = spec.size - DIGIT_SIZE
    pos = rng.uniform(0, room, size=2)
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, spec.max_speed)
    vel = speed * np.array([np.sin(angle), np.cos(angle)])
    out = np.empty((spec.frames, 2), np.float32)
    for t in range(spec.frames):
        out[t] = pos
        pos = pos + vel
        low, high = pos < 0, pos > room  # reflect off the walls
        pos = np.where(low, -pos, np.where(high, 2 * room - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return out


def render(digits: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """Pastes digits (D, 14, 14) at positions (T, D, 2) -> (T, size, size, 1) uint8 (max)."""
    frames = np.zeros((positions.shape[0], size, size), np.float32)
    for t, frame_pos in enumerate(np.rint(positions).astype(int)):
        for digit, (r, c) in zip(digits, frame_pos, strict=True):
            window = frames[t, r : r + DIGIT_SIZE, c : c + DIGIT_SIZE]
            np.maximum(window, digit, out=window)
    return np.rint(frames).astype(np.uint8)[..., None]


def make_clip(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator, spec: Spec) -> Clip:
    """A clip of 1..max_digits random digits from ``digits`` (N, 14, 14), drawn with ``rng``."""
    count = int(rng.integers(1, spec.max_digits + 1))
    chosen = rng.integers(0, len(digits), size=count)
    positions = np.stack([trajectory(rng, spec) for _ in range(count)], axis=1)
    frames = render(digits[chosen], positions, spec.size)
    return Clip(frames, np.asarray(labels)[chosen].astype(np.int32), positions)


class MovingMNIST:
    """A random-access source of clips: ``{"image": (T, H, W, 1) uint8, "label": int}``.

    The label is the first digit's class. ``clip(i)`` also gives the digit labels and
    positions (for the temporal-consistency measures).

    Attributes:
      digits: (N, 14, 14) float32 digits to move.
      labels: (N,) their classes.
      spec: the data set's :class:`Spec`.
      split: "train" or "test" (sets the seed and the number of clips).
    """

    def __init__(self, digits: np.ndarray, labels: np.ndarray, spec: Spec, split: str):
        if digits.ndim != 3 or digits.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
            raise ValueError(f"digits must be (N, 14, 14); got {digits.shape}.")
        if spec.size < DIGIT_SIZE + 2:
            raise ValueError(f"canvas size {spec.size} leaves a 14x14 digit no room to move.")
        self.digits, self.labels, self.spec, self.split = digits, labels, spec, split
        self._len = spec.num_clips(split)

    def __len__(self) -> int:
        return self._len

    def clip(self, index: int) -> Clip:
        """Clip ``index`` (the same for the same split, index and digits)."""
        if not 0 <= index < self._len:
            raise IndexError(f"clip {index} out of range [0, {self._len}).")
        rng = np.random.default_rng([SPLIT_SEEDS[self.split], index])
        return make_clip(self.digits, self.labels, rng, self.spec)

    def __getitem__(self, index: int) -> dict:
        c = self.clip(int(index))
        return {"image": c.frames, "label": c.labels[0]}


def source(
    name: str = "moving_mnist", split: str = "train", data_dir: str | None = None, **unused
) -> MovingMNIST:
    """Moving MNIST from the MNIST of TFDS in ``data_dir`` (train digits for "train").

    Raises:
      ValueError: an unknown name or split (listing the valid ones), or MNIST missing.
    """
    from jaxdiff.data import sources
    from jaxdiff.evaluation.fid import read_records

    if name not in SPECS:
        raise ValueError(f"unknown Moving MNIST data set {name!r}; valid: {sorted(SPECS)}.")
    SPECS[name].num_clips(split)  # checks the split before reading MNIST
    mnist = sources.tfds("mnist", split=split, data_dir=data_dir)
    records = read_records(mnist, len(mnist))
    digits = shrink_digits(np.stack([r["image"] for r in records]))
    labels = np.array([r["label"] for r in records], np.int32)
    return MovingMNIST(digits, labels, SPECS[name], split)
