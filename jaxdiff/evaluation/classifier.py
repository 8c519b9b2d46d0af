"""A small MNIST / Fashion-MNIST classifier for Inception-Score-style metrics on 28x28 data.

The FID Inception knows nothing of digits; for the data available here a purpose-trained
CNN gives a meaningful IS (logits) and a cheap feature space (its 128-d penultimate layer).
Trained with :func:`train_classifier` (Adam, a few epochs; >= 99% / >= 90% test accuracy on
MNIST / Fashion-MNIST), saved with an orbax ``CheckpointManager``.

Command line::

  python -m jaxdiff.evaluation.classifier --dataset=mnist --workdir=/tmp/clf_mnist \
      --data_dir=/path/to/tfds --epochs=5

Example::

  params, meta = load_classifier("/tmp/clf_mnist")
  fn = logits_fn(params, data_range=(-1, 1))
  mean, std = inception_score.inception_score(samples, fn, data_range=(-1, 1))
"""

import json
import os
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from flax import linen as nn

from jaxdiff._chunks import map_in_chunks
from jaxdiff._types import Array
from jaxdiff.evaluation.fid import read_records

DATASETS = {"mnist": 10, "fashion_mnist": 10}


class Classifier(nn.Module):
    """Conv(32)-pool-Conv(64)-pool-Dense(128)-Dropout-Dense(K) on (B, 28, 28, 1) in [-1, 1].

    Attributes:
      num_classes: K.
      dropout: dropout rate on the 128-d features while training.
    """

    num_classes: int = 10
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: Array, return_features: bool = False, train: bool = False) -> Array:
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(64, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        features = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
        if return_features:
            return features
        features = nn.Dropout(self.dropout, deterministic=not train)(features)
        return nn.Dense(self.num_classes)(features)


def load_split(dataset: str, split: str, data_dir: str | None = None):
    """A whole TFDS split as ((N, 28, 28, 1) float32 in [-1, 1], (N,) int32 labels)."""
    import tensorflow_datasets as tfds

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(DATASETS)}")
    source = tfds.data_source(dataset, split=split, data_dir=data_dir)
    records = read_records(source, len(source))
    images = np.stack([r["image"] for r in records]).astype(np.float32) / 127.5 - 1.0
    return images, np.array([r["label"] for r in records], np.int32)


def _train_step(model, tx):
    def loss_fn(params, x, y, key):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, opt_state, x, y, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def accuracy(params: dict, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000):
    """Top-1 accuracy of the classifier on (N, 28, 28, 1) images in [-1, 1]."""
    model = Classifier(num_classes=params["Dense_1"]["bias"].shape[0])
    logits = lambda p, x: cast(Array, model.apply({"params": p}, x))
    predict = jax.jit(lambda p, x: jnp.argmax(logits(p, x), -1))
    preds = map_in_chunks(lambda x: predict(params, x), images, batch_size)
    return float(np.mean(preds == labels))


def fit(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    max_steps: int | None = None,
    desc: str = "train classifier",
) -> tuple[dict, int]:
    """Trains a :class:`Classifier` on in-memory images (any size, any channels).

    Args:
      images: (N, H, W, C) float32 in [-1, 1].
      labels: (N,) int class indices in [0, num_classes).
      num_classes: K.
      epochs, batch_size, learning_rate, seed, max_steps: as :func:`train_classifier`.
      desc: the progress bar's label.

    Returns:
      (params, number of steps taken).

    Raises:
      ValueError: a batch larger than the data.
    """
    steps_per_epoch = len(images) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(images)} training examples")
    total = epochs * steps_per_epoch
    total = total if max_steps is None else min(max_steps, total)
    model = Classifier(num_classes)
    init_key, root = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, images[:1])["params"]
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, total))
    opt_state, step = tx.init(params), _train_step(model, tx)
    rng = np.random.default_rng(seed)
    for i in tqdm.trange(total, desc=desc, mininterval=10):
        if i % steps_per_epoch == 0:
            order = rng.permutation(len(images))
        idx = order[(i % steps_per_epoch) * batch_size : (i % steps_per_epoch + 1) * batch_size]
        key = jax.random.fold_in(root, i)
        params, opt_state, _ = step(params, opt_state, images[idx], labels[idx], key)
    return params, total


def train_classifier(
    dataset: str = "mnist",
    workdir: str | None = None,
    data_dir: str | None = None,
    epochs: int = 5,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    max_steps: int | None = None,
) -> tuple[dict, dict]:
    """Trains the classifier on a TFDS dataset and (optionally) checkpoints it.

    Args:
      dataset: one of :data:`DATASETS` ("mnist", "fashion_mnist").
      workdir: where the orbax checkpoint goes (None: not saved).
      data_dir: TFDS data directory (None: TFDS default / ``TFDS_DATA_DIR``).
      epochs: passes over the training split.
      batch_size: examples per step.
      learning_rate: Adam step size (cosine-decayed to 0).
      seed: seeds the initialisation and the shuffling.
      max_steps: stop early after this many steps (for tests).

    Returns:
      (params, meta) with meta = {"dataset", "num_classes", "steps", "test_accuracy"}.
    """
    x_train, y_train = load_split(dataset, "train", data_dir)
    x_test, y_test = load_split(dataset, "test", data_dir)
    params, total = fit(
        x_train,
        y_train,
        DATASETS[dataset],
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        max_steps=max_steps,
        desc=f"train {dataset} classifier",
    )
    meta = {
        "dataset": dataset,
        "num_classes": DATASETS[dataset],
        "steps": total,
        "test_accuracy": accuracy(params, x_test, y_test),
    }
    if workdir is not None:
        save_classifier(workdir, params, meta)
    return params, meta


def save_classifier(workdir: str, params: dict, meta: dict) -> None:
    """Saves params + JSON metadata with an orbax CheckpointManager under ``workdir``."""
    with ocp.CheckpointManager(os.path.abspath(workdir)) as mngr:
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)
        )
        mngr.save(meta["steps"], args=args, force=True)
        mngr.wait_until_finished()


def load_classifier(workdir: str) -> tuple[dict, dict]:
    """Restores (params, meta) saved by :func:`train_classifier` (latest step).

    ``meta["input_shape"]`` (H, W, C), when saved, sets the image shape (default 28x28x1).
    """
    with ocp.CheckpointManager(os.path.abspath(workdir)) as mngr:
        step = mngr.latest_step()
        if step is None:
            raise FileNotFoundError(f"no classifier checkpoint in {workdir}; train one first")
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        model = Classifier(meta["num_classes"])
        x = jax.ShapeDtypeStruct((1, *meta.get("input_shape", (28, 28, 1))), jnp.float32)
        abstract = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
        restored = mngr.restore(
            step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))
        )
    return restored["params"], meta


def logits_fn(params: dict, data_range: tuple[float, float] = (0, 255), features: bool = False):
    """Jitted ``(B, 28, 28, C) images in data_range -> (B, K) logits`` (or (B, 128) features).

    RGB inputs (C = 3) are averaged to one channel.
    """
    model = Classifier(num_classes=params["Dense_1"]["bias"].shape[0])
    lo, hi = data_range

    @jax.jit
    def fn(images):
        x = jnp.asarray(images, jnp.float32)
        x = jnp.mean(x, axis=-1, keepdims=True)
        x = 2.0 * (x - lo) / (hi - lo) - 1.0
        return model.apply({"params": params}, x, return_features=features)

    return fn


def main(argv):
    del argv
    from absl import flags

    from jaxdiff import _xla_flags

    _xla_flags.prepare()

    f = flags.FLAGS
    _, meta = train_classifier(f.dataset, f.workdir, f.data_dir, f.epochs, f.batch_size)
    print(json.dumps(meta))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_enum("dataset", "mnist", sorted(DATASETS), "TFDS dataset.")
    flags.DEFINE_string("workdir", None, "Checkpoint directory.", required=True)
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    flags.DEFINE_integer("epochs", 5, "Training epochs.")
    flags.DEFINE_integer("batch_size", 128, "Batch size.")
    app.run(main)
