"""Exports a model's denoiser: ``python -m jaxdiff.export --pretrained=mnist --out=mnist.onnx``.

Takes a shipped model (--pretrained) or a training run (--workdir, with --params), writes
the ONNX graph with a dynamic batch axis and the metadata the ONNX Runtime sampler needs
(``jaxdiff.export.ort_sampler``), then checks the graph against JAX on random inputs and
prints the relative error (max |ONNX - JAX| / max |JAX|; the export fails above 1e-4).

Needs the ``export`` extra and jax2onnx installed without its dependencies::

  pip install 'jaxdiff[export]' && pip install --no-deps 'jax2onnx>=0.17'

Example::

  python -m jaxdiff.export --pretrained=mnist --out=mnist.onnx [--quantize=int8]
  python -c "from jaxdiff.export.ort_sampler import OnnxDenoiser; \\
      print(OnnxDenoiser('mnist.onnx').sample(4, label=7).shape)"
"""

import os

from absl import flags

from jaxdiff import _cli, _xla_flags

TOLERANCE = 1e-4  # max |ONNX - JAX| / max |JAX| (fp32)

FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "A training run's directory.", flag_values=FLAGS)
_cli.define_pretrained(FLAGS)
flags.DEFINE_string(
    "params", "ema", 'With --workdir: "ema", "raw" or an EMA decay.', flag_values=FLAGS
)
flags.DEFINE_string("out", None, "The .onnx file to write.", flag_values=FLAGS)
flags.DEFINE_enum("format", "onnx", ["onnx"], "Export format.", flag_values=FLAGS)
flags.DEFINE_bool("check", True, "Compare the graph with JAX after export.", flag_values=FLAGS)
flags.DEFINE_enum(
    "quantize",
    None,
    ["int8"],
    "Also write an INT8 (QDQ) copy beside --out: NAME_int8.onnx.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "calibration_samples",
    32,
    "With --quantize: images whose sampling calibrates INT8.",
    flag_values=FLAGS,
)
_cli.define_verbose(FLAGS)


def load_target():
    """(run, source facts) of --pretrained or --workdir."""
    from jaxdiff import pretrained
    from jaxdiff.training import restore

    if FLAGS.pretrained:
        _cli.check_pretrained(FLAGS.pretrained)
        model = pretrained.load(FLAGS.pretrained)
        record = model.record
        source = {"pretrained": model.name, "params_sha256": record["params_sha256"]}
        return model.as_run(), {**source, "step": record["step"]}
    run = restore.load_run(FLAGS.workdir, FLAGS.params)
    return run, {
        "workdir": os.path.abspath(FLAGS.workdir),
        "params": FLAGS.params,
        "step": run.step,
    }


def load_decoder(config):
    """A latent model's autoencoder (its decoder goes beside the graph), or None."""
    from jaxdiff.export import onnx_export

    folder = onnx_export.latent_autoencoder(config)
    if folder is None:
        return None
    if not os.path.isdir(folder):
        print(f"no decoder exported: autoencoder run {folder} not found; sampling returns latents")
        return None
    from jaxdiff.autoencoder import run as autoencoder_run

    return autoencoder_run.load(folder)


def export() -> None:
    from jaxdiff.export import onnx_export

    _cli.require(
        (FLAGS.workdir is None) != (FLAGS.pretrained is None),
        "give exactly one of --workdir (a training run) and --pretrained (a shipped model).",
    )
    _cli.require(bool(FLAGS.out), "--out: give the .onnx file to write.")
    _cli.check_writable_file(FLAGS.out, "--out")
    run, source = load_target()
    decoder = load_decoder(run.config)
    path = onnx_export.export_model(run, FLAGS.out, source=source, decoder=decoder)
    size = os.path.getsize(path) / 2**20
    print(f"wrote {path} ({size:.1f} MiB)")
    if decoder is not None:
        print(f"wrote its decoder to {onnx_export.decoder_path(path)}")
    if FLAGS.check:
        error = onnx_export.relative_error(run, path)
        print(f"ONNX Runtime vs JAX: max relative error {error:.2e} (tolerance {TOLERANCE:g})")
        if not error <= TOLERANCE:
            raise RuntimeError(f"{path} disagrees with JAX: relative error {error:.2e}.")
    if FLAGS.quantize:
        write_int8(path)


def write_int8(fp32_path: str) -> None:
    """Quantises the exported file and prints its size and its error against fp32."""
    from jaxdiff.export import quantize

    out = os.path.splitext(fp32_path)[0] + "_int8.onnx"
    print(f"calibrating INT8 on {FLAGS.calibration_samples} sampling trajectories ...")
    quantize.quantize_int8(fp32_path, out, FLAGS.calibration_samples, seed=1)
    ratio = os.path.getsize(fp32_path) / os.path.getsize(out)
    print(f"wrote {out} ({os.path.getsize(out) / 2**20:.2f} MiB, {ratio:.2f}x smaller)")
    mean, worst = quantize.sample_difference(fp32_path, out)
    print(f"INT8 vs fp32, 16 images from the same noise: mean |diff| {mean:.4f}, max {worst:.3f}")


def run() -> None:
    _xla_flags.prepare()
    export()


def main(argv: list[str] | None = None) -> None:
    """The command (``argv`` without the program name; default ``sys.argv[1:]``)."""
    _cli.run_absl(run, FLAGS, argv, "jaxdiff.export", doc=__doc__)


if __name__ == "__main__":
    main()
