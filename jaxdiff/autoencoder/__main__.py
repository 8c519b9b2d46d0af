"""The autoencoder's commands: measure it, and encode a captioned split for latent diffusion.

Train it with ``python -m jaxdiff.train --config=configs/mnist_autoencoder.py --workdir=AE``;
then::

  python -m jaxdiff.autoencoder --action=evaluate --workdir=AE --classifier_dir=CLF \\
      --split=test --data_dir=/path/to/tfds            # PSNR, SSIM, rFID, latent std (JSON)
  python -m jaxdiff.autoencoder --action=encode --workdir=AE --split=train \\
      --out=runs/mnist_latents_train.npz --data_dir=/path/to/tfds

``encode`` writes the ``.npz`` a latent config trains on (configs/mnist_text2img.py):
scaled latents, labels, caption tokens, semantic maps, the placed images and captions.
``pixels`` (no autoencoder, no --workdir) writes the same arrays with the placed images in
[-1, 1] as the "latents": the data of the pixel twin (``configs/mnist_text2img.py:pixel``)::

  python -m jaxdiff.autoencoder --action=pixels --split=train \
      --out=runs/mnist_pixels_train.npz --data_dir=/path/to/tfds

rFID is the Frechet distance between the images and their reconstructions in the in-repo
MNIST classifier's 128-d feature space (the FID Inception knows nothing of digits).
"""

import json

import numpy as np
from absl import flags

from jaxdiff import _cli, _xla_flags

FLAGS = flags.FlagValues()
flags.DEFINE_enum(
    "action", None, ["evaluate", "encode", "pixels"], "What to do.", flag_values=FLAGS
)
flags.DEFINE_string("workdir", None, "The autoencoder's training run.", flag_values=FLAGS)
flags.DEFINE_string("dataset", "mnist", "TFDS digit set to caption.", flag_values=FLAGS)
flags.DEFINE_string("split", "test", "TFDS split.", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "TFDS directory.", flag_values=FLAGS)
flags.DEFINE_integer("limit", None, "Use only the first N images.", flag_values=FLAGS)
flags.DEFINE_string("classifier_dir", None, "evaluate: classifier for rFID.", flag_values=FLAGS)
flags.DEFINE_string("out", None, "encode: the .npz; evaluate: optional JSON.", flag_values=FLAGS)
flags.DEFINE_integer("max_len", 72, "encode: tokens per caption (configs: 72).", flag_values=FLAGS)
flags.DEFINE_string("semantic_map", "mask", "encode: map kind (mask, edges).", flag_values=FLAGS)
flags.DEFINE_string(
    "grid", None, "evaluate: a PNG of 16 images over their reconstructions.", flag_values=FLAGS
)
_cli.define_verbose(FLAGS)
flags.mark_flags_as_required(["action"], flag_values=FLAGS)


def run() -> None:
    _xla_flags.prepare()
    from jaxdiff.autoencoder import cache
    from jaxdiff.autoencoder import run as ae_run

    _cli.require(FLAGS.limit is None or FLAGS.limit >= 1, f"--limit={FLAGS.limit}: must be >= 1.")
    if FLAGS.grid:
        _cli.check_writable_file(FLAGS.grid, "--grid")
    writes = FLAGS.action in ("encode", "pixels")
    if writes:
        _cli.require(bool(FLAGS.out) and FLAGS.out.endswith(".npz"), "--out=FILE.npz is required.")
        _cli.check_writable_file(FLAGS.out, "--out")
    _cli.require(
        (FLAGS.workdir is None) == (FLAGS.action == "pixels"),
        f"--action={FLAGS.action}: --workdir=AE is "
        + ("not taken (no autoencoder)." if FLAGS.action == "pixels" else "required."),
    )
    ae = None if FLAGS.action == "pixels" else ae_run.load(FLAGS.workdir)
    placed, labels, texts = cache.captioned_split(
        FLAGS.dataset, FLAGS.split, FLAGS.data_dir, FLAGS.limit
    )
    if writes:
        arrays = cache.encode_split(
            ae, placed, labels, texts, max_len=FLAGS.max_len, map_kind=FLAGS.semantic_map
        )
        np.savez(FLAGS.out, **arrays)
        print(f"wrote {len(labels)} latents {arrays['latents'].shape[1:]} to {FLAGS.out}")
        return
    print(json.dumps(evaluate(ae, placed)))


def evaluate(ae, placed: np.ndarray) -> dict:
    """PSNR, SSIM, latent std and (with --classifier_dir) rFID of ``placed`` digits."""
    from jaxdiff.autoencoder import run as ae_run

    feature_fn = None
    if FLAGS.classifier_dir:
        from jaxdiff.evaluation import classifier

        params, _ = classifier.load_classifier(FLAGS.classifier_dir)
        feature_fn = classifier.logits_fn(params, (-1, 1), features=True)
    images = placed.astype(np.float32) / 127.5 - 1.0
    result = {"step": ae.step, "images": len(images), **ae_run.measure(ae, images, feature_fn)}
    if FLAGS.grid:
        from jaxdiff.training import summaries

        shown = images[:16]
        both = np.concatenate([shown, ae_run.reconstruct(ae, shown)])
        summaries.save_grid(both, FLAGS.grid, ncol=len(shown), upscale=2)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


def main(argv: list[str] | None = None) -> None:
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.autoencoder", doc=__doc__)


if __name__ == "__main__":
    main()
