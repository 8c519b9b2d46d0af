"""DDIM-50 on ONNX Runtime (fp32 and INT8) vs jaxdiff, same shipped model, same run.

The shipped model (``--model``) is exported with ``python -m jaxdiff.export`` (fp32 and its
INT8 QDQ copy); each side draws ``--batch`` images with DDIM, 50 steps, trailing spacing,
the model's shipped guidance (one network call on the doubled batch per step), from the
same noise. jaxdiff runs its compiled ``lax.scan`` sampler; ONNX Runtime runs the NumPy
loop of ``jaxdiff.export.ort_sampler`` (all cores, as XLA). Sides alternate
(``measure.alternate``); medians are reported as images/s, with the INT8 and fp32
samples' difference from jaxdiff's (mean |diff|, images in [-1, 1]).

The shipped U-Net has no diffusers twin, so a second part (``--twin``, default
``mnist_small``) runs all four sides on one network: a randomly initialised diffusers
``UNet2DModel`` and its imported jaxdiff twin (``benchmarks.twins``, same weights), exported
to ONNX (fp32 and INT8) from jaxdiff. There every side runs DDIM 50 with diffusers'
default "leading" spacing and no guidance: jaxdiff as in sampling_throughput.py, diffusers
its DDIMPipeline loop (float32 eager, ``--threads`` torch threads), ONNX Runtime the NumPy
loop.

Usage:
  python -m benchmarks.onnx_throughput --model=mnist --batch=16,64 \\
      --out=benchmarks/results/onnx_throughput_cpu.json
"""

import argparse
import os
import tempfile
import types

from jaxdiff import _xla_flags


def onnx_files(model_name: str, folder: str) -> dict[str, str]:
    """{"onnx_fp32": path, "onnx_int8": path} exported from a shipped model."""
    from jaxdiff.export.__main__ import main as export

    fp32 = os.path.join(folder, f"{model_name}.onnx")
    export([f"--pretrained={model_name}", f"--out={fp32}", "--quantize=int8"])
    return {"onnx_fp32": fp32, "onnx_int8": fp32.replace(".onnx", "_int8.onnx")}


def onnx_runners(files: dict[str, str], x_init, labels, **settings) -> dict:
    """name -> blocking ``run() -> images`` on ONNX Runtime for each file; same noise."""
    from jaxdiff.export import ort_sampler

    out = {}
    for name, path in files.items():
        onnx_model = ort_sampler.OnnxDenoiser(path)
        out[name] = lambda m=onnx_model: m.sample(x_init=x_init, label=labels, **settings)
    return out


def model_runners(model_name: str, files: dict[str, str], batch: int, num_steps: int):
    """The shipped model: jaxdiff's compiled sampler and each ONNX file, same noise."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxdiff import pretrained
    from jaxdiff.training import components

    model = pretrained.load(model_name)
    x_init = np.random.default_rng(0).standard_normal((batch, *model.image_shape), np.float32)
    labels = np.arange(batch, dtype=np.int32) % max(model.num_classes, 1)
    settings = dict(method="ddim", num_steps=num_steps)
    compiled = components.jitted_sampler(model, **settings, x_init=jnp.asarray(x_init))
    out = {"jaxdiff": lambda: np.asarray(compiled(model.params, jax.random.key(0), labels))}
    return {**out, **onnx_runners(files, x_init, labels, **settings)}


class DiffusersTimesteps:
    """A diffusers network's ``apply`` under jaxdiff's "t1000" noise level.

    jaxdiff's time t = (i + 1) / N of training step i gives the level 1000 t = i + 1;
    diffusers networks take the index i itself.
    """

    def __init__(self, net):
        self.net = net

    def apply(self, variables, x, level, **kwargs):
        """``net.apply`` with the level shifted down by one step."""
        return self.net.apply(variables, x, level - 1.0, **kwargs)


def twin_run(preset: str, num_steps: int):
    """(torch model, run-like bundle for the exporter) of a ``benchmarks.twins`` U-Net."""
    import ml_collections

    from benchmarks import sampling_throughput, twins
    from jaxdiff import schedules

    torch_model, net, variables, shape = twins.unet_pair(preset)
    config = ml_collections.ConfigDict(
        {
            "model": {
                "name": f"diffusers_{preset}",
                "num_classes": 0,
                "learn_sigma": False,
                "options": {},
            },
            "data": {"image_size": shape[0], "channels": shape[2], "source": "twin"},
            "loss": {"noise_level": "t1000"},
            "sample": {
                "kind": "eps",
                "method": "ddim",
                "num_steps": num_steps,
                "guidance": 0.0,
                "options": {"spacing": "leading"},
            },
        }
    )
    process = schedules.DiscreteSchedule.from_name(
        "linear", num_steps=sampling_throughput.NUM_TRAIN_STEPS
    )
    run = types.SimpleNamespace(
        config=config, net=DiffusersTimesteps(net), params=variables["params"], process=process
    )
    return torch_model, run, shape


def twin_files(run, folder: str) -> dict[str, str]:
    """{"onnx_fp32": path, "onnx_int8": path} of the twin (INT8: the same QDQ recipe)."""
    from jaxdiff.export import onnx_export, quantize

    fp32 = onnx_export.export_model(run, os.path.join(folder, "twin.onnx"))
    return {"onnx_fp32": fp32, "onnx_int8": quantize.quantize_int8(fp32, fp32[:-5] + "_int8.onnx")}


def twin_runners(twin, files: dict[str, str], batch: int, num_steps: int):
    """All four sides on the twin network: jaxdiff, diffusers and each ONNX file."""
    import numpy as np

    from benchmarks import sampling_throughput

    torch_model, run, shape = twin
    x_init = np.random.default_rng(0).standard_normal((batch, *shape), np.float32)
    apply = sampling_throughput.make_eps_fn(run.net.net)
    jax_run = sampling_throughput.jax_sampler(
        apply, run.params, x_init.shape, "ddim", num_steps, spacing="leading"
    )
    opts = {"device": "cpu", "bf16": False, "compile": False}
    torch_run = sampling_throughput.torch_ddim(torch_model, num_steps, opts)
    out = {"jaxdiff": lambda: jax_run(x_init)[0], "diffusers": lambda: torch_run(x_init)}
    onnx = onnx_runners(files, x_init, None, method="ddim", num_steps=num_steps)
    return {**out, **onnx}


def measure_batch(sides: dict, batch: int, num_steps: int, repeats: int) -> dict:
    """Images/s of each side and the samples' difference from jaxdiff's.

    The difference is taken between images clipped to [-1, 1], as every side shows them
    (the twin's random network leaves DDIM's unclipped samples far outside that range).
    """
    import numpy as np

    from benchmarks import measure

    images = {name: run() for name, run in sides.items()}  # warm-up (compilation) + outputs
    times = measure.alternate(sides, repeats)
    row = {"batch": batch, "num_steps": num_steps}
    for name, t in times.items():
        row[name] = {"images_per_s": batch / t["median_s"], **t}
        clipped = [np.clip(np.asarray(images[k]), -1, 1) for k in (name, "jaxdiff")]
        diff = np.abs(clipped[0] - clipped[1])
        row[name]["mean_abs_diff_vs_jaxdiff"] = float(diff.mean())
    return row


def model_part(args, batches: list[int]) -> dict:
    """The shipped model's rows (jaxdiff and ONNX Runtime fp32/INT8)."""
    with tempfile.TemporaryDirectory() as folder:
        files = onnx_files(args.model, folder)
        sizes = {k: os.path.getsize(v) for k, v in files.items()}
        rows = [
            measure_batch(
                model_runners(args.model, files, b, args.num_steps), b, args.num_steps, args.repeats
            )
            for b in batches
        ]
    return {"model": args.model, "file_bytes": sizes, "rows": rows}


def twin_part(args, batches: list[int]) -> dict:
    """The twin network's rows (jaxdiff, diffusers and ONNX Runtime fp32/INT8)."""
    from benchmarks import measure

    threads = measure.set_torch_threads(args.threads)
    twin = twin_run(args.twin, args.num_steps)
    with tempfile.TemporaryDirectory() as folder:
        files = twin_files(twin[1], folder)
        sizes = {k: os.path.getsize(v) for k, v in files.items()}
        rows = [
            measure_batch(
                twin_runners(twin, files, b, args.num_steps), b, args.num_steps, args.repeats
            )
            for b in batches
        ]
    return {"preset": args.twin, "torch_threads": threads, "file_bytes": sizes, "rows": rows}


def print_rows(title: str, rows: list[dict]) -> None:
    """One line of images/s per batch size."""
    for row in rows:
        speeds = {k: round(v["images_per_s"], 2) for k, v in row.items() if isinstance(v, dict)}
        print(f"{title}, batch {row['batch']}: images/s {speeds}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mnist", help="shipped model ('' skips this part)")
    p.add_argument("--twin", default="mnist_small", help="twins preset ('' skips this part)")
    p.add_argument("--batch", default="16,64", help="batch sizes, comma-separated")
    p.add_argument("--num_steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    _xla_flags.apply_cpu_defaults()
    from benchmarks import measure

    batches = [int(b) for b in args.batch.split(",")]
    result: dict = {"device": measure.device_info(), "num_steps": args.num_steps}
    if args.model:
        result["shipped"] = model_part(args, batches)
        print_rows(args.model, result["shipped"]["rows"])
    if args.twin:
        result["twin"] = twin_part(args, batches)
        print_rows(f"twin {args.twin}", result["twin"]["rows"])
    measure.write_json(args.out, result)


if __name__ == "__main__":
    main()
