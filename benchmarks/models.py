"""Network throughput: forward and forward+backward images/s and XLA FLOPs per preset and batch.

Usage (CPU, the committed result; a few minutes on 2 cores):

  python -m benchmarks.models --out=benchmarks/results/models_cpu.json

GPU (bf16 compute, the large presets):

  python -m benchmarks.models --dtype=bfloat16 --out=benchmarks/results/models_gpu.json \\
    --cases ddpm_cifar10:64,128 dit_b_2:64,256 dit_xl_2:32,64

Each case is ``preset:batch[,batch...]``. Timings are the median of ``--repeats`` timed
calls after one warm-up (compile) call, with ``block_until_ready``. FLOPs come from XLA's
cost analysis of the compiled function (per call, i.e. per batch; multiply-add = 2 FLOPs).
The forward+backward step is the gradient of a mean-squared error w.r.t. the parameters.
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import models

INPUT_SHAPES = {
    "ddpm_cifar10": (32, 32, 3),
    "ddpmpp": (32, 32, 3),
    "ncsnpp": (32, 32, 3),
    "unet_8x8": (8, 8, 1),
    "unet_28x28": (28, 28, 1),
    "dit_28x28": (28, 28, 1),
}
DEFAULT_CASES = [
    "unet_8x8:16,64",
    "unet_28x28:8,32",
    "dit_28x28:8,32",
    "ddpm_cifar10:4",
    "dit_s_2:4",
]


def input_shape(preset: str) -> tuple[int, int, int]:
    """Per-example input shape: the preset's data, or 32x32x4 latents for DiT S..XL."""
    return INPUT_SHAPES.get(preset, (32, 32, 4))


def flops(compiled) -> float:
    """FLOPs of a compiled function from XLA's cost analysis (NaN when unavailable)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def time_calls(fn, args, repeats: int) -> float:
    """Median wall time of ``repeats`` calls (seconds), after the caller's warm-up."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(preset: str, batch: int, dtype, repeats: int) -> dict:
    """Forward and forward+backward throughput and FLOPs of one preset at one batch size."""
    net = models.create(preset, dtype=dtype)
    x = jax.random.normal(jax.random.key(0), (batch, *input_shape(preset)))
    s = jnp.linspace(0.1, 10.0, batch)
    cond = {"label": jnp.arange(batch) % net.num_classes} if net.num_classes else {}
    variables = jax.jit(lambda x, s: net.init({"params": jax.random.key(1)}, x, s, **cond))(x, s)
    params = variables["params"]
    forward = jax.jit(lambda p, x, s: net.apply({"params": p}, x, s, **cond))
    loss = lambda p, x, s: jnp.mean(jnp.square(net.apply({"params": p}, x, s, **cond) - x[..., :1]))
    step = jax.jit(jax.grad(loss))
    result = {
        "preset": preset,
        "batch": batch,
        "input_shape": list(input_shape(preset)),
        "params": int(sum(np.prod(a.shape) for a in jax.tree.leaves(params))),
    }
    for name, fn in (("forward", forward), ("forward_backward", step)):
        start = time.perf_counter()
        compiled = fn.lower(params, x, s).compile()
        jax.block_until_ready(compiled(params, x, s))
        seconds = time_calls(compiled, (params, x, s), repeats)
        result[f"{name}_compile_s"] = round(time.perf_counter() - start - seconds, 3)
        result[f"{name}_s_per_batch"] = seconds
        result[f"{name}_images_per_s"] = batch / seconds
        result[f"{name}_flops_per_batch"] = flops(compiled)
        result[f"{name}_tflops_per_s"] = flops(compiled) / seconds / 1e12
    return result


def cpu_model() -> str:
    """The host CPU's model name (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info() -> dict:
    """The device the numbers were measured on, and how busy the host was."""
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "host_cpu": cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "load_average_1m_at_end": os.getloadavg()[0],
        "jax": jax.__version__,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, help="preset:b1,b2 ...")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    dtype = jnp.dtype(args.dtype)
    results = []
    for case in args.cases:
        preset, batches = case.split(":")
        for batch in (int(b) for b in batches.split(",")):
            r = bench_case(preset, batch, dtype, args.repeats)
            results.append(r)
            print(
                f"{preset:>14} b={batch:<4} fwd {r['forward_images_per_s']:9.1f} img/s "
                f"fwd+bwd {r['forward_backward_images_per_s']:9.1f} img/s "
                f"fwd {r['forward_flops_per_batch'] / batch / 1e9:7.3f} GFLOP/img",
                flush=True,
            )
    report = {"device": device_info(), "dtype": args.dtype, "results": results}
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
