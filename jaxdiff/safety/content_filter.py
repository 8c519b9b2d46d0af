"""A pluggable content filter, applied before an image leaves the server.

Two checks, each optional:

- prompts: a block list of words (or phrases), matched case-insensitively as whole words;
  a match raises :class:`Blocked` (a ValueError) naming the word;
- images: a classifier, any callable ``images (N, 28, 28, 1) float in [-1, 1] -> logits
  (N, K)``; images it assigns to a blocked class are rejected, with the predicted class in
  the reason. :func:`classifier_from_dir` loads the in-repo MNIST / Fashion-MNIST classifier
  (``jaxdiff.evaluation.classifier``). Blocking digit classes is a demonstration of the
  plumbing, not a policy: a real deployment plugs in its own classifier.

Example::

  content = ContentFilter(blocked_words=["gore"], blocked_classes=[3],
                          classifier=classifier_from_dir("runs/clf_mnist"))
  content.check_prompt(prompt)               # raises Blocked("... 'gore' ...")
  allowed = content.check_images(images)     # (N,) bool; uint8 or [-1, 1] floats
"""

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable

import numpy as np

logger = logging.getLogger(__name__)


class Blocked(ValueError):
    """A prompt or image the content filter refuses; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    """Per-image verdicts of :meth:`ContentFilter.screen`.

    Attributes:
      allowed: (N,) bool.
      predicted: (N,) int, the classifier's class (-1 when no classifier ran).
      reasons: N strings, empty for allowed images.
    """

    allowed: np.ndarray
    predicted: np.ndarray
    reasons: list[str]


def _as_classifier_input(images) -> np.ndarray:
    """uint8 pixels or floats in [-1, 1], (N, H, W), (N, H, W, 1) or (N, H, W, 3) ->
    float32 (N, H, W, 1) in [-1, 1] (RGB averaged)."""
    a = np.asarray(images)
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] in (1, 3))):
        raise ValueError(
            f"images must have shape (N, H, W), (N, H, W, 1) or (N, H, W, 3); got {a.shape}."
        )
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 127.5 - 1.0
    elif a.dtype.kind == "f":
        if a.size and not (np.isfinite(a).all() and a.min() >= -1.001 and a.max() <= 1.001):
            raise ValueError("float images must lie in [-1, 1] (uint8 pixels are fine too).")
    else:
        raise ValueError(f"images must be uint8 or float in [-1, 1]; got dtype {a.dtype}.")
    a = a[..., None] if a.ndim == 3 else a
    return a.astype(np.float32).mean(axis=-1, keepdims=True)


class ContentFilter:
    """Blocks prompts with listed words and images of listed classes.

    Args:
      blocked_words: words or phrases; matched case-insensitively as whole words.
      blocked_classes: class indices to reject; needs ``classifier``.
      classifier: ``images (N, 28, 28, 1) float32 in [-1, 1] -> logits (N, K)``.

    Raises:
      ValueError: an empty word, a negative class, or classes without a classifier.
    """

    def __init__(
        self,
        blocked_words: Iterable[str] = (),
        blocked_classes: Iterable[int] = (),
        classifier: Callable | None = None,
    ):
        self.blocked_words = tuple(blocked_words)
        self.blocked_classes = tuple(int(c) for c in blocked_classes)
        self.classifier = classifier
        bad = [w for w in self.blocked_words if not isinstance(w, str) or not w.strip()]
        if bad:
            raise ValueError(f"blocked_words must be non-empty strings; got {bad!r}.")
        if any(c < 0 for c in self.blocked_classes):
            raise ValueError(f"blocked_classes must be >= 0; got {self.blocked_classes}.")
        if self.blocked_classes and classifier is None:
            raise ValueError(
                "blocked_classes needs a classifier; pass classifier=classifier_from_dir(DIR) "
                "or any callable images (N, 28, 28, 1) in [-1, 1] -> logits (N, K)."
            )
        words = [r"\s+".join(map(re.escape, w.split())) for w in self.blocked_words]
        self._patterns = [re.compile(rf"(?<!\w){w}(?!\w)", re.IGNORECASE) for w in words]

    def check_prompt(self, prompt: str) -> None:
        """Raises :class:`Blocked` if ``prompt`` contains a blocked word (else returns None)."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a str; got {type(prompt).__name__}.")
        for word, pattern in zip(self.blocked_words, self._patterns, strict=True):
            if pattern.search(prompt):
                raise Blocked(f"the prompt contains the blocked word {word!r}.")

    def screen(self, images) -> ImageCheck:
        """Classifies images (uint8, or floats in [-1, 1]) and rejects blocked classes."""
        x = _as_classifier_input(images)
        if not self.blocked_classes:
            return ImageCheck(np.ones(len(x), bool), np.full(len(x), -1), [""] * len(x))
        classify = self.classifier
        assert classify is not None  # __init__ refuses classes without a classifier
        logits = np.asarray(classify(x))
        if logits.shape[:1] != (len(x),) or logits.ndim != 2:
            raise ValueError(f"the classifier returned shape {logits.shape}; want ({len(x)}, K).")
        if max(self.blocked_classes) >= logits.shape[1]:
            raise ValueError(
                f"blocked_classes {self.blocked_classes} outside the classifier's "
                f"{logits.shape[1]} classes (0..{logits.shape[1] - 1})."
            )
        predicted = np.argmax(logits, axis=-1)
        allowed = ~np.isin(predicted, self.blocked_classes)
        reasons = [
            f"predicted class {c} is blocked" if not ok else ""
            for ok, c in zip(allowed, predicted, strict=True)
        ]
        for i in np.flatnonzero(~allowed):
            logger.info("image %d rejected: %s", i, reasons[i])
        return ImageCheck(allowed, predicted, reasons)

    def check_images(self, images) -> np.ndarray:
        """(N,) bool: the images that may leave the server (see :meth:`screen`)."""
        return self.screen(images).allowed


def classifier_from_dir(classifier_dir: str) -> Callable[[np.ndarray], np.ndarray]:
    """The in-repo classifier trained by ``python -m jaxdiff.evaluation.classifier``.

    Args:
      classifier_dir: its workdir (an orbax checkpoint).

    Returns:
      ``images (N, 28, 28, 1) float in [-1, 1] -> logits (N, K)`` as numpy (jitted; JAX is
      imported here, on first use).

    Raises:
      FileNotFoundError: no checkpoint in ``classifier_dir``.
    """
    from jaxdiff.evaluation import classifier

    params, _ = classifier.load_classifier(classifier_dir)
    logits = classifier.logits_fn(params, data_range=(-1, 1))
    return lambda images: np.asarray(logits(images))
