"""Pluggable feature networks and the Frechet distance for ``quality_vs_nfe``.

``FEATURES`` maps a backend name to a builder ``build(workdir, train_images, train_labels,
**options) -> (features, info)`` with ``features(images_uint8) -> (N, D) float64`` and
``info`` a dict describing the network:

- ``inception``: the standard FID (2048-d pool features of the FID InceptionV3) through
  ``jaxdiff.evaluation.fid`` (the evaluation issue's module; it needs the converted
  Inception weights, see that module's docs). Absent on a branch without it: a clear error.
- ``classifier``: the penultimate 128-d features of a small MNIST CNN trained here (cached
  as a tensors-only ``.npz`` in the workdir). Its Frechet distances are NOT comparable with
  published (Inception) FIDs; they rank samplers on the same data and floor.

The distance is the Frechet distance between Gaussians fitted to the features, in float64:
``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2`` (symmetric form, stable
for ill-conditioned covariances).
"""

import functools
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

FeatureFn = Callable[[np.ndarray], np.ndarray]


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features, float64."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D); got shape {f.shape}.")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64).

    Args:
      mu1, mu2: (D,) means.
      sigma1, sigma2: (D, D) covariances.

    Returns:
      The distance (>= 0 up to rounding).
    """
    root = _sqrt_psd(sigma1)
    inner = np.linalg.eigvalsh(root @ sigma2 @ root)
    trace_sqrt = np.sum(np.sqrt(np.clip(inner, 0, None)))
    diff = np.asarray(mu1) - np.asarray(mu2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fd_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Frechet distance between two feature sets."""
    return frechet_distance(*statistics(f1), *statistics(f2))


class SmallCNN(nn.Module):
    """A LeNet-style MNIST classifier; ``features=True`` returns the 128-d penultimate layer."""

    @nn.compact
    def __call__(self, x, features: bool = False):
        for ch in (32, 64):
            x = nn.relu(nn.Conv(ch, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        return x if features else nn.Dense(10)(x)


def _to_unit(images: np.ndarray) -> jax.Array:
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def train_classifier(images, labels, steps: int, batch: int = 128, seed: int = 0) -> dict:
    """Trains SmallCNN with Adam on uint8 (N, 28, 28, 1) images; returns its params."""
    net, tx = SmallCNN(), optax.adam(1e-3)
    params = net.init(jax.random.key(seed), _to_unit(images[:1]))["params"]

    @jax.jit
    def step(params, opt_state, x, y):
        def loss(p):
            logits = net.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state, rng = tx.init(params), np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(images), batch)
        params, opt_state = step(params, opt_state, _to_unit(images[idx]), labels[idx])
    return params


def _batched(fn, images: np.ndarray, batch: int = 500) -> np.ndarray:
    out = [np.asarray(fn(_to_unit(images[i : i + batch]))) for i in range(0, len(images), batch)]
    return np.concatenate(out).astype(np.float64)


def _save_params(path: str, params: dict) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    flat = {"/".join(k.key for k in p): np.asarray(v) for p, v in leaves}
    np.savez(path, **flat)


def _load_params(path: str, like: dict) -> dict:
    with np.load(path, allow_pickle=False) as data:
        paths = jax.tree_util.tree_flatten_with_path(like)[0]
        leaves = [jnp.asarray(data["/".join(k.key for k in p)]) for p, _ in paths]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


def classifier_features(workdir, images, labels, steps: int = 2000, **_) -> FeatureFn:
    """The ``classifier`` backend: trains (or loads the cached) SmallCNN; returns features().

    Args:
      workdir: folder of the cache file ``classifier_<steps>.npz`` (None: no cache).
      images, labels: MNIST training images (N, 28, 28, 1) uint8 and labels (N,).
      steps: Adam steps of batch 128.
    """
    net, n_val = SmallCNN(), min(2000, len(images) // 5)
    path = workdir and os.path.join(workdir, f"classifier_{steps}.npz")
    if path and os.path.exists(path):
        like = net.init(jax.random.key(0), _to_unit(images[:1]))["params"]
        params = _load_params(path, like)
    else:
        params = train_classifier(images[:-n_val], labels[:-n_val], steps)
        if path:
            os.makedirs(workdir, exist_ok=True)
            _save_params(path, params)
    fn = jax.jit(functools.partial(net.apply, {"params": params}, features=True))
    predict = jax.jit(lambda x: net.apply({"params": params}, x).argmax(-1))
    val = slice(-n_val, None)  # held out from the classifier's training images
    accuracy = float(np.mean(_batched(predict, images[val]) == labels[val]))
    info = {"backend": "classifier", "steps": steps, "val_accuracy": accuracy, "val_size": n_val}
    return (lambda imgs: _batched(fn, imgs)), info


def inception_features(workdir, images, labels, **_) -> FeatureFn:
    """The ``inception`` backend: FID InceptionV3 pool features via jaxdiff.evaluation.fid."""
    try:
        from jaxdiff.evaluation import fid  # the evaluation issue's module
    except ImportError as err:
        raise ValueError(
            "The 'inception' feature backend needs jaxdiff.evaluation.fid (the evaluation "
            "issue's module), which this checkout lacks; use --features=classifier."
        ) from err
    fn = fid.inception_feature_fn(data_range=(0, 255))
    features = lambda imgs: np.asarray(fid.extract_features(imgs, fn), np.float64)  # noqa: E731
    return features, {"backend": "inception"}


FEATURES: dict[str, Callable[..., tuple[FeatureFn, dict]]] = {
    "classifier": classifier_features,
    "inception": inception_features,
}


def build(name: str, workdir, images, labels, **options) -> tuple[FeatureFn, dict]:
    """Builds ``(features, info)`` of backend ``name`` (a key of ``FEATURES``)."""
    if name not in FEATURES:
        raise ValueError(f"Unknown feature backend {name!r}; valid: {sorted(FEATURES)}.")
    return FEATURES[name](workdir, images, labels, **options)
