"""The spoken-digit classifier: which digit a 32x32 log-mel spectrogram says.

The in-repo CNN of ``evaluation.classifier`` (its ``fit``, orbax checkpoints), trained on
the spectrogram images of ``data.spoken_digits``; it labels class-conditional samples to
measure that they say the digit asked for.

Commands (docs/audio.md)::

  python -m jaxdiff.evaluation.spoken_digits train --data_dir=data/spoken_digits \\
      --workdir=runs/clf_spoken_digits --epochs=20
  python -m jaxdiff.sample --workdir=runs/spoken_digits --num_samples=1000 --out=samples.npz
  python -m jaxdiff.evaluation.spoken_digits score --workdir=runs/clf_spoken_digits \\
      --samples=samples.npz
"""

import argparse
import json

import numpy as np

from jaxdiff import _xla_flags
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


def main(argv: list[str] | None = None) -> None:
    """``train`` or ``score`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["train", "score"])
    parser.add_argument("--workdir", required=True, help="The classifier's directory.")
    parser.add_argument("--data_dir", help="train: the built spoken digits.")
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
        result = {"accuracy": score(params, f["images"], f["labels"]), "n": len(f["labels"])}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
