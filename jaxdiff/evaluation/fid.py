"""FID and KID: features in jitted batches, statistics in float64, a stable matrix square root.

The Frechet distance between N(mu1, S1) and N(mu2, S2) is

  |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}.

``scipy.linalg.sqrtm(S1 @ S2)`` (pytorch-fid, TF-FID) works on a non-symmetric product and
loses accuracy, or returns complex noise, when the covariances are ill-conditioned or
singular (fewer samples than 2048 dimensions). Here ``tr (S1 S2)^{1/2}`` is computed as
``sum sqrt(eig(A S2 A))`` with ``A = S1^{1/2}`` from a symmetric eigendecomposition: ``A S2 A``
is symmetric positive semi-definite and similar to ``S1 S2``, so the eigenvalues agree and
a symmetric solver finds them stably.

Reference statistics are ``.npz`` files with ``mu`` (D,) and ``sigma`` (D, D), the format of
pytorch-fid, so its published files load directly.

Example::

  fn = inception_feature_fn(data_range=(0, 255))            # jitted, sharded over devices
  f_real = extract_features(real_uint8, fn)                 # (N, 2048) float32
  f_fake = extract_features(fake_uint8, fn)
  fid = frechet_distance(*feature_statistics(f_real), *feature_statistics(f_fake))
  kid_mean, kid_std = kid(f_real, f_fake)

Command line (images from TFDS, ``.npz`` image arrays or precomputed statistics)::

  python -m jaxdiff.evaluation.fid tfds:mnist:train:10000 tfds:mnist:test:10000
"""

import functools
import os
import warnings
import zipfile
from collections.abc import Callable

import jax
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdiff import _xla_flags
from jaxdiff.evaluation import convert, inception

FeatureFn = Callable[[np.ndarray], jax.Array]


def validate_images(images: np.ndarray, data_range: tuple[float, float]) -> None:
    """Checks images before feature extraction.

    Args:
      images: (N, H, W, C) with C in {1, 3}; uint8 for data_range (0, 255), else floating.
      data_range: (low, high) the values must lie in.

    Raises:
      ValueError: wrong rank, channel count, dtype or value range (the message says which).
    """
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, H, W, C) with C = 1 or 3 (NHWC), got {images.shape}"
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty: need at least one image")
    kind = images.dtype.kind
    if kind not in "uf" or (kind == "u" and images.dtype != np.uint8):
        raise ValueError(f"images must be uint8 or floating, got dtype {images.dtype}")
    lo, hi = data_range
    if not lo < hi:
        raise ValueError(f"data_range must be (low, high) with low < high, got {data_range}")
    if kind == "u" and (lo, hi) != (0, 255):
        raise ValueError(f"uint8 images need data_range=(0, 255), got {data_range}")
    vmin, vmax = float(np.min(images)), float(np.max(images))
    tol = 1e-3 * (hi - lo)
    if vmin < lo - tol or vmax > hi + tol or not np.isfinite(vmin + vmax):
        raise ValueError(
            f"image values span [{vmin:.4g}, {vmax:.4g}], outside data_range {data_range}; "
            "pass the right data_range (e.g. (-1, 1) for model samples, (0, 255) for uint8)"
        )


def _data_mesh() -> Mesh:
    return Mesh(np.array(jax.devices()), ("data",))


def inception_feature_fn(
    params: dict | None = None,
    data_range: tuple[float, float] = (0, 255),
    output: str = "pool",
    quantize: bool = True,
) -> FeatureFn:
    """The FID Inception as a jitted batch function, batch sharded over all devices.

    Args:
      params: Flax params of :class:`inception.InceptionV3` (default: the converted cache,
        see :func:`convert.load_params`).
      data_range: value range of the images it will get.
      output: ``"pool"`` (2048-d features) or ``"logits"`` (needs the ``fc`` head's weights).
      quantize: round to 8 bits before resizing, as the reference does.

    Returns:
      ``fn(images (B, H, W, C)) -> (B, D)``; B must be divisible by the device count.
    """
    if output not in ("pool", "logits"):
        raise ValueError(f"output must be 'pool' or 'logits', got {output!r}")
    params = convert.load_params() if params is None else params
    if output == "logits" and "fc" not in params:
        raise ValueError("logits need the fc head: convert pytorch-fid's pt_inception .pth file")
    net = inception.InceptionV3(include_logits=output == "logits")
    sharding = NamedSharding(_data_mesh(), PartitionSpec("data"))
    params = jax.device_put(params, NamedSharding(_data_mesh(), PartitionSpec()))

    @jax.jit
    def apply(p, x):
        x = jax.lax.with_sharding_constraint(x, sharding)
        return net.apply({"params": p}, inception.preprocess(x, data_range, quantize))[output]

    return lambda images: apply(params, images)


def extract_features(
    images: np.ndarray,
    feature_fn: FeatureFn,
    batch_size: int = 100,
    data_range: tuple[float, float] = (0, 255),
    progress: bool = False,
    desc: str = "features",
) -> np.ndarray:
    """Runs ``feature_fn`` over ``images`` in fixed-size batches (one compile).

    Args:
      images: (N, H, W, C) images, checked by :func:`validate_images`.
      feature_fn: batch -> (B, D) features, e.g. :func:`inception_feature_fn`.
      batch_size: images per call; the last batch is padded (padding is dropped).
      data_range: range of ``images`` (must match what ``feature_fn`` expects).
      progress: show a tqdm progress bar.
      desc: the progress bar's label.

    Returns:
      (N, D) float32 features.
    """
    images = np.asarray(images)
    validate_images(images, data_range)
    n_dev = jax.device_count()
    batch_size = -(-min(batch_size, len(images)) // n_dev) * n_dev
    out = []
    steps = range(0, len(images), batch_size)
    for start in tqdm.tqdm(steps, desc=desc, disable=not progress, unit="batch"):
        batch = images[start : start + batch_size]
        pad = batch_size - len(batch)
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
        out.append(np.asarray(feature_fn(batch))[: batch_size - pad])
    return np.concatenate(out).astype(np.float32)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, as ``np.cov``) in float64.

    Args:
      features: (N, D).

    Returns:
      mu (D,), sigma (D, D), both float64. Warns when N < D (sigma is rank-deficient and
      the FID biased; the standard protocol uses >= 10,000 samples).
    """
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {features.shape}")
    n, d = features.shape
    if n < d:
        warnings.warn(
            f"{n} samples for {d} feature dimensions: the covariance is rank-deficient and "
            "FID is biased upwards; use at least as many samples as dimensions (10k+ usual)",
            stacklevel=2,
        )
    mu = features.mean(axis=0)
    centred = features - mu
    return mu, centred.T @ centred / (n - 1)


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via ``eigh``.

    Args:
      a: (D, D) symmetric PSD (tiny negative eigenvalues from round-off are clipped to 0).

    Returns:
      (D, D) symmetric PSD ``r`` with ``r @ r = a``.
    """
    a = np.asarray(a, np.float64)
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr (sigma1 sigma2)^{1/2}`` for PSD matrices, stably (see the module docstring).

    Args:
      sigma1: (D, D) symmetric PSD.
      sigma2: (D, D) symmetric PSD.

    Returns:
      The trace, a float >= 0.
    """
    root = sqrtm_psd(sigma1)
    m = root @ np.asarray(sigma2, np.float64) @ root
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def _check_stats(mu: np.ndarray, sigma: np.ndarray, name: str) -> None:
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{name}: mu must be (D,) and sigma (D, D), got {mu.shape}, {sigma.shape}")


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (= FID on Inception stats).

    Args:
      mu1: (D,) mean of set 1.
      sigma1: (D, D) covariance of set 1.
      mu2: (D,) mean of set 2.
      sigma2: (D, D) covariance of set 2.

    Returns:
      The distance, a float64 scalar.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    _check_stats(mu1, sigma1, "set 1")
    _check_stats(mu2, sigma2, "set 2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    trace = np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + trace)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def save_statistics(path: str, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Writes pytorch-fid-compatible statistics: an ``.npz`` with ``mu`` and ``sigma``."""
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    _check_stats(mu, sigma, path)
    np.savez(path, mu=mu, sigma=sigma)


def load_statistics(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``mu``, ``sigma`` from a pytorch-fid / jaxdiff ``.npz`` (no pickles allowed)."""
    with np.load(path, allow_pickle=False) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"{path} must hold arrays 'mu' and 'sigma', found {list(data)}")
        mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    _check_stats(mu, sigma, path)
    return mu, sigma


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3) -> np.ndarray:
    """KID's kernel ``(x . y / D + 1)^degree`` for (N, D) x (M, D) -> (N, M)."""
    return (x @ y.T / x.shape[1] + 1.0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased squared MMD with the polynomial kernel (Binkowski et al. 2018, eq. 2)."""
    m, n = len(x), len(y)
    kxx, kyy = polynomial_kernel(x, x, degree), polynomial_kernel(y, y, degree)
    kxy = polynomial_kernel(x, y, degree)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def kid(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of the unbiased MMD^2 over random subsets.

    Args:
      features1: (N1, D) features.
      features2: (N2, D) features.
      num_subsets: number of random subset pairs (100 in Binkowski et al.).
      subset_size: samples per subset, capped at min(N1, N2) (1000 as published).
      degree: polynomial kernel degree (3).
      seed: numpy seed for the subsets.

    Returns:
      (mean, std) of MMD^2 over subsets (multiply by 1e3 for the usual "KID x 10^3").
    """
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {x.shape} and {y.shape}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(
            x[rng.choice(len(x), size, replace=False)],
            y[rng.choice(len(y), size, replace=False)],
            degree,
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def read_records(source, count: int) -> list:
    """The first ``count`` records of a ``tfds.data_source`` (batched read where supported)."""
    try:
        return source.__getitems__(list(range(count)))
    except TypeError:  # tfds.testing.mock_data sources lack batched reads
        return [source[i] for i in range(count)]


def load_images(spec: str) -> np.ndarray:
    """Images from ``tfds:NAME:SPLIT[:N][:DATA_DIR]`` or an ``.npz`` (first array), as uint8."""
    if spec.startswith("tfds:"):
        import tensorflow_datasets as tfds

        parts = spec.split(":")
        name, split = parts[1], parts[2]
        num = int(parts[3]) if len(parts) > 3 and parts[3] else None
        data_dir = parts[4] if len(parts) > 4 else None
        source = tfds.data_source(name, split=split, data_dir=data_dir)
        count = len(source) if num is None else min(num, len(source))
        return np.stack([r["image"] for r in read_records(source, count)])
    with np.load(spec, allow_pickle=False) as data:
        return np.asarray(data[data.files[0]])


def statistics_for(
    spec: str, make_fn: Callable[[tuple], FeatureFn], batch_size: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(mu, sigma, features or None) for an images spec or a statistics ``.npz``.

    Args:
      spec: ``tfds:NAME:SPLIT[:N[:DATA_DIR]]``, an images ``.npz`` (uint8 in [0, 255] or
        floats in [-1, 1]) or a statistics ``.npz`` holding ``mu`` and ``sigma``.
      make_fn: data_range -> feature function (called only when features are needed).
      batch_size: images per call.
    """
    if spec.endswith(".npz"):
        with np.load(spec, allow_pickle=False) as data:
            if "mu" in data and "sigma" in data:
                return (*load_statistics(spec), None)
    images = load_images(spec)
    lo_hi = (0, 255) if images.dtype == np.uint8 else (-1, 1)
    validate_images(images, lo_hi)  # before the weights are loaded
    feats = extract_features(
        images, make_fn(lo_hi), batch_size, lo_hi, progress=True, desc=f"features of {spec}"
    )
    return (*feature_statistics(feats), feats)


def check_spec(spec: str) -> None:
    """Usage (exit 2) and existence (exit 1) checks of an images/statistics argument."""
    from jaxdiff import _cli

    if spec.startswith("tfds:"):
        parts = spec.split(":")
        _cli.require(
            len(parts) >= 3
            and all(parts[1:3])
            and (len(parts) < 4 or parts[3].isdigit() or not parts[3]),
            f"{spec!r}: expected tfds:NAME:SPLIT[:N[:DATA_DIR]] with N a count.",
        )
        return
    _cli.require(
        spec.endswith(".npz"),
        f"{spec!r}: expected tfds:NAME:SPLIT[:N[:DATA_DIR]], an images .npz or a stats .npz.",
    )
    if not os.path.isfile(spec):
        raise ValueError(f"{spec}: no such file.")


def _read(spec: str, make_fn, batch_size: int):
    """statistics_for with the file named in any error about its contents."""
    try:
        return statistics_for(spec, make_fn, batch_size)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, IndexError) as e:
        if isinstance(e, FileNotFoundError) and not spec.startswith("tfds:"):
            raise
        raise ValueError(
            f"{spec}: not usable as images (N, H, W, 1|3) or statistics (mu, sigma): "
            f"{type(e).__name__}: {e}"
        ) from None


def main(argv: list[str] | None = None) -> None:
    from jaxdiff import _cli

    parser = _cli.ArgumentParser(
        prog="python -m jaxdiff.evaluation.fid", description="FID (and KID) between two image sets."
    )
    parser.add_argument("a", help="tfds:NAME:SPLIT[:N[:DATA_DIR]], images .npz or stats .npz")
    parser.add_argument("b", help="same forms as a")
    parser.add_argument("--weights", default=None, help="converted Inception .npz")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--save_stats", default=None, help="write set a's stats to this .npz")
    parser.add_argument("--save_stats_b", default=None, help="write set b's stats to this .npz")
    args = parser.parse_args(argv)
    _cli.guard(_run, args, verbose=args.verbose)


def _run(args) -> None:
    from jaxdiff import _cli

    _cli.require(args.batch_size >= 1, f"--batch_size={args.batch_size}: must be >= 1.")
    for spec in (args.a, args.b):
        check_spec(spec)
    for flag, path in (("--save_stats", args.save_stats), ("--save_stats_b", args.save_stats_b)):
        if path:
            _cli.require(path.endswith(".npz"), f"{flag}={path}: must end in .npz.")
            _cli.check_writable_file(path, flag)

    @functools.cache
    def make_fn(data_range):
        return inception_feature_fn(load_weights(), data_range)

    load_weights = functools.cache(lambda: convert.load_params(args.weights))
    mu1, s1, f1 = _read(args.a, make_fn, args.batch_size)
    if args.save_stats:  # written before set b is read, so a kill keeps set a's work
        save_statistics(args.save_stats, mu1, s1)
    mu2, s2, f2 = _read(args.b, make_fn, args.batch_size)
    if args.save_stats_b:
        save_statistics(args.save_stats_b, mu2, s2)
    print(f"FID {round(frechet_distance(mu1, s1, mu2, s2), 4) + 0.0:.4f}")  # no "-0.0000"
    if f1 is not None and f2 is not None:
        mean, std = kid(f1, f2)
        whole = len(f1) <= 1000 and len(f2) <= 1000  # every subset is the whole set
        print(f"KID {mean:.6f} +- {std:.6f}" + (" (one subset: all samples)" if whole else ""))


if __name__ == "__main__":
    _xla_flags.prepare()  # before JAX starts its backends (the command only)
    main()
