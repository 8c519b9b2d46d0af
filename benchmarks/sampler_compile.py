"""Compile and run time of samplers for 10, 100 and 1000 steps (compile time stays flat).

Every sampler's loop is a ``lax.scan`` (or ``lax.while_loop``), so the compiled program
does not grow with ``num_steps``: the compile time at 1000 steps should be close to that at
10. This script measures, for each method, the first call (trace + compile + run) and the
mean of later calls (run only), and reports compile(1000) / compile(10).

Usage:
  python -m benchmarks.sampler_compile [--out benchmarks/results/sampler_compile_cpu.json]
      [--methods ddim,ode_heun] [--batch 64] [--dim 32] [--conditions "idle 2-core VM"]
"""

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp

from jaxdiff import samplers, schedules, sdes

STEPS = (10, 100, 1000)


def _model(x, t):
    """A small non-trivial score model: two dense layers (stands in for a network)."""
    w = jnp.eye(x.shape[-1]) * 0.5
    h = jnp.tanh(x @ w + t[:, None])
    return -x + 0.1 * h @ w


def _time(fn, repeats: int):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    run = sum(runs) / len(runs)
    return first, run


def measure(method: str, batch: int, dim: int, repeats: int = 2) -> dict:
    """Compile and run seconds of ``method`` at each of :data:`STEPS`."""
    spec = samplers.METHODS[method]
    process = (
        schedules.DiscreteSchedule.from_name("linear", 1000) if spec.discrete else sdes.VPSDE()
    )
    rows = {}
    for n in STEPS:
        opts = {"steps_per_level": 2} if method == "annealed_langevin" else {}
        fn = lambda n=n, opts=opts: samplers.sample(
            jax.random.key(0), _model, process, (batch, dim), method=method, num_steps=n, **opts
        )
        first, run = _time(fn, repeats)
        rows[str(n)] = {"first_call_s": first, "run_s": run, "compile_s": max(first - run, 0.0)}
    ratio = rows["1000"]["compile_s"] / max(rows["10"]["compile_s"], 1e-9)
    return {"steps": rows, "compile_ratio_1000_vs_10": ratio}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x {len(names)}" if names else platform.machine()
    except OSError:
        return platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--methods", default=",".join(m for m in samplers.METHODS if m != "ode_adaptive")
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--conditions", default="", help="machine load etc., stored as is")
    args = parser.parse_args()
    device = jax.devices()[0]
    kind = _cpu_name() if device.platform == "cpu" else device.device_kind
    result = {
        "device": f"{device.platform}: {kind}",
        "host": _cpu_name(),
        "jax": jax.__version__,
        "batch": args.batch,
        "dim": args.dim,
        "note": "compile_s = first call - mean later call; ode_adaptive has no fixed grid",
        "conditions": args.conditions,
        "methods": {},
    }
    for method in args.methods.split(","):
        result["methods"][method] = measure(method, args.batch, args.dim)
        r = result["methods"][method]
        cells = "  ".join(
            f"{n}: compile {v['compile_s']:.2f}s run {v['run_s'] * 1e3:.1f}ms"
            for n, v in r["steps"].items()
        )
        print(f"{method:18s} {cells}  ratio {r['compile_ratio_1000_vs_10']:.2f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
