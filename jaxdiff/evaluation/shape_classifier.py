"""A shape classifier trained on ``data.shapes3d`` renders: does an object look like its prompt?

The CNN of :mod:`jaxdiff.evaluation.classifier` (Conv-pool-Conv-pool-Dense) on 32x32 RGB
renders, labels = shape class (not the view). Score distillation's acceptance check
renders a distilled object from 16 turntable views and counts the views this classifier
labels as the prompt (:func:`agreement`).

Command line::

  python -m jaxdiff.evaluation.shape_classifier --workdir=runs/shape_classifier --epochs=10

Example::

  params, meta = classifier.load_classifier("runs/shape_classifier")
  fraction = shape_classifier.agreement(params, frames, shapes3d.class_index("torus"))
"""

import json
import sys
from typing import cast

import jax.numpy as jnp
import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags
from jaxdiff._types import Array
from jaxdiff.data import shapes3d
from jaxdiff.evaluation import classifier


def _images(renders: shapes3d.Renders) -> np.ndarray:
    return renders.images.astype(np.float32) / 127.5 - 1.0


def train(
    dataset: str = "shapes3d",
    workdir: str | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    max_steps: int | None = None,
    data_dir: str | None = None,
) -> tuple[dict, dict]:
    """Trains the classifier on a ``shapes3d.DATASETS`` dataset and (optionally) saves it.

    ``data_dir`` caches the renders (``shapes3d.generate``); the other arguments are
    ``classifier.fit``'s.

    Returns:
      (params, meta) with meta = {"dataset", "classes", "num_classes", "input_shape",
      "steps", "test_accuracy"}; saved with ``classifier.save_classifier`` under workdir.
    """
    train_set = shapes3d.generate(dataset, "train", data_dir)
    test_set = shapes3d.generate(dataset, "test", data_dir)
    x_train = _images(train_set)
    params, steps = classifier.fit(
        x_train,
        train_set.classes,
        len(shapes3d.CLASSES),
        epochs=epochs,
        batch_size=min(batch_size, len(x_train)),
        learning_rate=learning_rate,
        seed=seed,
        max_steps=max_steps,
        desc="train shape classifier",
    )
    meta = {
        "dataset": dataset,
        "classes": list(shapes3d.CLASSES),
        "num_classes": len(shapes3d.CLASSES),
        "input_shape": list(x_train.shape[1:]),
        "steps": steps,
        "test_accuracy": classifier.accuracy(params, _images(test_set), test_set.classes),
    }
    if workdir is not None:
        classifier.save_classifier(workdir, params, meta)
    return params, meta


def predict(params: dict, frames: Array) -> np.ndarray:
    """Class indices (V,) of frames (V, H, W, 3) in [0, 1]."""
    model = classifier.Classifier(num_classes=params["Dense_1"]["bias"].shape[0])
    x = 2.0 * jnp.asarray(frames, jnp.float32) - 1.0
    logits = cast(Array, model.apply({"params": params}, x))
    return np.asarray(jnp.argmax(logits, axis=-1))


def agreement(params: dict, frames: Array, class_id: int) -> float:
    """The fraction of frames (V, H, W, 3) in [0, 1] labelled ``class_id``."""
    frames = jnp.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (V, H, W, 3); got {frames.shape}.")
    return float(np.mean(predict(params, frames) == class_id))


FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "Where the classifier is saved.", flag_values=FLAGS)
flags.DEFINE_enum(
    "dataset", "shapes3d", sorted(shapes3d.DATASETS), "Renders to train on.", flag_values=FLAGS
)
flags.DEFINE_integer("epochs", 10, "Passes over the training renders.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 128, "Batch size.", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "Cache of the renders.", flag_values=FLAGS)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["workdir"], flag_values=FLAGS)


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    _cli.require(FLAGS.epochs >= 1, f"--epochs={FLAGS.epochs}: must be >= 1.")
    _cli.require(FLAGS.batch_size >= 1, f"--batch_size={FLAGS.batch_size}: must be >= 1.")
    _, meta = train(
        FLAGS.dataset,
        FLAGS.workdir,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        data_dir=FLAGS.data_dir,
    )
    print(json.dumps(meta))


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.evaluation.shape_classifier", doc=__doc__)


if __name__ == "__main__":
    main()
