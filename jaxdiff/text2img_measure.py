"""The acceptance measurements of a text-to-image / map-to-image latent run (docs/latent.md).

- :func:`class_accuracy`: prompts "a DIGIT" for every digit; the in-repo MNIST classifier
  must label >= 90% of the samples as the prompted digit. It reads each sample recentred
  the way MNIST was made (:func:`recentred`): trained on centred digits, it labels only 62%
  of the placed real test digits right as they are, 98% recentred (the ceiling, reported
  with ``--maps``).
- :func:`attribute_table`: for each attribute, samples of "a LOW seven" and "a HIGH seven"
  (e.g. thin / thick) are measured with the captions' own functions
  (``data.captions``); the difference of the means in standard errors must exceed 3.
  Position: "a seven in the top left" vs "a seven in the bottom right" (row and col).
- With ``--maps`` (encode's test ``.npz``) also the FID of the "a DIGIT" samples against
  its placed test digits in the classifier's feature space (latent vs pixel, docs/latent.md).
- :func:`map_iou`: samples drawn from the ink masks of test digits; the IoU of each
  sample's own mask with the given map (target >= 0.8).

Command::

  python -m jaxdiff.text2img_measure --workdir=runs/mnist_text2img \\
      --classifier_dir=runs/classifier_mnist --maps=runs/mnist_latents_test.npz --num=100 \\
      --guidance=2 --out=docs/latent_table.md --grid=docs/latent/prompts.png
  python -m jaxdiff.text2img_measure --workdir=runs/mnist_map2img \\
      --maps=runs/mnist_latents_test.npz --num=500 --out=docs/latent_iou.md
"""

import functools

import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags
from jaxdiff._chunks import map_in_chunks
from jaxdiff.data import captions, semantic_maps

KEEP = 8  # samples per prompt in the --grid picture

# attribute -> the two prompts compared, and what is measured on their samples.
CONTRASTS = {
    "thickness": ("a thin seven", "a thick seven", "thickness"),
    "slant": ("a left-leaning seven", "a right-leaning seven", "slant"),
    "size": ("a small seven", "a large seven", "size"),
    "brightness": ("a faint seven", "a bright seven", "brightness"),
    "row": ("a seven in the top", "a seven in the bottom", "row"),
    "col": ("a seven in the left", "a seven in the right", "col"),
}


def measured(images: np.ndarray, name: str) -> np.ndarray:
    """The attribute ``name`` of images in [-1, 1] (N, H, W, 1): captions' measure."""
    ink = (np.asarray(images) + 1.0) / 2.0
    if name in ("row", "col"):
        return captions.position(ink)[0 if name == "row" else 1]
    return captions.WORDS[name][0](ink)


def contrast(a: np.ndarray, b: np.ndarray) -> dict:
    """Means, standard errors and the difference in (Welch) standard errors of b - a."""
    se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))
    diff = float(np.mean(b) - np.mean(a))
    return {
        "mean_low": float(np.mean(a)),
        "mean_high": float(np.mean(b)),
        "difference": diff,
        "standard_errors": diff / max(np.hypot(se(a), se(b)), 1e-12),
    }


def draw(gen, key, prompt: str, num: int, batch: int = 100, keep=None, **sampler) -> np.ndarray:
    """``num`` images of one prompt; with a dict ``keep``, its first :data:`KEEP` are kept
    there under the prompt (the pictures of ``--grid``)."""
    import jax

    out = []
    for i in range(0, num, batch):
        n = min(batch, num - i)
        images = gen.generate(jax.random.fold_in(key, i), prompts=[prompt] * batch, **sampler)
        out.append(images[:n])
    images = np.clip(np.concatenate(out), -1.0, 1.0)  # a pixel twin's are not decoded
    if keep is not None:
        keep[prompt] = images[:KEEP]
    return images


def attribute_table(gen, key, num: int, keep=None, **sampler) -> dict:
    """{attribute: :func:`contrast` of its two prompts' samples} (num samples each)."""
    import jax

    rows = {}
    for i, (name, (low, high, what)) in enumerate(CONTRASTS.items()):
        k = jax.random.fold_in(key, i)
        a = measured(draw(gen, jax.random.fold_in(k, 0), low, num, keep=keep, **sampler), what)
        b = measured(draw(gen, jax.random.fold_in(k, 1), high, num, keep=keep, **sampler), what)
        rows[name] = {"prompts": [low, high], **contrast(a, b)}
    return rows


def recentred(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] placed back MNIST's way (``captions.recentre``): what an MNIST
    classifier reads (it labels 62% of raw placed test digits right, 98% recentred)."""
    return (captions.recentre((np.clip(images, -1.0, 1.0) + 1.0) / 2.0) * 2.0 - 1.0).astype(
        np.float32
    )


def reference_accuracy(classifier_dir: str, images: np.ndarray, labels: np.ndarray) -> float:
    """The classifier's accuracy on real placed digits (N, H, W, 1) in [-1, 1], recentred
    as the samples are: the ceiling of :func:`class_accuracy`."""
    from jaxdiff.evaluation import classifier

    params = _classifier_params(classifier_dir)
    return classifier.accuracy(params, recentred(images), np.asarray(labels))


@functools.lru_cache(maxsize=2)
def _classifier_params(classifier_dir: str):
    """The saved classifier's parameters, read once per directory."""
    from jaxdiff.evaluation import classifier

    return classifier.load_classifier(classifier_dir)[0]


def class_accuracy(
    gen, key, classifier_dir: str, num_per_digit: int, reference=None, keep=None, **sampler
):
    """Fraction of "a DIGIT" samples the in-repo classifier labels as DIGIT (all digits,
    read :func:`recentred`),
    and the FID of all those samples against ``reference`` images (N, H, W, 1) in [-1, 1]
    in the classifier's feature space (None without a reference)."""
    import jax

    from jaxdiff.evaluation import classifier, fid

    params = _classifier_params(classifier_dir)
    logits = classifier.logits_fn(params, (-1, 1))
    features = classifier.logits_fn(params, (-1, 1), features=True)
    right, feats = 0, []
    for digit, word in enumerate(captions.DIGITS):
        k = jax.random.fold_in(key, digit)
        images = draw(gen, k, captions.with_article(word), num_per_digit, keep=keep, **sampler)
        right += int(np.sum(np.argmax(np.asarray(logits(recentred(images))), -1) == digit))
        feats.append(np.asarray(features(images)))
    score = None
    if reference is not None:
        score = fid.fid_from_features(np.concatenate(feats), map_in_chunks(features, reference))
    return right / (10 * num_per_digit), score


def map_iou(gen, key, maps: np.ndarray, batch: int = 100, **sampler) -> np.ndarray:
    """IoU (N,) of each sample's ink mask with the map (N, H, W, 1) it was drawn from."""
    import jax

    out = []
    for i in range(0, len(maps), batch):
        part = maps[i : i + batch]
        padded = np.resize(part, (batch, *part.shape[1:]))
        images = gen.generate(jax.random.fold_in(key, i), maps=padded, **sampler)[: len(part)]
        out.append(semantic_maps.iou(semantic_maps.mask(images), part))
    return np.concatenate(out)


def markdown(rows: dict) -> str:
    """The attribute table as markdown."""
    lines = [
        "| attribute | prompts | mean (low) | mean (high) | difference | in SEs |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['prompts'][0]!r} vs {r['prompts'][1]!r} | {r['mean_low']:.3f} | "
            f"{r['mean_high']:.3f} | {r['difference']:+.3f} | {r['standard_errors']:.1f} |"
        )
    return "\n".join(lines)


FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "The latent run.", flag_values=FLAGS)
flags.DEFINE_string("classifier_dir", None, "Text runs: the MNIST classifier.", flag_values=FLAGS)
flags.DEFINE_string(
    "maps",
    None,
    "encode's test .npz: the maps (map runs), the FID reference (text runs).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("step", None, "A kept checkpoint (default: the newest).", flag_values=FLAGS)
flags.DEFINE_bool("table", True, "Text runs: the attribute table too.", flag_values=FLAGS)
flags.DEFINE_integer("num", 100, "Samples per prompt (per digit) or maps.", flag_values=FLAGS)
flags.DEFINE_float("guidance", None, "w (default: the run's).", flag_values=FLAGS)
flags.DEFINE_integer("num_steps", None, "Sampler steps (default: the run's).", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Also write the report (markdown) here.", flag_values=FLAGS)
flags.DEFINE_string(
    "grid", None, "Text runs: a PNG of 8 samples per prompt, one row each.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["workdir"], flag_values=FLAGS)


def text_report(gen, key, keep, **sampler) -> list[str]:
    """The class accuracy (with --classifier_dir), its FID (with --maps) and the table."""
    import jax

    parts = []
    if FLAGS.classifier_dir:
        reference = None
        if FLAGS.maps:  # encode's .npz also holds the placed images: the FID reference
            with np.load(FLAGS.maps) as f:
                reference, labels = f["images"].astype(np.float32) / 127.5 - 1.0, f["labels"]
            ceiling = reference_accuracy(FLAGS.classifier_dir, reference, labels)
            parts.append(f"the classifier on placed test digits (recentred): {100 * ceiling:.1f}%")
        acc, score = class_accuracy(
            gen, key, FLAGS.classifier_dir, FLAGS.num, reference, keep=keep, **sampler
        )
        parts.append(f"classified as the prompted digit: {100 * acc:.1f}%")
        if score is not None:
            parts.append(f"FID (classifier features) of 'a DIGIT' samples: {score:.2f}")
    if FLAGS.table:
        table = attribute_table(gen, jax.random.fold_in(key, 1), FLAGS.num, keep=keep, **sampler)
        parts.append(markdown(table))
    return parts


def map_report(gen, key, **sampler) -> str:
    """The IoU line of a map model over the first --num maps of --maps."""
    _cli.require(FLAGS.maps is not None, "--maps=FILE.npz is needed for a map model.")
    with np.load(FLAGS.maps) as f:
        maps = np.asarray(f["semantic_map"][: FLAGS.num], np.float32)
    iou = map_iou(gen, key, maps, **sampler)
    return (
        f"IoU of sample masks with the given maps: mean {iou.mean():.3f}, "
        f"median {np.median(iou):.3f} over {len(iou)} maps"
    )


def run() -> None:
    _xla_flags.prepare()
    import jax

    from jaxdiff import text2img
    from jaxdiff.training import summaries

    _cli.require(FLAGS.num >= 2, f"--num={FLAGS.num}: must be >= 2 (standard errors).")
    if FLAGS.grid:
        _cli.check_writable_file(FLAGS.grid, "--grid")
    gen, key = text2img.load(FLAGS.workdir, step=FLAGS.step), jax.random.key(0)
    sampler = dict(guidance=FLAGS.guidance, num_steps=FLAGS.num_steps)
    keep: dict = {}
    parts = text_report(gen, key, keep, **sampler) if gen.settings.text else []
    if gen.settings.semantic_map:
        parts.append(map_report(gen, jax.random.fold_in(key, 2), **sampler))
    report = "\n\n".join([f"step {gen.run.step}", *parts])
    print(report)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            f.write(report + "\n")
    if FLAGS.grid and keep:  # one row per prompt, in the order drawn
        rows = [np.resize(images, (KEEP, *images.shape[1:])) for images in keep.values()]
        summaries.save_grid(np.concatenate(rows), FLAGS.grid, ncol=KEEP, upscale=2)
        with open(FLAGS.grid + ".txt", "w") as f:
            f.write("\n".join(keep) + "\n")


def main(argv: list[str] | None = None) -> None:
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.text2img_measure", doc=__doc__)


if __name__ == "__main__":
    main()
