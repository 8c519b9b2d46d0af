"""Evaluates a training run: samples in resumable shards, then FID, KID, IS, accuracy, bits/dim.

Used by ``python -m jaxdiff.evaluate``. Samples are written as ``.npz`` shards under
``WORKDIR/eval/<tag>/`` (one file per shard, written atomically), so a long run (50,000
samples for FID) that is interrupted resumes where it stopped; the metrics are written as
JSON beside them and printed as a table.
"""

import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jaxdiff.evaluation import convert, inception_score, likelihood
from jaxdiff.evaluation import fid as fid_lib
from jaxdiff.training import components

METRICS = ("fid", "kid", "is", "acc", "bpd")
FEATURES = ("inception", "classifier")


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats (N, H, W, C) -> uint8 pixels, rounded as a PNG writer would."""
    return np.clip(np.round((np.asarray(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _write_atomic(path: str, **arrays) -> None:
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def generate_samples(sample_fn, params, out_dir, num_samples, labels_fn, shard_size=500, seed=0):
    """Draws ``num_samples`` images in shards of ``shard_size``, skipping shards on disk.

    Args:
      sample_fn: ``(params, key, labels) -> images in [-1, 1]`` (jitted: one compile).
      params: the network parameters.
      out_dir: where the shards live (created).
      num_samples: how many images in all.
      labels_fn: ``n -> labels (n,)`` or None for an unconditional model.
      shard_size: images per shard (the batch of one sampler call).
      seed: shard i uses ``fold_in(key(seed), i)``, so a resumed run draws the same images.

    Returns:
      uint8 images (num_samples, H, W, C).
    """
    shard_ids = range(math.ceil(num_samples / shard_size))
    draw_shards(sample_fn, params, out_dir, shard_ids, labels_fn, shard_size, seed)
    return load_shards(out_dir, num_samples, shard_size)


def draw_shards(sample_fn, params, out_dir, shard_ids, labels_fn, shard_size=500, seed=0):
    """Draws the shards ``shard_ids`` (those not on disk) of :func:`generate_samples`.

    Shard i is ``out_dir/shard_{i:05d}.npz`` (uint8 "images" (shard_size, H, W, C)),
    written atomically; any subset, in any process, draws the same shards as a full run.
    """
    os.makedirs(out_dir, exist_ok=True)
    shard_ids = list(shard_ids)
    for i in tqdm.tqdm(shard_ids, desc=f"sampling {len(shard_ids)} shards", unit="shard"):
        path = shard_path(out_dir, i)
        if not os.path.exists(path):
            labels = None if labels_fn is None else labels_fn(shard_size)
            key = jax.random.fold_in(jax.random.key(seed), i)
            images = to_uint8(sample_fn(params, key, labels))
            _write_atomic(path, images=images)


def shard_path(out_dir: str, i: int) -> str:
    return os.path.join(out_dir, f"shard_{i:05d}.npz")


def load_shards(out_dir: str, num_samples: int, shard_size: int) -> np.ndarray:
    """uint8 images (num_samples, H, W, C) from the shards of :func:`draw_shards`."""
    shards = []
    for i in range(math.ceil(num_samples / shard_size)):
        with np.load(shard_path(out_dir, i)) as data:
            shards.append(data["images"])
    return np.concatenate(shards)[:num_samples]


def shard_labels(labels_fn, num_samples: int, shard_size: int) -> np.ndarray | None:
    """The (num_samples,) labels that :func:`generate_samples` gives its images, or None."""
    if labels_fn is None:
        return None
    one_shard = np.asarray(labels_fn(shard_size))
    return np.resize(one_shard, (math.ceil(num_samples / shard_size) * shard_size,))[:num_samples]


def reference_images(config, count: int, split: str = "test"):
    """(uint8 images (n, H, W, C), labels (n,)) of the run's data set, n <= count."""
    source = components.build_source(config, split=split)
    records = [source[i] for i in range(min(count, len(source)))]
    images = np.stack([np.asarray(r["image"]) for r in records])
    return images, np.asarray([r["label"] for r in records], np.int32)


def feature_and_logit_fns(features: str, classifier_dir: str | None):
    """(features_fn, logits_fn or None) over uint8 images, for FID/KID and IS."""
    if features not in FEATURES:
        raise ValueError(f"Unknown features {features!r}; valid: {list(FEATURES)}.")
    if features == "classifier" or classifier_dir:
        from jaxdiff.evaluation import classifier

        if not classifier_dir:
            raise ValueError("features='classifier' needs --classifier_dir (a trained classifier).")
        params, _ = classifier.load_classifier(classifier_dir)
        logits = classifier.logits_fn(params, (0, 255))
        feats = classifier.logits_fn(params, (0, 255), features=True)
        return (feats if features == "classifier" else fid_lib.inception_feature_fn()), logits
    return fid_lib.inception_feature_fn(), None


def cached_features(images, feature_fn, cache_dir, kind: str, desc: str) -> np.ndarray:
    """``extract_features`` of uint8 ``images``, kept in ``cache_dir`` under their hash.

    The file name holds ``kind`` (which network made the features) and a SHA-256 of the
    images' bytes and shape, so the test set's features are computed once per data set and
    a rerun over the same sample shards reads its features back. ``cache_dir`` None: no
    cache.
    """
    if cache_dir is None:
        return fid_lib.extract_features(images, feature_fn, progress=True, desc=desc)
    digest = hashlib.sha256(f"{images.shape}|{images.dtype}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    path = os.path.join(cache_dir, f"features_{kind}_{digest.hexdigest()[:16]}.npy")
    if os.path.exists(path):
        return np.load(path)
    features = fid_lib.extract_features(images, feature_fn, progress=True, desc=desc)
    os.makedirs(cache_dir, exist_ok=True)
    np.save(path + ".tmp.npy", features)
    os.replace(path + ".tmp.npy", path)
    return features


def shared_reference_dir() -> str:
    """A folder beside the Inception weights for test-set features every model can reuse.

    The features depend only on the images and the weights; the folder is named after the
    weights file, so other weights (a test's random ones) never read these.
    """
    weights = convert.default_path()
    return os.path.join(os.path.dirname(weights), "features_" + os.path.basename(weights))


def sample_metrics(
    metrics, samples, reference, feature_fn, logits_fn, labels=None, cache=None, reference_dir=None
) -> dict:
    """FID / KID / IS / accuracy of uint8 ``samples`` against uint8 ``reference`` images.

    Args:
      metrics: names from :data:`METRICS` ("bpd" is ignored here).
      samples: uint8 generated images (N, H, W, C).
      reference: uint8 test images (M, H, W, C).
      feature_fn, logits_fn: from :func:`feature_and_logit_fns`.
      labels: the (N,) classes the samples were asked for ("acc" needs them).
      cache: (directory, kind) to keep features in (:func:`cached_features`), or None.
      reference_dir: where the reference images' features are kept (default: ``cache``'s
        directory), e.g. one folder shared by every model scored against the same test set.

    Returns:
      {"fid", "kid", "kid_std", "is", "is_std", "acc"}: those of ``metrics``.
    """
    out = {}
    if {"fid", "kid"} & set(metrics):
        where, kind = cache or (None, "")
        f_fake = cached_features(samples, feature_fn, where, kind, "features: samples")
        f_real = cached_features(
            reference, feature_fn, reference_dir or where, kind, "features: test images"
        )
        if "fid" in metrics:
            out["fid"] = fid_lib.fid_from_features(f_real, f_fake)
        if "kid" in metrics:
            out["kid"], out["kid_std"] = fid_lib.kid(f_real, f_fake)
    if {"is", "acc"} & set(metrics):
        if logits_fn is None:
            raise ValueError("IS and accuracy need class logits: pass --classifier_dir.")
        logits = fid_lib.extract_features(samples, logits_fn, progress=True, desc="logits")
    if "is" in metrics:
        out["is"], out["is_std"] = inception_score.inception_score_from_logits(logits)
    if "acc" in metrics:
        if labels is None:
            raise ValueError("accuracy needs the requested labels (a class-conditional model).")
        out["acc"] = float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(labels)))
    return out


def bits_per_dim(run, images: np.ndarray, labels: np.ndarray, seed: int = 0, batch=64) -> dict:
    """Mean ODE bits/dim (Hutchinson, dequantised) of test images under the run's model."""
    process = getattr(run.process, "continuous", run.process)
    model_fn = run.model_fn()
    if run.config.model.learn_sigma:
        model_fn = lambda x, t, _f=model_fn, **c: _f(x, t, **c)[0]
    conditional = bool(components.num_classes(run.config))
    kind = run.config.sample.kind

    @jax.jit
    def bpd(key, x, y):
        cond = {"label": y} if conditional else {}
        options = dict(kind=kind, divergence="hutchinson", rtol=1e-4, atol=1e-4)
        return likelihood.ode_bits_per_dim(key, model_fn, process, x, **options, **cond)[0]

    values = []
    for i in tqdm.trange(0, len(images) - batch + 1, batch, desc="bits/dim", unit="batch"):
        key = jax.random.fold_in(jax.random.key(seed), i)
        values.append(np.asarray(bpd(key, images[i : i + batch], labels[i : i + batch])))
    bpds = np.concatenate(values)
    return {"bpd": float(bpds.mean()), "bpd_stderr": float(bpds.std() / math.sqrt(bpds.size))}


def write_report(results: dict, path: str) -> str:
    """Writes ``results`` as JSON to ``path`` and returns a printable table."""
    with open(path, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    width = max(len(k) for k in results)
    rows = [
        f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
        for k, v in sorted(results.items())
    ]
    return "\n".join(rows)


def check_metrics(names) -> list[str]:
    """Validates a list of metric names against :data:`METRICS`."""
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"Unknown metrics {bad}; valid metrics: {list(METRICS)}.")
    return list(names)


def tag_for(method: str, num_steps: int, guidance: float, params: str, options=None) -> str:
    """The shard folder name of one sampler setting (``options``: {name: value} that
    change the samples, e.g. {"sigma_min": 0.8} -> ``..._sigma_min0.8``)."""
    items = sorted((options or {}).items())
    extra = "".join(f"_{k}{v:g}" if isinstance(v, float) else f"_{k}{v}" for k, v in items)
    return f"{method}_{num_steps}_w{guidance:g}_{params}{extra}"


def parse_options(pairs) -> dict:
    """{name: value} of ``KEY=VALUE`` strings; values become int, float, bool or str.

    Raises:
      ValueError: a string without ``=`` or with an empty name.
    """
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair!r} is not KEY=VALUE (e.g. sigma_min=0.8).")
        options[key.strip()] = _option_value(text.strip())
    return options


def _option_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def labels_for(config):
    """A function n -> cycling class labels for a conditional run (None otherwise)."""
    if not components.num_classes(config):
        return None
    return lambda n: jnp.asarray(components.sample_labels(config, n))
