"""Samples a cascade, or upscales your own low-resolution images: ``python -m jaxdiff.cascade``.

A base model (``--base``: a training run's directory or a shipped model's name) then one
or more super-resolution stages (``--sr``, repeated, in order)::

  python -m jaxdiff.cascade --base=runs/fashion_mnist_base14 \\
      --sr=runs/fashion_mnist_sr28 --num_samples=100 --label=3 --out=cascade.png

or the SR stages alone on a low-resolution image (a grayscale or RGB .png, or an .npz of
(N, h, w, C) images, uint8 or floats in [-1, 1]) of exactly the size the first one takes::

  python -m jaxdiff.cascade --sr=runs/fashion_mnist_sr28 --input=low.png --out=high.png

Each SR flag (--sr_method, --sr_num_steps, --sr_guidance, --aug_level) takes one value
for every SR stage or one per --sr. ``--truncated`` stops each stage before an SR stage
at that stage's level (truncated conditioning augmentation). ``--save_stages`` also
writes every earlier stage's images (OUT_stage0.png, ...). The command prints when each
stage's images were ready: the time to the first preview and to the final image.

Bad input ends with one line ``error: ...`` (exit 2: wrong flags; exit 1: a model or an
input image that cannot be used, e.g. of the wrong size).
"""

import os
import sys
import time

import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags

FLAGS = flags.FlagValues()
flags.DEFINE_string(
    "base", None, "Base model: a training run's directory or a shipped name.", flag_values=FLAGS
)
flags.DEFINE_multi_string(
    "sr", [], "SR model (run directory or name), in order.", flag_values=FLAGS
)
flags.DEFINE_string("input", None, "Low-resolution .png or .npz to upscale.", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Output .png (grid) or .npz (arrays).", flag_values=FLAGS)
flags.DEFINE_integer(
    "num_samples", None, "Images to make (default 64; with --input: all).", flag_values=FLAGS
)
flags.DEFINE_integer("batch_size", 100, "Images per cascade call.", flag_values=FLAGS)
flags.DEFINE_integer("label", None, "Class of every image (default: cycling).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed (batch i uses fold_in(key(seed), i)).", flag_values=FLAGS)
flags.DEFINE_string("base_method", None, "Base sampler (default: its config's).", flag_values=FLAGS)
flags.DEFINE_integer("base_num_steps", None, "Base sampler steps.", flag_values=FLAGS)
flags.DEFINE_float("base_guidance", None, "Base CFG weight w.", flag_values=FLAGS)
flags.DEFINE_multi_string("sr_method", [], "SR sampler(s).", flag_values=FLAGS)
flags.DEFINE_multi_integer("sr_num_steps", [], "SR sampler steps.", flag_values=FLAGS)
flags.DEFINE_multi_float("sr_guidance", [], "SR CFG weight(s) w.", flag_values=FLAGS)
flags.DEFINE_multi_float(
    "aug_level", [], "SR augmentation level(s) s (default: each model's sr.aug_level).",
    flag_values=FLAGS,
)  # fmt: skip
flags.DEFINE_bool("truncated", False, "Truncated conditioning augmentation.", flag_values=FLAGS)
flags.DEFINE_bool("save_stages", False, "Also write each earlier stage.", flag_values=FLAGS)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["out"], flag_values=FLAGS)


def per_stage(values: list | None, n: int, flag: str) -> list:
    """One value per SR stage from a flag given 0, 1 or n times (None when absent)."""
    if not values:
        return [None] * n
    _cli.require(
        len(values) in (1, n),
        f"--{flag}: give it once (all SR stages) or {n} times (one per --sr).",
    )
    return list(values) * n if len(values) == 1 else list(values)


def check_flags() -> None:
    """Usage checks (exit 2) that need no model."""
    if FLAGS.input is None:
        _cli.require(
            FLAGS.base is not None,
            "give --base (to generate) or --input with --sr (to upscale your own images).",
        )
    else:
        _cli.require(FLAGS.base is None, "--input upscales your images: leave out --base.")
        _cli.require(bool(FLAGS.sr), "--input needs at least one --sr model.")
        _cli.require(
            FLAGS.input.endswith((".png", ".npz")), f"--input={FLAGS.input}: use .png or .npz."
        )
    _cli.require(FLAGS.out.endswith((".png", ".npz")), f"--out={FLAGS.out}: use .png or .npz.")
    n = FLAGS.num_samples
    _cli.require(n is None or n >= 1, f"--num_samples={n}: must be >= 1.")
    _cli.require(FLAGS.batch_size >= 1, f"--batch_size={FLAGS.batch_size}: must be >= 1.")
    for flag in ("sr_method", "sr_num_steps", "sr_guidance", "aug_level"):
        per_stage(FLAGS[flag].value, len(FLAGS.sr), flag)


def build_stages() -> list:
    """The Stages of --base and --sr with their flags."""
    from jaxdiff import cascade

    stages = []
    if FLAGS.base is not None:
        stages.append(
            cascade.Stage(
                cascade.load_model(FLAGS.base),
                FLAGS.base_method,
                FLAGS.base_num_steps,
                FLAGS.base_guidance,
            )
        )
    n = len(FLAGS.sr)
    columns = [per_stage(FLAGS[f].value, n, f) for f in ("sr_method", "sr_num_steps")]
    columns += [per_stage(FLAGS[f].value, n, f) for f in ("sr_guidance", "aug_level")]
    for spec, method, steps, w, level in zip(FLAGS.sr, *columns, strict=True):
        model = cascade.load_model(spec)
        if "sr" not in model.config:
            raise ValueError(f"--sr={spec}: not a super-resolution model (no sr config section).")
        stage = cascade.Stage(model, method, steps, w, level, truncated=FLAGS.truncated)
        stages.append(stage)
    return stages


def read_input(path: str, stage) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, h, w, C) float32 in [-1, 1] from a .png or .npz, checked against ``stage``, and
    the .npz's "labels" (N,) when it holds them (as ``jaxdiff.sample`` writes them).

    Raises:
      ValueError: an unreadable file, a mode or channel count the model does not take, a
        size other than the model's low-resolution size, floats outside [-1, 1].
    """
    if not os.path.isfile(path):
        raise ValueError(f"--input={path}: no such file.")
    if path.endswith(".png"):
        from PIL import Image

        with Image.open(path) as image:
            modes = {"L": 1, "RGB": 3}
            if image.mode not in modes:
                raise ValueError(
                    f"--input={path}: PNG mode {image.mode}; use grayscale (L) or RGB "
                    "8-bit images (no alpha, no palette)."
                )
            x = np.asarray(image)[None]
        x, labels = (x[..., None] if x.ndim == 3 else x), None
    else:
        with np.load(path, allow_pickle=False) as data:
            x = np.asarray(data[data.files[0]])
            labels = np.asarray(data["labels"]) if "labels" in data.files else None
        x = x[None] if x.ndim == 3 else x
    x = _normalise(x, path, stage.input_shape, FLAGS.sr[0])
    if labels is None or labels.shape != (len(x),):
        labels = None  # e.g. an unconditional model's empty labels
    if FLAGS.num_samples is not None:
        x, labels = x[: FLAGS.num_samples], None if labels is None else labels[: FLAGS.num_samples]
    return x, labels


def _normalise(x: np.ndarray, path: str, want: tuple, model: str) -> np.ndarray:
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"--input={path}: expected (N, h, w, C) images; got shape {x.shape}.")
    h, w, c = want
    if x.shape[-1] != c:
        raise ValueError(
            f"--input={path}: {x.shape[-1]} channel(s); the SR model {model} takes {c} "
            f"({'grayscale' if c == 1 else 'RGB'})."
        )
    if x.shape[1:3] != (h, w):
        raise ValueError(
            f"--input={path}: {x.shape[1]}x{x.shape[2]} images; the SR model {model} takes "
            f"{h}x{w} low-resolution images (resize them first)."
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)) or x.min() < -1.0 or x.max() > 1.0:
        raise ValueError(f"--input={path}: float images must lie in [-1, 1] (or use uint8).")
    return x


def image_labels(stages, num: int, low, labels) -> np.ndarray | None:
    """The (num,) labels: --label, else ``labels`` (of --input), else 0, 1, 2, ... cycling
    for a generated cascade; None (with --input: the null class of a conditional SR model,
    or an unconditional cascade)."""
    if FLAGS.label is not None:
        return np.full((num,), FLAGS.label, np.int32)
    if labels is not None or low is not None:
        return labels
    classes = int(stages[0].model.config.model.num_classes)
    return np.arange(num, dtype=np.int32) % classes if classes else None


def draw(stages, low, labels) -> tuple[list[np.ndarray], np.ndarray]:
    """Every stage's images, drawn in batches of --batch_size, and the seconds from the
    start of each batch to each stage's images (count, stages)."""
    import jax

    from jaxdiff import cascade

    num = (FLAGS.num_samples or 64) if low is None else low.shape[0]
    batch = min(FLAGS.batch_size, num)
    root, count = jax.random.key(FLAGS.seed), -(-num // batch)
    outputs: list[list[np.ndarray]] = [[] for _ in stages]
    times = np.zeros((count, len(stages)))
    for b in range(count):
        part = slice(b * batch, min((b + 1) * batch, num))
        label = None if labels is None else labels[part]
        chunk = None if low is None else low[part]
        key = root if count == 1 else jax.random.fold_in(root, b)
        start = time.perf_counter()
        n = part.stop - part.start
        for i, images in cascade.generate_progressive(key, stages, n, label, low=chunk):
            times[b, i] = time.perf_counter() - start
            outputs[i].append(np.asarray(images))
    report(stages, times)
    return [np.concatenate(o) for o in outputs], times


def report(stages, times: np.ndarray) -> None:
    """Prints when each stage was ready (warm batches' mean when there are several)."""
    warm = times[1:] if len(times) > 1 else times
    what = f"mean of {len(warm)} warm batches" if len(times) > 1 else "one batch, with compiling"
    parts = [
        f"stage {i} ({s.image_shape[0]}x{s.image_shape[1]}) after {t:.2f} s"
        for i, (s, t) in enumerate(zip(stages, warm.mean(axis=0), strict=True))
    ]
    print(f"time to each stage ({what}): " + "; ".join(parts), flush=True)


def write(images: np.ndarray, labels, path: str) -> None:
    """A PNG grid, or an .npz of images (N, H, W, C) in [-1, 1] and labels (N,) or ()."""
    from jaxdiff.training import summaries

    if path.endswith(".png"):
        summaries.save_grid(images, path, upscale=4 if images.shape[1] <= 32 else 1)
    else:
        np.savez(path, images=images, labels=np.asarray([] if labels is None else labels))
    print(f"wrote {images.shape[0]} images {images.shape[1:]} to {path}")


def run() -> None:
    _xla_flags.prepare()  # before JAX starts its backends
    _cli.check_writable_file(FLAGS.out, "--out")
    stages = build_stages()
    low, labels = (None, None) if FLAGS.input is None else read_input(FLAGS.input, stages[0])
    from jaxdiff import cascade

    cascade.plan(stages, None if low is None else low.shape)  # before any sampling
    num = (FLAGS.num_samples or 64) if low is None else low.shape[0]
    labels = image_labels(stages, num, low, labels)
    outputs, _ = draw(stages, low, labels)
    stem, ext = os.path.splitext(FLAGS.out)
    if FLAGS.save_stages:
        for i, images in enumerate(outputs[:-1]):
            write(images, labels, f"{stem}_stage{i}{ext}")
    write(outputs[-1], labels, FLAGS.out)


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.cascade", doc=__doc__, after=check_flags)
