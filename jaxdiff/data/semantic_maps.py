"""Semantic maps derived from images, and their agreement (IoU).

A map is a (N, H, W, 1) float array in {0, 1}: ``mask`` is the ink (pixel > 0 in [-1, 1],
i.e. > 0.5 in [0, 1]); ``edges`` is the mask's inner boundary (ink pixels with a
background 4-neighbour). A latent model takes the map through concatenation
(:mod:`jaxdiff.latent`) and draws an image whose own map should match it: :func:`iou`
measures that (the acceptance target is >= 0.8 on masks).

Example:
  >>> import numpy as np
  >>> from jaxdiff.data import semantic_maps
  >>> a = np.zeros((1, 4, 4, 1)); a[0, :2] = 1; b = np.zeros((1, 4, 4, 1)); b[0, 1:3] = 1
  >>> semantic_maps.iou(a, b).tolist()
  [0.3333333333333333]
"""

import numpy as np


def _images(images) -> np.ndarray:
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"images must be (N, H, W, 1) in [-1, 1]; got shape {x.shape}.")
    return x


def mask(images) -> np.ndarray:
    """(N, H, W, 1) images in [-1, 1] -> (N, H, W, 1) float32 {0, 1}: pixel > 0."""
    return (_images(images) > 0).astype(np.float32)


def edges(images) -> np.ndarray:
    """The mask's inner boundary: ink pixels with a 4-neighbour outside the ink."""
    m = mask(images)[..., 0] > 0
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    interior = p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    return (m & ~interior).astype(np.float32)[..., None]


MAPS = {"mask": mask, "edges": edges}


def derive(kind: str, images) -> np.ndarray:
    """The map of ``kind`` (a :data:`MAPS` name) of (N, H, W, 1) images in [-1, 1].

    Raises:
      ValueError: an unknown kind (listing the valid ones).
    """
    if kind not in MAPS:
        raise ValueError(f"unknown semantic map {kind!r}; valid: {sorted(MAPS)}.")
    return MAPS[kind](images)


def iou(a, b) -> np.ndarray:
    """Intersection over union of two binary maps (N, H, W, 1) (> 0.5 is in): (N,).

    Two empty maps agree perfectly (IoU 1).
    """
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    if a.shape != b.shape:
        raise ValueError(f"maps must have one shape; got {a.shape} and {b.shape}.")
    axes = tuple(range(1, a.ndim))
    inter, union = (a & b).sum(axis=axes), (a | b).sum(axis=axes)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
