"""Measures of generated Moving MNIST clips: per-frame quality and temporal consistency.

FVD needs I3D weights that cannot be fetched here, so clips are measured with the in-repo
MNIST classifier (``evaluation.classifier``) on the digits found in each frame:

- digits are the largest connected bright regions of a frame (at most ``max_digits``);
  each gives its intensity centroid and a 14x14 crop around it, resized to 28x28
  (2x2 repetition, the inverse of the data's 2x2 averaging);
- per-frame quality: the Frechet distance between the classifier's 128-d features of the
  crops of all frames of generated and of real clips;
- temporal consistency, per clip: ``identity`` (share of frames whose sorted digit classes
  equal the clip's most common ones), ``count_stable`` (share of consecutive frame pairs
  with as many digits), ``jump`` (mean centroid displacement between consecutive frames,
  digits matched by the Hungarian assignment) and ``smooth`` (share of pairs with as many
  digits, none displaced by more than ``max_jump`` pixels).

Command (docs/video.md)::

  python -m jaxdiff.evaluation.video_metrics --samples=runs/moving_mnist/clips.npz \\
      --classifier=runs/clf_mnist --data_dir=/path/to/tfds --out=video_metrics.json

``--samples=real:train`` measures real train clips against the real test clips (the
reference row of the table).
"""

import argparse
import json
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

DIGIT = 14  # crop size on the 32x32 canvas (the data's digit size)


class Detection(NamedTuple):
    """Digits found in one frame.

    Attributes:
      centroids: (D, 2) intensity centroids (row, col).
      crops: (D, 28, 28, 1) crops in [-1, 1].
    """

    centroids: np.ndarray
    crops: np.ndarray


def find_digits(
    frame: np.ndarray, max_digits: int, threshold: float = -0.5, min_pixels: int = 6
) -> Detection:
    """The up to ``max_digits`` largest regions brighter than ``threshold`` of a frame.

    Args:
      frame: (H, W) or (H, W, 1) in [-1, 1].
      max_digits: regions kept (the brightest in total).
      threshold: pixels above it belong to a digit (-0.5 is 64 of 255).
      min_pixels: smaller regions are noise.
    """
    from scipy import ndimage

    frame = np.asarray(frame, np.float32).reshape(frame.shape[0], frame.shape[1])
    regions, count = ndimage.label(frame > threshold, structure=np.ones((3, 3)))
    weight = frame + 1.0
    ids = np.arange(1, count + 1)
    mass = np.asarray(ndimage.sum(weight, regions, ids)) if count else np.zeros(0)
    size = np.asarray(ndimage.sum(np.ones_like(frame), regions, ids)) if count else np.zeros(0)
    keep = [i for i in ids[np.argsort(-mass)] if size[i - 1] >= min_pixels][:max_digits]
    centroids = np.array(
        [ndimage.center_of_mass(weight, regions, i) for i in keep], np.float32
    ).reshape(-1, 2)
    crops = np.stack([crop(frame, c) for c in centroids]) if keep else np.zeros((0, 28, 28, 1))
    return Detection(centroids, crops.astype(np.float32))


def crop(frame: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """The 14x14 window of ``frame`` (H, W) centred at ``centroid`` (inside the frame),
    repeated 2x2 -> (28, 28, 1)."""
    h, w = frame.shape
    top = int(np.clip(np.rint(centroid[0] - DIGIT / 2), 0, h - DIGIT))
    left = int(np.clip(np.rint(centroid[1] - DIGIT / 2), 0, w - DIGIT))
    window = frame[top : top + DIGIT, left : left + DIGIT]
    return window.repeat(2, axis=0).repeat(2, axis=1)[..., None]


def detect_clips(clips: np.ndarray, max_digits: int) -> list[list[Detection]]:
    """Detections of every frame of clips (N, T, H, W, 1) in [-1, 1]."""
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise ValueError(f"clips must be (N, T, H, W, C); got shape {clips.shape}.")
    return [[find_digits(frame, max_digits) for frame in clip] for clip in clips]


def all_crops(detections: list[list[Detection]]) -> np.ndarray:
    """(M, 28, 28, 1) crops of all digits of all frames."""
    crops = [d.crops for clip in detections for d in clip if len(d.crops)]
    return np.concatenate(crops) if crops else np.zeros((0, 28, 28, 1), np.float32)


def frame_frechet_distance(
    real: list[list[Detection]], fake: list[list[Detection]], feature_fn: Callable
) -> float:
    """Frechet distance of ``feature_fn`` features of the digit crops of two clip sets.

    Raises:
      ValueError: too few crops for a covariance.
    """
    from jaxdiff.evaluation import fid

    feats = []
    for name, det in (("real", real), ("generated", fake)):
        crops = all_crops(det)
        if len(crops) < 2:
            raise ValueError(f"{name} clips hold {len(crops)} digit crops; need at least 2.")
        feats.append(np.asarray(feature_fn(crops), np.float64))
    return fid.fid_from_features(feats[0], feats[1])


def _matched_jumps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Displacements of centroids a (D, 2) -> b (D, 2) under the cheapest matching."""
    from scipy.optimize import linear_sum_assignment

    cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


def clip_consistency(clip: list[Detection], classify: Callable, max_jump: float) -> dict:
    """{"identity", "count_stable", "jump", "smooth"} of one clip's detections."""
    classes = [
        tuple(sorted(np.asarray(classify(d.crops)).tolist())) if len(d.crops) else () for d in clip
    ]
    modal = Counter(classes).most_common(1)[0][0]
    same: list[bool] = []
    jumps: list[float] = []
    smooth: list[bool] = []
    for a, b in zip(clip[:-1], clip[1:], strict=True):
        same.append(len(a.centroids) == len(b.centroids) > 0)
        moved = _matched_jumps(a.centroids, b.centroids) if same[-1] else np.zeros(0)
        jumps.extend(moved.tolist())
        smooth.append(same[-1] and bool(np.all(moved <= max_jump)))
    return {
        "identity": float(np.mean([c == modal and c != () for c in classes])),
        "count_stable": float(np.mean(same)),
        "jump": float(np.mean(jumps)) if jumps else float("nan"),
        "smooth": float(np.mean(smooth)),
    }


def temporal_consistency(
    detections: list[list[Detection]], classify: Callable, max_jump: float = 4.0
) -> dict:
    """Means over clips of :func:`clip_consistency` (``jump`` over clips that have one).

    Args:
      detections: from :func:`detect_clips`.
      classify: (M, 28, 28, 1) crops in [-1, 1] -> (M,) classes.
      max_jump: the largest centroid step (pixels) counted as smooth; the data moves
        at most 2.5 pixels a frame.
    """
    per_clip = [clip_consistency(clip, classify, max_jump) for clip in detections]
    return {k: float(np.nanmean([c[k] for c in per_clip])) for k in per_clip[0]}


def shuffle_frames(clips: np.ndarray, seed: int = 0) -> np.ndarray:
    """Clips whose frame t comes from a random clip (per t): each frame is real, time is not."""
    rng = np.random.default_rng(seed)
    n, t = clips.shape[:2]
    return np.stack([clips[rng.permutation(n), i] for i in range(t)], axis=1)


def measure(real: np.ndarray, fake: np.ndarray, feature_fn, classify, max_digits: int) -> dict:
    """Frechet distance of the frames and temporal consistency of both clip sets."""
    real_det, fake_det = detect_clips(real, max_digits), detect_clips(fake, max_digits)
    return {
        "frame_fd": frame_frechet_distance(real_det, fake_det, feature_fn),
        "real": temporal_consistency(real_det, classify),
        "generated": temporal_consistency(fake_det, classify),
    }


def real_clips(source, count: int) -> np.ndarray:
    """The first ``count`` clips (count, T, H, W, 1) in [-1, 1] of a Moving MNIST source."""
    clips = [source[i]["image"] for i in range(min(count, len(source)))]
    return np.stack(clips).astype(np.float32) / 127.5 - 1.0


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--samples",
        required=True,
        help=".npz with images (N, T, H, W, 1) in [-1, 1], or real:SPLIT (the reference).",
    )
    parser.add_argument("--classifier", required=True, help="An MNIST classifier's workdir.")
    parser.add_argument("--data_dir", default=None, help="TFDS directory holding MNIST.")
    parser.add_argument("--dataset", default="moving_mnist", help="data.moving_mnist name.")
    parser.add_argument("--num_real", type=int, default=1000)
    parser.add_argument("--out", default=None, help="Write the numbers as JSON here too.")
    args = parser.parse_args(argv)
    from jaxdiff import _xla_flags
    from jaxdiff.data import moving_mnist
    from jaxdiff.evaluation import classifier

    _xla_flags.prepare()

    params, _ = classifier.load_classifier(args.classifier)
    features = classifier.logits_fn(params, data_range=(-1, 1), features=True)
    logits = classifier.logits_fn(params, data_range=(-1, 1))
    classify = lambda crops: np.argmax(np.asarray(logits(crops)), -1)
    src = moving_mnist.source(args.dataset, "test", args.data_dir)
    real = real_clips(src, args.num_real)
    if args.samples.startswith("real:"):  # the reference row: real clips of another split
        fake = real_clips(
            moving_mnist.source(args.dataset, args.samples[5:], args.data_dir), args.num_real
        )
    else:
        with np.load(args.samples) as f:
            fake = f["images"]
    result = measure(real, fake, features, classify, src.spec.max_digits)
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
