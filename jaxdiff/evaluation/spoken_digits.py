"""The spoken-digit classifier: which digit a 32x32 log-mel spectrogram says.

The in-repo CNN of ``evaluation.classifier`` (its ``fit``, orbax checkpoints), trained on
the spectrogram images of ``data.spoken_digits``; it labels class-conditional samples to
measure that they say the digit asked for.

Commands (docs/audio.md)::

  python -m jaxdiff.evaluation.spoken_digits train --data_dir=data/spoken_digits \\
      --workdir=runs/clf_spoken_digits --epochs=20
  python -m jaxdiff.sample --workdir=runs/spoken_digits --num_samples=1000 --out=samples.npz
  python -m jaxdiff.evaluation.spoken_digits score --workdir=runs/clf_spoken_digits \\
      --samples=samples.npz --data_dir=data/spoken_digits

With ``--data_dir``, ``score`` also gives the Frechet distance of the samples to the real
test spectrograms in the classifier's 128-d features, and that of as many real training
spectrograms (the floor a perfect model would reach with that many samples).
"""

import argparse
import json

import numpy as np

from jaxdiff import _xla_flags
from jaxdiff._chunks import map_in_chunks
from jaxdiff.evaluation import classifier

INPUT_SHAPE = (32, 32, 1)


def load_images(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """((N, 32, 32, 1) float32 in [-1, 1], (N,) labels) of a built split."""
    from jaxdiff.data import spoken_digits

    arrays = spoken_digits.load(data_dir, split)
    return arrays["images"].astype(np.float32) / 127.5 - 1.0, arrays["labels"]


def train(
    data_dir: str,
    workdir: str | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    seed: int = 0,
    max_steps: int | None = None,
) -> tuple[dict, dict]:
    """Trains the classifier on the train split, measures it on the test split.

    Returns:
      (params, meta) with meta = {"dataset", "num_classes", "steps", "test_accuracy",
      "input_shape"}; saved under ``workdir`` unless it is None.
    """
    x_train, y_train = load_images(data_dir, "train")
    x_test, y_test = load_images(data_dir, "test")
    params, steps = classifier.fit(
        x_train,
        y_train,
        10,
        epochs=epochs,
        batch_size=min(batch_size, len(x_train)),
        seed=seed,
        max_steps=max_steps,
        desc="train spoken-digit classifier",
    )
    meta = {
        "dataset": "spoken_digits",
        "num_classes": 10,
        "steps": steps,
        "test_accuracy": classifier.accuracy(params, x_test, y_test),
        "input_shape": list(INPUT_SHAPE),
    }
    if workdir is not None:
        classifier.save_classifier(workdir, params, meta)
    return params, meta


def score(params: dict, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``images`` (N, 32, 32, 1) in [-1, 1] classified as their ``labels``.

    Raises:
      ValueError: images of another shape, or labels that do not match them.
    """
    if images.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"spectrograms must be (N, 32, 32, 1); got {images.shape}.")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"need one label per image ({len(images)}); got {labels.shape}.")
    return classifier.accuracy(params, images, labels)


def report(params: dict, images: np.ndarray, labels: np.ndarray, data_dir: str | None = None):
    """The ``score`` command's numbers for samples (N, 32, 32, 1) in [-1, 1] and their labels.

    Returns:
      {"accuracy", "n", "per_digit": accuracy of each digit 0..9 (None where none was asked
      for)}; with ``data_dir``, also "fd": the Frechet distance of the samples' classifier
      features to the real test split's, and "fd_real_train": that of the first N real
      training spectrograms (N = the number of samples).
    """
    per_digit: list[float | None] = []
    for digit in range(10):
        asked = labels == digit
        acc = classifier.accuracy(params, images[asked], labels[asked]) if asked.any() else None
        per_digit.append(acc)
    result = {"accuracy": score(params, images, labels), "n": len(labels), "per_digit": per_digit}
    if data_dir is not None:
        from jaxdiff.evaluation import fid

        features = classifier.logits_fn(params, (-1, 1), features=True)
        test = map_in_chunks(features, load_images(data_dir, "test")[0])
        train_images = load_images(data_dir, "train")[0][: len(images)]
        result["fd"] = fid.fid_from_features(map_in_chunks(features, images), test)
        result["fd_real_train"] = fid.fid_from_features(map_in_chunks(features, train_images), test)
    return result


def main(argv: list[str] | None = None) -> None:
    """``train`` or ``score`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["train", "score"])
    parser.add_argument("--workdir", required=True, help="The classifier's directory.")
    parser.add_argument(
        "--data_dir", help="The built spoken digits (train; score: adds Frechet distances)."
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--samples", help="score: .npz of images and labels (jaxdiff.sample).")
    args = parser.parse_args(argv)
    _xla_flags.prepare()
    if args.command == "train":
        if not args.data_dir:
            parser.error("train needs --data_dir (python -m jaxdiff.data.spoken_digits builds it)")
        _, meta = train(args.data_dir, args.workdir, args.epochs)
        print(json.dumps(meta))
        return
    if not args.samples:
        parser.error("score needs --samples=FILE.npz")
    params, _ = classifier.load_classifier(args.workdir)
    with np.load(args.samples) as f:
        result = report(params, f["images"], f["labels"], args.data_dir)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
