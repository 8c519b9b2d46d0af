"""Inception Score over any classifier that returns logits.

IS = exp(E_x KL(p(y|x) || p(y))), with p(y) the mean of p(y|x) over the split (Salimans et
al. 2016). Following their code, the samples are cut into ``splits`` equal parts, the score
is computed on each, and the mean and standard deviation (numpy's, ddof = 0) are reported.

Any logits function works: the FID Inception's 1008-way head
(``fid.inception_feature_fn(output="logits")``, weights from pytorch-fid's file) for natural
images, or the in-repo MNIST / Fashion-MNIST classifier
(:func:`jaxdiff.evaluation.classifier.logits_fn`) for the data available here, whose IS
is bounded by its 10 classes.

Example::

  mean, std = inception_score(images, logits_fn, splits=10)
"""

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from jaxdiff.evaluation import fid


def inception_score_from_logits(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS from precomputed logits, in float64.

    Args:
      logits: (N, K) unnormalised log-probabilities.
      splits: number of equal parts (N // splits samples each; the remainder is dropped).

    Returns:
      (mean, std) of the per-split scores; each lies in [1, K].
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (N, K) with K >= 2 classes, got {logits.shape}")
    if not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"splits must be in [1, N={logits.shape[0]}], got {splits}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits contain NaN or inf")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    size = logits.shape[0] // splits
    scores = []
    for i in range(splits):
        part = log_p[i * size : (i + 1) * size]
        log_py = np.log(np.exp(part).mean(axis=0))
        kl = np.sum(np.exp(part) * (part - log_py), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(
    images: np.ndarray,
    logits_fn: Callable[[np.ndarray], np.ndarray],
    splits: int = 10,
    batch_size: int = 100,
    data_range: tuple[float, float] = (0, 255),
) -> tuple[float, float]:
    """IS of images under a classifier.

    Args:
      images: (N, H, W, C) in ``data_range`` (checked as in :func:`fid.validate_images`).
      logits_fn: batch (B, H, W, C) -> (B, K) logits; jitted functions compile once.
      splits: number of splits (10 as published).
      batch_size: images per call.
      data_range: value range of ``images``.

    Returns:
      (mean, std) over splits.
    """
    as_jax = lambda x: jnp.asarray(logits_fn(x))  # extract_features takes a JAX-valued fn
    logits = fid.extract_features(images, as_jax, batch_size, data_range)
    return inception_score_from_logits(logits, splits)
