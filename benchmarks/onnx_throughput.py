"""DDIM-50 on ONNX Runtime (fp32 and INT8) vs jaxdiff, same shipped model, same run.

The shipped model (``--model``) is exported with ``python -m jaxdiff.export`` (fp32 and its
INT8 QDQ copy); each side draws ``--batch`` images with DDIM, 50 steps, trailing spacing,
the model's shipped guidance (one network call on the doubled batch per step), from the
same noise. jaxdiff runs its compiled ``lax.scan`` sampler; ONNX Runtime runs the NumPy
loop of ``jaxdiff.export.ort_sampler`` (all cores, as XLA). Sides alternate
(``measure.alternate``); medians are reported as images/s, with the INT8 and fp32
samples' difference from jaxdiff's (mean |diff|, images in [-1, 1]).

The diffusers comparison of the same algorithm lives in sampling_throughput.py (a
diffusers UNet2DModel and its jaxdiff twin); the shipped U-Net has no diffusers twin.

Usage:
  python -m benchmarks.onnx_throughput --model=mnist --batch=16,64 \\
      --out=benchmarks/results/onnx_throughput_cpu.json
"""

import argparse
import os
import tempfile

from jaxdiff import _xla_flags


def onnx_files(model_name: str, folder: str) -> dict[str, str]:
    """{"onnx_fp32": path, "onnx_int8": path} exported from a shipped model."""
    from jaxdiff.export.__main__ import main as export

    fp32 = os.path.join(folder, f"{model_name}.onnx")
    export([f"--pretrained={model_name}", f"--out={fp32}", "--quantize=int8"])
    return {"onnx_fp32": fp32, "onnx_int8": fp32.replace(".onnx", "_int8.onnx")}


def runners(model_name: str, files: dict[str, str], batch: int, num_steps: int):
    """name -> blocking ``run() -> images`` for jaxdiff and each ONNX file; same noise."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff import pretrained
    from jaxdiff.export import ort_sampler
    from jaxdiff.training import components

    model = pretrained.load(model_name)
    x_init = np.random.default_rng(0).standard_normal((batch, *model.image_shape), np.float32)
    labels = np.arange(batch, dtype=np.int32) % max(model.num_classes, 1)
    settings = dict(method="ddim", num_steps=num_steps)
    sample = components.make_sampler(
        model.config, model.net, model.process, **settings, x_init=jnp.asarray(x_init)
    )
    compiled = jax.jit(sample)
    out = {"jaxdiff": lambda: np.asarray(compiled(model.params, jax.random.key(0), labels))}
    for name, path in files.items():
        onnx_model = ort_sampler.OnnxDenoiser(path)
        out[name] = lambda m=onnx_model: m.sample(x_init=x_init, label=labels, **settings)
    return out


def measure_batch(model_name, files, batch: int, num_steps: int, repeats: int) -> dict:
    """Images/s of each side and the samples' difference from jaxdiff's."""
    import numpy as np

    from benchmarks import measure

    sides = runners(model_name, files, batch, num_steps)
    images = {name: run() for name, run in sides.items()}  # warm-up (compilation) + outputs
    times = measure.alternate(sides, repeats)
    row = {"batch": batch, "num_steps": num_steps}
    for name, t in times.items():
        row[name] = {"images_per_s": batch / t["median_s"], **t}
        diff = np.abs(images[name] - images["jaxdiff"])
        row[name]["mean_abs_diff_vs_jaxdiff"] = float(diff.mean())
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist")
    p.add_argument("--batch", default="16,64", help="batch sizes, comma-separated")
    p.add_argument("--num_steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    _xla_flags.apply_cpu_defaults()
    from benchmarks import measure

    with tempfile.TemporaryDirectory() as folder:
        files = onnx_files(args.model, folder)
        sizes = {k: os.path.getsize(v) for k, v in files.items()}
        rows = [
            measure_batch(args.model, files, int(b), args.num_steps, args.repeats)
            for b in args.batch.split(",")
        ]
    result = {"device": measure.device_info(), "model": args.model, "file_bytes": sizes}
    measure.write_json(args.out, {**result, "rows": rows})
    for row in rows:
        speeds = {k: round(v["images_per_s"], 2) for k, v in row.items() if isinstance(v, dict)}
        print(f"batch {row['batch']}: images/s {speeds}")


if __name__ == "__main__":
    main()
