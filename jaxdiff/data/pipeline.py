"""grain input pipelines: seeded global shuffle, per-host shard, normalisation, flips, batches.

The order of operations makes every host's stream a deterministic function of
(seed, step), so a restored iterator continues exactly where it stopped::

  MapDataset.source(src).shuffle(seed).repeat()     # global order, reshuffled every epoch
      [host::num_hosts]                             # this host's share of every global batch
      .map(Normalize)  .random_map(RandomFlip)      # uint8 -> [-1, 1]; optional flip
      .batch(global_batch // num_hosts)
      .to_iter_dataset(ReadOptions(num_threads))    # threads: faster than processes here

Example::

  ds = pipeline.make_dataset(sources.digits("train"), global_batch_size=64, seed=0)
  it = iter(ds); batch = next(it)     # {"image": (64, 8, 8, 1) float32, "label": (64,) int32}
  state = it.get_state()              # checkpointed by orbax with the train state
"""

import dataclasses

import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class Normalize(grain.transforms.Map):
    """uint8 pixels in [0, 255] -> float32 in [-1, 1]; float data (latents) pass unscaled.

    Attributes:
      use_labels: keep the "label" field (as int32); otherwise drop it.
      extra_keys: other fields kept as they are (e.g. "tokens", "semantic_map").
    """

    use_labels: bool = False
    extra_keys: tuple[str, ...] = ()

    def map(self, record: dict) -> dict:
        image = np.asarray(record["image"])
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 127.5 - 1.0
        out: dict[str, np.ndarray | np.int32] = {"image": image.astype(np.float32)}
        if self.use_labels:
            out["label"] = np.int32(record["label"])
        for name in self.extra_keys:
            out[name] = np.asarray(record[name])
        return out


@dataclasses.dataclass(frozen=True)
class MeanPool(grain.transforms.Map):
    """Averages f x f blocks of a normalised image (H, W, C) -> (H / f, W / f, C).

    Attributes:
      factor: f, which must divide H and W.
    """

    factor: int = 2

    def map(self, record: dict) -> dict:
        image, f = record["image"], self.factor
        h, w, c = image.shape
        if h % f or w % f:
            raise ValueError(f"data.downsample={f} does not divide the {h}x{w} images.")
        pooled = image.reshape(h // f, f, w // f, f, c).mean(axis=(1, 3))
        return dict(record, image=pooled.astype(np.float32))


@dataclasses.dataclass(frozen=True)
class RandomFlip(grain.transforms.RandomMap):
    """Flips the image (H, W, C) left-right with probability 1/2 (grain seeds the rng)."""

    def random_map(self, record: dict, rng: np.random.Generator) -> dict:
        if rng.random() < 0.5:
            record = dict(record, image=record["image"][:, ::-1])
        return record


def make_dataset(
    source,
    global_batch_size: int,
    seed: int,
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    flip: bool = False,
    use_labels: bool = False,
    num_threads: int = 2,
    downsample: int = 1,
    extra_keys: tuple[str, ...] = (),
) -> grain.IterDataset:
    """An infinite, checkpointable dataset of this host's batches.

    Args:
      source: a random-access source of {"image", "label"} records (see ``sources``).
      global_batch_size: examples per step over all hosts; divisible by ``shard_count``.
      seed: the shuffle (and flip) seed.
      shard_index: this host's index (``jax.process_index()``).
      shard_count: number of hosts (``jax.process_count()``).
      flip: random horizontal flips (off for digits).
      use_labels: emit "label" (int32 (B,)).
      num_threads: grain read threads (0 reads in the main thread).
      downsample: f > 1 averages f x f blocks (e.g. 28x28 Fashion-MNIST at 14x14).
      extra_keys: record fields batched beside the image (a latent model's conditioning).

    Returns:
      A ``grain.IterDataset`` of {"image": float32 (B, H, W, C), "label": int32 (B,)} with
      B = global_batch_size // shard_count; its iterator has ``get_state``/``set_state``.

    Raises:
      ValueError: for an empty source or a batch size that the hosts cannot share.
    """
    if len(source) == 0:
        raise ValueError("The data source is empty.")
    if global_batch_size <= 0 or global_batch_size % shard_count:
        raise ValueError(
            f"global batch size {global_batch_size} must be a positive multiple of the "
            f"number of hosts ({shard_count})."
        )
    ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
    ds = ds[shard_index::shard_count].map(Normalize(use_labels, tuple(extra_keys)))
    if downsample > 1:
        ds = ds.map(MeanPool(downsample))
    if flip:
        ds = ds.seed(seed + 1).random_map(RandomFlip())
    ds = ds.batch(global_batch_size // shard_count, drop_remainder=True)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=4))
